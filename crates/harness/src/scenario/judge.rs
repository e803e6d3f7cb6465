//! Reading a boot from its serial console: the init's stage lines
//! (`diskless: <stage> ok|FAILED|skipped t=<guest seconds>…`), the check hook's results
//! (`diskless-check: <name> ok|FAIL|skipped …`, `diskless-check-json: {…}`), and the landmarks
//! of the firmware and kernel. Pure: fed lines with their arrival time, it builds the report.
//! The line formats, and which stages are fatal or required, come from the contract crate,
//! which the init prints them with.

use diskless_contract::console::{self, CheckLine, StageLine, Status};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stage {
    pub name: String,
    /// `ok`, `FAILED` or `skipped`.
    pub status: String,
    /// Guest seconds since kernel start.
    pub guest_t: f64,
    /// Host seconds since QEMU started.
    pub host_t: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub status: String,
    pub detail: String,
}

/// Host-side landmarks, seconds since QEMU started.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Landmarks {
    pub ipxe_start: Option<f64>,
    pub kernel_start: Option<f64>,
    pub check_done: Option<f64>,
    pub power_off: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Judge {
    pub stages: Vec<Stage>,
    pub checks: Vec<CheckResult>,
    pub memory: Option<serde_json::Value>,
    /// The same, measured once the check hook's checks are done (pods running).
    pub memory_after: Option<serde_json::Value>,
    pub landmarks: Landmarks,
    /// `service X … restart #n` and `service X restarted` lines.
    pub restarts: Vec<String>,
    /// Set when the boot cannot go on (fatal stage, kernel panic): stop waiting.
    pub stopped: Option<String>,
    pub check_done: bool,
    pub lines: Vec<String>,
}

impl Judge {
    pub fn feed(&mut self, host_t: f64, line: &str) {
        self.lines.push(line.to_string());
        if self.landmarks.ipxe_start.is_none() && line.contains("iPXE") {
            self.landmarks.ipxe_start = Some(host_t);
        }
        if self.landmarks.kernel_start.is_none() && line.contains("Linux version") {
            self.landmarks.kernel_start = Some(host_t);
        }
        if line.contains("Kernel panic") {
            self.stopped.get_or_insert_with(|| line.trim().to_string());
        }
        if line.contains("reboot: Power down") || line.contains("reboot: Restarting") {
            self.landmarks.power_off = Some(host_t);
        }
        if let Some(json) = console::parse_check_json(line) {
            if let Some(m) = json.get("memory") {
                self.memory = Some(m.clone());
            }
            if let Some(m) = json.get("memory_after") {
                self.memory_after = Some(m.clone());
            }
        } else if let Some(check) = CheckLine::parse(line) {
            match check {
                CheckLine::Done { .. } => {
                    self.check_done = true;
                    self.landmarks.check_done = Some(host_t);
                }
                CheckLine::Result {
                    name,
                    status,
                    detail,
                } => self.checks.push(CheckResult {
                    name,
                    status,
                    detail,
                }),
            }
        } else if let Some(rest) = line.split_once(console::PREFIX).map(|x| x.1) {
            if rest.starts_with("service ") && rest.contains("restart") {
                self.restarts.push(rest.to_string());
            }
            if let Some(l) = StageLine::parse(line) {
                if l.status == Status::Failed && l.stage.fatal() {
                    self.stopped
                        .get_or_insert_with(|| format!("{}: {}", l.stage, l.detail));
                }
                self.stages.push(Stage {
                    name: l.stage.name().to_string(),
                    status: l.status.as_str().to_string(),
                    guest_t: l.t,
                    host_t,
                    detail: l.detail,
                });
            }
        }
    }

    /// When the kernel started, in host seconds: the console's "Linux version" line arrives
    /// only once the serial driver is up (seconds late under TCG), so it is derived from the
    /// init's lines instead, whose guest clock starts at kernel start and which arrive at once.
    pub fn kernel_start(&self) -> Option<f64> {
        self.stages
            .iter()
            .map(|s| s.host_t - s.guest_t)
            .reduce(f64::min)
            .or(self.landmarks.kernel_start)
    }

