//! Step 7: PID 1's loop. Restarts services that exit (with exponential backoff, each restart
//! logged), reaps every zombie (orphans are re-parented to PID 1), and on SIGTERM/SIGINT
//! (busybox `reboot`, Ctrl-Alt-Del) or SIGUSR1/SIGUSR2 (busybox `halt`/`poweroff`) stops the
//! services in reverse order and reboots or powers off.
//!
//! Signals are blocked from the first line of `main` (so every thread inherits the mask) and
//! taken synchronously with `sigtimedwait`: no async handlers, no races. Services get an empty
//! mask back before `exec` (`services::spawn`): std's `Command` does not reset it.

use crate::log;
use crate::services::{self, Output, SpawnError};
use diskless_contract::console::Stage;
use diskless_contract::image::Service;
use std::time::{Duration, Instant};

const HANDLED: [libc::c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGHUP,
];

/// Blocks the signals PID 1 handles; call before any thread exists. Also turns Ctrl-Alt-Del
/// into a SIGINT to us instead of an immediate reboot.
pub fn block_signals() {
    // SAFETY: sigset operations on a local set, then sigprocmask on the calling thread;
    // reboot(CAD_OFF) only changes what Ctrl-Alt-Del does.
    unsafe {
        let set = signal_set();
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::reboot(libc::RB_DISABLE_CAD);
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Delay before the n-th consecutive restart (n ≥ 1): 1, 2, 4, 8, 16, 30, 30 … seconds.
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs((1u64 << n.saturating_sub(1).min(5)).min(30))
}

/// A service that ran this long before exiting is considered healthy: its backoff restarts.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

struct Slot {
    svc: Service,
    output: Output,
    pid: Option<i32>,
    started: Instant,
    /// Consecutive quick exits.
    failures: u32,
    restart_at: Option<Instant>,
}

/// A service that did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("{name} exited before {path} appeared; see its output above and /var/log/{name}.log")]
    Exited { name: String, path: String },
    #[error("{path} did not appear within {} s", timeout.as_secs())]
    Timeout { path: String, timeout: Duration },
}

#[derive(Default)]
pub struct Supervisor {
    slots: Vec<Slot>,
}

pub enum Exit {
    Reboot,
    PowerOff,
}

impl Supervisor {
    /// Starts a service and keeps watching it; returns its slot number.
    pub fn start(&mut self, svc: Service, output: Output) -> Result<usize, SpawnError> {
        let pid = services::spawn(&svc, output)?;
        self.slots.push(Slot {
            svc,
            output,
            pid: Some(pid),
            started: Instant::now(),
            failures: 0,
            restart_at: None,
        });
        Ok(self.slots.len() - 1)
    }

