//! A child process whose output lines are collected with the time each came (the cluster
//! scenario's machines and `diskless serve`, the lab-network test's): a console's timeline is
//! the time its landmarks appeared.

use super::console::read_lines;
use super::process::Spawn;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Logged {
    pub child: Child,
    /// (seconds since `start`, line without escapes and control characters).
    pub lines: Arc<Mutex<Vec<(f64, String)>>>,
    pub start: Instant,
}

impl Logged {
    /// Starts `cmd` with both output streams collected.
    pub fn spawn(cmd: &mut Command) -> crate::error::Result<Logged> {
        let start = Instant::now();
        // SIGTERM when the spawning thread ends (a killed test): serve then stops its daemons,
        // QEMU quits, and nothing is left running in the lab namespace.
        let mut child = Spawn::new()
            .signal(libc::SIGTERM)
            .spawn(
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            )
            .map_err(|e| crate::error::Error::lab(format!("{cmd:?}: {e}")))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for src in streams {
            let lines = lines.clone();
            std::thread::spawn(move || {
                read_lines(src, |t, text| {
                    let at = t.saturating_duration_since(start).as_secs_f64();
                    lines.lock().unwrap().push((at, text));
                    true
                })
            });
        }
        Ok(Logged {
            child,
            lines,
            start,
        })
    }

    /// The time of the first line containing `needle`.
    pub fn when(&self, needle: &str) -> Option<f64> {
        self.when_after(needle, 0.0)
    }

    /// The time of the first line at or after `after` s containing `needle`.
    pub fn when_after(&self, needle: &str, after: f64) -> Option<f64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|(t, l)| *t >= after && l.contains(needle))
            .map(|(t, _)| *t)
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<f64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.when(needle) {
                return Some(t);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every line, each with its time.
    pub fn text(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(t, l)| format!("{t:7.2} {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `name`'s last 60 lines, headed (for a failure's message).
    pub fn tail(&self, name: &str) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!("--- {name} console (last 60 lines) ---\n{tail}")
    }

    /// SIGTERM, half a second, then SIGKILL; reaped.
    pub fn stop(&mut self) {
        // SIGTERM first: `diskless serve` then stops its daemons itself.
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.stop();
    }
}
