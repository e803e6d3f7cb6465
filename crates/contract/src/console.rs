//! The console protocol between the init (and its check hook) and the harness. Every boot step
//! prints one line, `diskless: <stage> ok|FAILED|skipped t=<seconds since kernel start>[: detail]`;
//! the check hook prints `diskless-check: <name> ok|FAIL|skipped <detail>`, one
//! `diskless-check-json: {…}` line of measurements and `diskless-check: done failures=<n>`.
//! The init renders these lines and the harness parses them with the functions here, and
//! whether a failed stage stops the boot is said once, in [`Stage::fatal`].

use std::fmt;

/// Prefix of the init's lines.
pub const PREFIX: &str = "diskless: ";
/// Prefix of the check hook's result lines.
pub const CHECK_PREFIX: &str = "diskless-check: ";
/// Prefix of the check hook's one line of measurements (JSON).
pub const CHECK_JSON_PREFIX: &str = "diskless-check-json: ";
/// Where the check hook lives on a node being checked: `diskless check` adds it to the boot in
/// a segment of its own, so production images carry no test code.
pub const CHECK_HOOK: &str = "/.diskless/check/diskless-check";

/// What the check hook does once the node is up, as `diskless check` asks for it on the
/// kernel command line (`diskless.check=<mode>`); the init passes the word on unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Check once, then power off.
    Once,
    /// Also kill containerd and require that the init restarts it.
    Restart,
    /// A join node: check, then stay up for the harness to watch through the API.
    Join,
    /// Join, then also kill the kubelet and require that it comes back.
    Lifecycle,
    /// Fill the RAM root past the kubelet's image-filesystem threshold and require that its
    /// image GC deletes the unpinned preloaded images and keeps the pinned ones.
    ImagePressure,
    /// A control plane: wait until etcd, the API server, the controller-manager and the
    /// scheduler listen, report memory, and stay up for the harness to use the API.
    ControlPlane,
}

const MODES: &[(CheckMode, &str)] = &[
    (CheckMode::Once, "1"),
    (CheckMode::Restart, "restart"),
    (CheckMode::Join, "join"),
    (CheckMode::Lifecycle, "lifecycle"),
    (CheckMode::ImagePressure, "image-pressure"),
    (CheckMode::ControlPlane, "control-plane"),
];

impl CheckMode {
    pub fn as_str(self) -> &'static str {
        MODES
            .iter()
            .find(|(m, _)| *m == self)
            .map(|(_, w)| *w)
            .unwrap()
    }

    pub fn parse(word: &str) -> Result<Self, UnknownCheckMode> {
        MODES
            .iter()
            .find(|(_, w)| *w == word)
            .map(|(m, _)| *m)
            .ok_or_else(|| UnknownCheckMode(word.to_owned()))
    }

    /// Whether the hook leaves the machine running when done: the harness still watches a
    /// join node through the API.
    pub fn stays_up(self) -> bool {
        matches!(
            self,
            CheckMode::Join | CheckMode::Lifecycle | CheckMode::ControlPlane
        )
    }
}

/// A `diskless.check=` word this init does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown check mode {0:?} (known: {known})", known = MODES.iter().map(|(_, w)| *w).collect::<Vec<_>>().join(", "))]
pub struct UnknownCheckMode(pub String);

/// The init's boot steps, in boot order; services log under their own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Mounts,
    Cmdline,
    Contract,
    Integrity,
    SquashfsModules,
    Switchroot,
    MachineId,
    Node,
    Modules,
    Sysctls,
    Cgroups,
    Network,
    Images,
    /// The preloaded images marked `deferred`, imported once the kubelet has started.
    DeferredImages,
    KubeletConfig,
    KubeletCert,
    /// etcd's data restored from the node segment's snapshot (a control plane).
    EtcdRestore,
    Boot,
    /// Starting the check hook.
    Check,
    /// A service from the contract, by its name (`containerd`, `kubelet`, …).
    Service(String),
}

const NAMED: &[(Stage, &str)] = &[
    (Stage::Mounts, "mounts"),
    (Stage::Cmdline, "cmdline"),
    (Stage::Contract, "contract"),
    (Stage::Integrity, "integrity"),
    (Stage::SquashfsModules, "squashfs-modules"),
    (Stage::Switchroot, "switchroot"),
    (Stage::MachineId, "machine-id"),
    (Stage::Node, "node"),
    (Stage::Modules, "modules"),
    (Stage::Sysctls, "sysctls"),
    (Stage::Cgroups, "cgroups"),
    (Stage::Network, "network"),
    (Stage::Images, "images"),
    (Stage::DeferredImages, "images-deferred"),
    (Stage::KubeletConfig, "kubelet-config"),
    (Stage::KubeletCert, "kubelet-cert"),
    (Stage::EtcdRestore, "etcd-restore"),
    (Stage::Boot, "boot"),
    (Stage::Check, "check"),
];