    /// Guest time a check reported as `t=<seconds>` (kubelet healthz, static pod).
    pub fn check_time(&self, name: &str) -> Option<f64> {
        let c = self
            .checks
            .iter()
            .find(|c| c.name == name && c.status == "ok")?;
        c.detail
            .split_whitespace()
            .find_map(|w| w.strip_prefix("t=")?.parse().ok())
    }

    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Everything that makes the boot a failure, in words.
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        for s in &self.stages {
            if s.status == "FAILED" {
                f.push(format!("stage {} FAILED: {}", s.name, s.detail));
            }
        }
        // After a fatal stage the later ones are missing by design: don't list them.
        for r in console::Stage::required()
            .iter()
            .filter(|_| self.stopped.is_none())
        {
            if self.stage(r.name()).is_none() {
                f.push(format!("stage {r} never reported"));
            }
        }
        for c in &self.checks {
            if c.status == CheckLine::FAIL {
                f.push(format!("check {} FAIL: {}", c.name, c.detail));
            }
        }
        if let Some(why) = &self.stopped {
            if !self.stages.iter().any(|s| s.status == "FAILED") {
                f.push(format!("boot stopped: {why}"));
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> Judge {
        let mut c = Judge::default();
        for (i, l) in lines.iter().enumerate() {
            c.feed(i as f64, l);
        }
        c
    }

    #[test]
    fn stages_and_checks_are_parsed() {
        let c = feed(&[
            "iPXE 1.0.0+ -- Open Source Network Boot Firmware",
            "[    0.000000] Linux version 6.1.0-56-amd64",
            "diskless: mounts ok t=1.500: proc sys dev run cgroup2",
            "diskless: network ok t=15.574: eth0 10.0.2.15/24 (dhcp, no router offered)",
            "diskless: kubelet skipped t=16.000: condition_path /x does not exist",
            "diskless-check-json: {\"memory\":{\"mem_used_kb\":1}}",
            "diskless-check: root-tmpfs ok tmpfs size=286MiB",
            "diskless-check: kubelet-healthz ok t=31.250 after 2.0 s of checking",
            "diskless-check: container-runc FAIL `ctr run` failed",
            "diskless-check: done failures=1",
        ]);
        assert_eq!(c.landmarks.ipxe_start, Some(0.0));
        assert_eq!(c.landmarks.kernel_start, Some(1.0));
        // mounts: host 2.0 − guest 1.5; network: 3.0 − 15.574 (a late line) is smaller.
        assert!((c.kernel_start().unwrap() - (3.0 - 15.574)).abs() < 1e-9);
        let s = c.stage("network").unwrap();
        assert_eq!((s.status.as_str(), s.guest_t), ("ok", 15.574));
        assert!(s.detail.starts_with("eth0"));
        assert_eq!(c.stage("kubelet").unwrap().status, "skipped");
        assert_eq!(c.memory.as_ref().unwrap()["mem_used_kb"], 1);
        assert_eq!(c.checks.len(), 3);
        assert_eq!(c.check_time("kubelet-healthz"), Some(31.25));
        assert!(c.check_done);
        let f = c.failures();
        assert!(
            f.iter().any(|x| x.starts_with("check container-runc FAIL")),
            "{f:?}"
        );
        assert!(
            f.iter().any(|x| x == "stage integrity never reported"),
            "{f:?}"
        );
    }

    #[test]
    fn fatal_stage_stops_the_boot() {
        let c = feed(&["diskless: integrity FAILED t=9.1: segment \"containerd\" (3 of 4) is missing: likely too little RAM"]);
        assert!(c.stopped.as_deref().unwrap().contains("too little RAM"));
        assert_eq!(c.stage("integrity").unwrap().status, "FAILED");
    }

    #[test]
    fn restarts_are_collected() {
        let c = feed(&[
            "diskless: service containerd was killed by signal 9 after 12.0 s; restart #1 in 1 s",
            "diskless: service containerd restarted t=31.200 (pid 300)",
        ]);
        assert_eq!(c.restarts.len(), 2);
        assert!(c.stopped.is_none());
    }
}