    /// Waits for a service's ready path; fails early if it exits first (it is then restarted
    /// by the loop like any other exit).
    pub fn wait_ready(
        &mut self,
        slot: usize,
        path: &str,
        timeout: Duration,
    ) -> Result<(), ReadyError> {
        let deadline = Instant::now() + timeout;
        let name = self.slots[slot].svc.name.clone();
        loop {
            if std::path::Path::new(path).exists() {
                return Ok(());
            }
            // Only this service's pid: other threads of the init (the network step) may be
            // waiting for children of their own, which `waitpid(-1)` would steal.
            if let Some(pid) = self.slots[slot].pid {
                let mut status = 0;
                // SAFETY: non-blocking waitpid on our own child; `status` is writable.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    self.exited(pid, status);
                }
            }
            if self.slots[slot].pid.is_none() {
                return Err(ReadyError::Exited {
                    name,
                    path: path.to_owned(),
                });
            }
            if Instant::now() > deadline {
                return Err(ReadyError::Timeout {
                    path: path.to_owned(),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Collects every exited child; schedules restarts of services.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on any child, non-blocking; `status` is writable.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            self.exited(pid, status);
        }
    }

    /// Records the exit of a child; schedules the restart of a service.
    fn exited(&mut self, pid: libc::pid_t, status: libc::c_int) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.pid == Some(pid)) else {
            return; // an orphan re-parented to us
        };
        slot.pid = None;
        let ran = slot.started.elapsed();
        let how = describe(status);
        if !slot.svc.restart {
            log::info(&format!(
                "{} {how} after {:.1} s",
                slot.svc.name,
                ran.as_secs_f64()
            ));
            return;
        }
        slot.failures = if ran >= HEALTHY_RUN {
            1
        } else {
            slot.failures + 1
        };
        let delay = backoff(slot.failures);
        log::info(&format!(
            "service {} {how} after {:.1} s; restart #{} in {} s",
            slot.svc.name,
            ran.as_secs_f64(),
            slot.failures,
            delay.as_secs()
        ));
        slot.restart_at = Some(Instant::now() + delay);
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        for slot in &mut self.slots {
            if slot.restart_at.is_some_and(|t| t <= now) {
                slot.restart_at = None;
                slot.started = now;
                match services::spawn(&slot.svc, slot.output) {
                    Ok(pid) => {
                        slot.pid = Some(pid);
                        log::info(&format!(
                            "service {} restarted t={:.3} (pid {pid})",
                            slot.svc.name,
                            log::uptime()
                        ));
                    }
                    Err(e) => {
                        slot.failures += 1;
                        let delay = backoff(slot.failures);
                        log::failed(
                            &Stage::Service(format!("restart {}", slot.svc.name)),
                            &format!("{e}; next try in {} s", delay.as_secs()),
                        );
                        slot.restart_at = Some(now + delay);
                    }
                }
            }
        }
    }

    /// The loop; returns only to shut down.
    pub fn run(&mut self) -> Exit {
        let set = signal_set();
        loop {
            self.reap();
            self.restart_due();
            let now = Instant::now();
            let wait = self
                .slots
                .iter()
                .filter_map(|s| s.restart_at)
                .map(|t| t.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(5))
                .min(Duration::from_secs(5));
            let ts = libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: wait.subsec_nanos() as libc::c_long,
            };
            // SAFETY: waits for one of the blocked signals; `set` and `ts` are valid.
            let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
            match sig {
                libc::SIGTERM | libc::SIGINT => return Exit::Reboot,
                libc::SIGUSR1 | libc::SIGUSR2 => return Exit::PowerOff,
                _ => {}
            }
        }
    }

    /// Stops services in reverse start order (SIGTERM to the group, SIGKILL after 10 s), then
    /// every remaining process, then reboots or powers off. Never returns.
    pub fn shutdown(&mut self, exit: Exit) -> ! {
        let verb = match exit {
            Exit::Reboot => "reboot",
            Exit::PowerOff => "poweroff",
        };
        log::info(&format!("{verb}: stopping services t={:.3}", log::uptime()));
        for i in (0..self.slots.len()).rev() {
            self.slots[i].restart_at = None;
            self.slots[i].svc.restart = false;
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            // SAFETY: signals the service's process group (created with process_group(0)).
            // An interactive shell ignores SIGTERM; SIGHUP (terminal gone) ends it.
            unsafe {
                libc::kill(-pid, libc::SIGTERM);
                if self.slots[i].output == Output::Console {
                    libc::kill(-pid, libc::SIGHUP);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.slots[i].pid.is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                self.reap();
            }
            if self.slots[i].pid.is_some() {
                log::warn(&format!(
                    "{} ignored SIGTERM for 10 s: killing it",
                    self.slots[i].svc.name
                ));
                // SAFETY: as above.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
        }
        // SAFETY: kill(-1) signals every process but PID 1; sync flushes nothing important on
        // tmpfs but is harmless; reboot ends the machine as asked.
        unsafe {
            libc::kill(-1, libc::SIGTERM);
            std::thread::sleep(Duration::from_millis(500));
            libc::kill(-1, libc::SIGKILL);
            libc::sync();
            log::info(&format!("{verb} t={:.3}", log::uptime()));
            libc::reboot(match exit {
                Exit::Reboot => libc::RB_AUTOBOOT,
                Exit::PowerOff => libc::RB_POWER_OFF,
            });
        }
        // reboot(2) only returns on error; there is nothing left to do but wait.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn describe(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("stopped (status {status})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(0).as_secs(), 1);
    }
}
