//! Processes the control plane starts: each one's output goes to its own log file, an early
//! exit is reported with the tail of that log, and stopping is SIGTERM, a grace period, then
//! SIGKILL (noted in the log), always followed by a wait so no zombie and no listening socket
//! outlives `stop`.
//!
//! Spawned through [`super::process`]: a harness that dies without running destructors
//! (SIGKILL, a test runner's timeout) takes its daemons with it, and `run`/`check` stop them on
//! SIGINT and SIGTERM.

use crate::error::{bail, Context};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
    /// How long it gets to exit after SIGTERM before SIGKILL.
    grace: Duration,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args…` with standard input closed and both outputs appended to `log`
    /// (appended: a restarted API server keeps its first run's lines).
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
        grace: Duration,
    ) -> crate::error::Result<Process> {
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        writeln!(
            out,
            "--- diskless: {} {}",
            program.display(),
            args.join(" ")
        )?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = super::process::spawn(&mut cmd)
            .with_context(|| format!("cannot start {name} ({})", program.display()))?;
        Ok(Process {
            name,
            child,
            log: log.to_owned(),
            grace,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Err, naming the process and quoting its log, if it has exited.
    pub fn check(&mut self) -> crate::error::Result<()> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        match self.exited {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}); the end of {}:\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 25)
            ),
        }
    }

    /// SIGTERM, up to its grace period to exit, then SIGKILL; waits for it in any case.
    pub fn stop(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.exited = Some(status);
            return;
        }
        // SAFETY: kill(2) with a pid we spawned and have not yet waited for, so it cannot
        // have been reused by another process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(
                log,
                "--- diskless: still running {:.1} s after SIGTERM: SIGKILL",
                self.grace.as_secs_f64()
            );
        }
        let _ = self.child.kill();
        self.exited = self.child.wait().ok();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a log file (or why it cannot be read). A Go panic is quoted from
/// its `panic:` line instead: the goroutine dump after it would fill the tail.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Err(e) => format!("(cannot read {}: {e})", path.display()),
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = match all.iter().rposition(|l| l.starts_with("panic: ")) {
                Some(i) => i.saturating_sub(3),
                None => all.len().saturating_sub(lines),
            };
            all[from..(from + lines).min(all.len())].join("\n")
        }
    }
}

/// Runs `cmd` to completion with `input` on its standard input, killing it after `limit`:
/// a kubectl whose server hangs must not hang the harness.
pub fn output_within(
    mut cmd: Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> crate::error::Result<Output> {
    let what = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child =
        super::process::spawn(&mut cmd).with_context(|| format!("cannot start {what}"))?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_exit_quotes_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("x.log");
        let mut p = Process::spawn(
            "sh",
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "echo first; echo the reason >&2; exit 3".into(),
            ],
            &log,
            Duration::from_secs(1),
        )
        .unwrap();
        let t = Instant::now();
        let err = loop {
            if let Err(e) = p.check() {
                break e.to_string();
            }
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(err.starts_with("sh exited"), "{err}");
        assert!(err.contains("first\nthe reason"), "{err}");
    }

    #[test]
    fn stop_terminates_and_reaps() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = Process::spawn(
            "sleep",
            Path::new("/bin/sleep"),
            &["600".into()],
            &tmp.path().join("s.log"),
            Duration::from_secs(5),
        )
        .unwrap();
        let pid = p.pid();
        p.stop();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    /// A process that ignores SIGTERM is killed after its grace period, and the log says so.
    #[test]
    fn stop_kills_after_the_grace_period() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("t.log");
        let mut p = Process::spawn(
            "sh",
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "trap '' TERM; echo ready; while :; do sleep 0.05; done".into(),
            ],
            &log,
            Duration::from_millis(300),
        )
        .unwrap();
        // Let the shell install its trap first.
        let t = Instant::now();
        // (The log's first line is the command, which says `echo ready` too.)
        while !log_tail(&log, 1).lines().any(|l| l == "ready") {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the shell never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = p.pid();
        p.stop();
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(
            log_tail(&log, 1).contains("SIGKILL"),
            "{}",
            log_tail(&log, 5)
        );
    }

    #[test]
    fn a_go_panic_is_quoted_from_its_first_line() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("p.log");
        let mut text = String::from("I0000 starting\nE0000 the cause\npanic: runtime error\n\n");
        for i in 0..100 {
            text.push_str(&format!("goroutine {i} [running]:\n"));
        }
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log, 5);
        assert!(
            tail.starts_with("I0000 starting\nE0000 the cause\npanic:"),
            "{tail}"
        );
    }

    #[test]
    fn a_hung_command_is_killed() {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("600");
        let t = Instant::now();
        let err = output_within(cmd, None, Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let mut cat = Command::new("/bin/cat");
        cat.arg("-");
        let out = output_within(cat, Some(b"in"), Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, b"in");
    }
}