impl Stage {
    pub fn name(&self) -> &str {
        match self {
            Stage::Service(name) => name,
            s => NAMED
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, name)| *name)
                .expect("every fixed stage is named"),
        }
    }

    /// The stage a line names; unknown names are services.
    pub fn from_name(name: &str) -> Stage {
        NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| Stage::Service(name.to_string()))
    }

    /// A failure here stops the boot sequence (the machine stays up for debugging): without
    /// these nothing after them can work.
    pub fn fatal(&self) -> bool {
        matches!(
            self,
            Stage::Mounts
                | Stage::Cmdline
                | Stage::Contract
                | Stage::Integrity
                | Stage::SquashfsModules
                | Stage::Switchroot
        )
    }

    /// Every successful boot logs these; a missing one is a failure.
    pub fn required() -> [Stage; 8] {
        [
            Stage::Mounts,
            Stage::Integrity,
            Stage::Switchroot,
            Stage::Modules,
            Stage::Sysctls,
            Stage::Cgroups,
            Stage::Network,
            Stage::Boot,
        ]
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

/// One stage line.
#[derive(Debug, Clone, PartialEq)]
pub struct StageLine {
    pub stage: Stage,
    pub status: Status,
    /// Guest seconds since kernel start.
    pub t: f64,
    pub detail: String,
}

impl StageLine {
    /// The line without its newline: `diskless: network ok t=15.574: eth0 …`.
    pub fn render(&self) -> String {
        let sep = if self.detail.is_empty() { "" } else { ": " };
        format!(
            "{PREFIX}{} {} t={:.3}{sep}{}",
            self.stage,
            self.status.as_str(),
            self.t,
            self.detail
        )
    }

    /// A stage line anywhere in a console line (the kernel may print before it on the same
    /// line); `None` for anything else. A stage name may contain spaces.
    pub fn parse(line: &str) -> Option<StageLine> {
        let rest = line.split_once(PREFIX)?.1;
        for status in [Status::Ok, Status::Failed, Status::Skipped] {
            let marker = format!(" {} t=", status.as_str());
            if let Some((name, tail)) = rest.split_once(&marker) {
                let (t, detail) = tail.split_once(": ").unwrap_or((tail, ""));
                return Some(StageLine {
                    stage: Stage::from_name(name),
                    status,
                    t: t.trim().parse().ok()?,
                    detail: detail.to_string(),
                });
            }
        }
        None
    }
}

/// One check hook result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckLine {
    /// `diskless-check: <name> ok|FAIL|skipped <detail>`.
    Result {
        name: String,
        status: String,
        detail: String,
    },
    /// `diskless-check: done failures=<n>`: the hook finished.
    Done { failures: usize },
}

impl CheckLine {
    pub const OK: &'static str = "ok";
    pub const FAIL: &'static str = "FAIL";
    pub const SKIPPED: &'static str = "skipped";

    pub fn render(&self) -> String {
        match self {
            CheckLine::Result {
                name,
                status,
                detail,
            } => format!("{CHECK_PREFIX}{name} {status} {detail}"),
            CheckLine::Done { failures } => format!("{CHECK_PREFIX}done failures={failures}"),
        }
    }

    pub fn parse(line: &str) -> Option<CheckLine> {
        let rest = line.split_once(CHECK_PREFIX)?.1;
        let mut words = rest.splitn(3, ' ');
        let name = words.next().unwrap_or("").to_string();
        let status = words.next().unwrap_or("").to_string();
        let detail = words.next().unwrap_or("").to_string();
        if name == "done" {
            let failures = status
                .strip_prefix("failures=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Some(CheckLine::Done { failures });
        }
        Some(CheckLine::Result {
            name,
            status,
            detail,
        })
    }
}

/// The JSON of a `diskless-check-json:` line.
pub fn parse_check_json(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line.split_once(CHECK_JSON_PREFIX)?.1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_modes_round_trip_and_unknown_ones_are_named() {
        for (mode, word) in MODES {
            assert_eq!(mode.as_str(), *word);
            assert_eq!(CheckMode::parse(word), Ok(*mode));
        }
        let e = CheckMode::parse("pressure").unwrap_err().to_string();
        assert!(
            e.contains("\"pressure\"") && e.contains("image-pressure"),
            "{e}"
        );
    }

    #[test]
    fn stage_lines_round_trip() {
        for line in [
            StageLine {
                stage: Stage::Network,
                status: Status::Ok,
                t: 15.574,
                detail: "eth0 10.0.2.15/24".into(),
            },
            StageLine {
                stage: Stage::Service("containerd".into()),
                status: Status::Failed,
                t: 1.0,
                detail: String::new(),
            },
            StageLine {
                stage: Stage::SquashfsModules,
                status: Status::Skipped,
                t: 0.5,
                detail: "x: y".into(),
            },
        ] {
            assert_eq!(StageLine::parse(&line.render()), Some(line));
        }
        assert_eq!(
            StageLine::parse("[  1.0] diskless: mounts ok t=1.500").map(|l| l.stage),
            Some(Stage::Mounts)
        );
        assert_eq!(StageLine::parse("diskless: warning: x"), None);
    }

    #[test]
    fn every_named_stage_round_trips_and_the_module_loads_are_fatal() {
        for (stage, name) in NAMED {
            assert_eq!(stage.name(), *name);
            assert_eq!(Stage::from_name(name), *stage);
        }
        // An image whose squashfs modules cannot load stops at once, not at the timeout.
        assert!(Stage::SquashfsModules.fatal());
        assert!(!Stage::Modules.fatal());
    }

    #[test]
    fn check_lines_round_trip() {
        for line in [
            CheckLine::Result {
                name: "root-tmpfs".into(),
                status: CheckLine::OK.into(),
                detail: "tmpfs size=286MiB".into(),
            },
            CheckLine::Done { failures: 2 },
        ] {
            assert_eq!(CheckLine::parse(&line.render()), Some(line));
        }
        assert_eq!(
            parse_check_json("diskless-check-json: {\"memory\":{\"x\":1}}").unwrap()["memory"]["x"],
            1
        );
    }
}
