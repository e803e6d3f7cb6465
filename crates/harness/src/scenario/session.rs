//! The one boot-and-judge loop every scenario that reads a console shares: a [`Guest`] started
//! with its console piped, each line fed to the [`Judge`] (copied to standard error with
//! `--verbose`) until the scenario is satisfied, the boot stops (a fatal stage, a kernel
//! panic), QEMU exits, or the deadline passes.

use super::judge::Judge;
use crate::machine::boot_server::BootFiles;
use crate::machine::guest::Guest;
use crate::machine::qemu::Forward;
use crate::options::BootOptions;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Why [`Session::follow`] returned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum End {
    /// The scenario's condition held.
    Satisfied,
    /// The boot cannot go on ([`Judge::stopped`] says why); QEMU was killed.
    Stopped,
    /// QEMU exited, host seconds after its start.
    Exited(f64),
    /// The deadline passed first.
    TimedOut,
}

pub struct Session {
    pub guest: Guest,
    pub judge: Judge,
    verbose: bool,
}

impl Session {
    /// Starts the machine (console piped) with its boot server.
    pub fn start(
        args: &BootOptions,
        boot: &BootFiles,
        forwards: &[Forward],
        verbose: bool,
    ) -> crate::error::Result<Session> {
        Ok(Session {
            guest: Guest::start(args, boot, false, forwards)?,
            judge: Judge::default(),
            verbose,
        })
    }

    fn feed(&mut self, t: Instant, line: &str) {
        if self.verbose {
            eprintln!("{line}");
        }
        let host_t = t
            .saturating_duration_since(self.guest.started)
            .as_secs_f64();
        self.judge.feed(host_t, line);
    }

    /// Feeds every line that has arrived, waiting up to `wait` for the first.
    fn drain(&mut self, wait: Duration) -> Result<(), RecvTimeoutError> {
        let lines = self.guest.lines.as_ref().expect("the console is piped");
        let first = lines.recv_timeout(wait)?;
        let mut batch = vec![first];
        batch.extend(lines.try_iter());
        for (t, line) in batch {
            self.feed(t, &line);
        }
        Ok(())
    }

    /// Reads the console until `satisfied` (asked after every batch of lines and at least every
    /// 100 ms) says so, the boot stops, QEMU exits, or `deadline` passes.
    pub fn follow(&mut self, deadline: Instant, mut satisfied: impl FnMut(&Judge) -> bool) -> End {
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return End::TimedOut;
            };
            match self.drain(left.min(Duration::from_millis(100))) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return End::Exited(self.guest.started.elapsed().as_secs_f64())
                }
            }
            if self.judge.stopped.is_some() {
                // Let the init finish its explanation, then stop the machine.
                std::thread::sleep(Duration::from_millis(500));
                let _ = self.drain(Duration::ZERO);
                self.guest.kill();
                return End::Stopped;
            }
            if satisfied(&self.judge) {
                return End::Satisfied;
            }
            if self.guest.child.try_wait().ok().flatten().is_some() {
                // What is left of the console.
                while self.drain(Duration::from_millis(200)).is_ok() {}
                return End::Exited(self.guest.started.elapsed().as_secs_f64());
            }
        }
    }

    /// The last `n` console lines on standard error, headed (unless they were copied there
    /// already with `--verbose`).
    pub fn print_tail(&self, n: usize) {
        if self.verbose {
            return;
        }
        eprintln!("--- last console lines ---");
        let lines = &self.judge.lines;
        for l in &lines[lines.len().saturating_sub(n)..] {
            eprintln!("{l}");
        }
        eprintln!("---");
    }
}
