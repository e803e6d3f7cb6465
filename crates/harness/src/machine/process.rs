//! Every process the harness starts (QEMU, the control plane's daemons, `diskless serve`,
//! kubectl and etcdctl, `unshare`) is spawned through [`Spawn`], so that none outlives the
//! harness however it is stopped:
//! - SIGKILL (or any death without cleanup): each child has a parent-death signal
//!   (`PR_SET_PDEATHSIG`). The kernel sends it when the *thread* that spawned the child exits,
//!   not the process: long-lived children (QEMU, daemons, serve) must be spawned from a thread
//!   that lives as long as they should (the main thread, or the test's thread); short ones
//!   (kubectl) may come from any thread that waits for them.
//! - SIGINT and SIGTERM: `run` and `check` call [`stop_on_signals`], whose handler kills every
//!   child registered here (the whole process group it leads) and then exits with 128 + the
//!   signal, as a shell reports it.
//!
//! Children get their own process group (a terminal's Ctrl-C reaches only the harness, which
//! stops them itself, each the way it stops well), except a QEMU whose console is the
//! terminal: a background group reading the terminal would be stopped by SIGTTIN. QEMU's
//! per-connection `busybox nc` forwarders are none of ours: slirp detaches them (a session
//! of their own, re-parented to PID 1), and each ends when its connection does, at the latest
//! when QEMU is gone.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A child the stop handler must end: its pid, the signal that stops it well, and whether it
/// leads a process group of its own.
#[derive(Debug, Clone, Copy)]
struct Registered {
    pid: libc::pid_t,
    signal: libc::c_int,
    group: bool,
}

static CHILDREN: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
/// Temporary directories to remove when a signal stops the harness (no destructor runs then).
static TEMP_DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// A temporary directory `/tmp/PREFIX…`, removed when dropped as usual, and also by the stop
/// handler of [`stop_on_signals`] (after the children that wrote to it are gone).
pub fn temp_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    let mut dirs = TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    dirs.retain(|d| d.exists());
    dirs.push(dir.path().to_owned());
    Ok(dir)
}

/// How a child is owned.
#[derive(Debug, Clone, Copy)]
pub struct Spawn {
    signal: libc::c_int,
    group: bool,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn::new()
    }
}

impl Spawn {
    /// SIGKILL when the harness goes, in a process group of its own.
    pub fn new() -> Spawn {
        Spawn {
            signal: libc::SIGKILL,
            group: true,
        }
    }

    /// Stopped with `signal` instead of SIGKILL (`diskless serve` stops its daemons on
    /// SIGTERM; SIGKILL follows a second later if it is still there).
    pub fn signal(self, signal: libc::c_int) -> Spawn {
        Spawn { signal, ..self }
    }

    /// Stays in the harness's process group: for a QEMU whose console is this terminal.
    pub fn foreground(self) -> Spawn {
        Spawn {
            group: false,
            ..self
        }
    }

    /// Spawns `cmd` owned: the parent-death signal set, registered for the stop handler.
    pub fn spawn(self, cmd: &mut Command) -> std::io::Result<Child> {
        let Spawn { signal, group } = self;
        // SAFETY: between fork and exec only async-signal-safe calls: prctl(2), setpgid(2),
        // pthread_sigmask (unblocking what a caller may have blocked for sigwait).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if group && libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let mut children = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|c| is_our_child(c.pid));
        children.push(Registered {
            pid: child.id() as libc::pid_t,
            signal,
            group,
        });
        Ok(child)
    }
}

/// [`Spawn::new`]: SIGKILL with the harness, in a group of its own.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    Spawn::new().spawn(cmd)
}

/// [`spawn`]ed with both outputs collected, waited for: [`Command::output`], owned.
pub fn output(cmd: &mut Command) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))?.wait_with_output()
}

/// Whether `pid` is still a child of this process (alive or not yet reaped): a pid that was
/// reaped and reused belongs to someone else and must not be signalled.
fn is_our_child(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse::<libc::pid_t>().ok());
    // SAFETY: getpid has no preconditions.
    ppid == Some(unsafe { libc::getpid() })
}

/// Sends every registered child that is still ours its stop signal, waits up to a second,
/// then SIGKILLs what is left. Returns how many were signalled.
pub fn stop_all() -> usize {
    let children: Vec<Registered> = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    stop(children)
}

fn stop(children: Vec<Registered>) -> usize {
    let children: Vec<Registered> = children
        .into_iter()
        .filter(|c| is_our_child(c.pid))
        .collect();
    let send = |c: &Registered, sig: libc::c_int| {
        let target = if c.group { -c.pid } else { c.pid };
        // SAFETY: kill(2) on a child of ours (checked above), or on the group it leads.
        unsafe { libc::kill(target, sig) };
    };
    for c in &children {
        send(c, c.signal);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while children
        .iter()
        .any(|c| c.signal != libc::SIGKILL && alive(c.pid))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for c in children.iter().filter(|c| is_our_child(c.pid)) {
        send(c, libc::SIGKILL);
    }
    children.len()
}

/// Not yet exited (a zombie has exited).
fn alive(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|st| st.rsplit(')').next().is_some_and(|r| !r.starts_with(" Z")))
}

/// The write end of the self-pipe the signal handler reports to.
static PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE.load(Ordering::Relaxed);
    let byte = sig as u8;
    // SAFETY: write(2) is async-signal-safe; the pipe's write end stays open for the process.
    unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
}

/// On SIGINT or SIGTERM: stop every child ([`stop_all`]), remove the temporary directories
/// made by [`temp_dir`], say so, and exit with 128 + the
/// signal (130, 143). The handler only writes to a pipe; a thread does the rest, as a signal
/// handler may not allocate or lock. Installed once; later calls do nothing.
pub fn stop_on_signals(who: &'static str) -> std::io::Result<()> {
    if PIPE.load(Ordering::Relaxed) >= 0 {
        return Ok(());
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    PIPE.store(fds[1], Ordering::Relaxed);
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        // SAFETY: read(2) into a one-byte buffer we own.
        let n = unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) };
        if n != 1 {
            return;
        }
        let sig = libc::c_int::from(byte);
        let n = stop_all();
        for dir in TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("{who}: signal {sig}: stopped {n} process(es) it started");
        std::process::exit(128 + sig);
    });
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a handler that only calls write(2); SA_RESTART keeps other threads' reads
        // going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_is_registered_and_stopped() {
        let mut child = spawn(Command::new("sleep").arg("30")).unwrap();
        let pid = child.id() as libc::pid_t;
        assert!(is_our_child(pid));
        // Only this test's child: other tests' children run in the same process.
        let mine: Vec<Registered> = CHILDREN
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|c| c.pid == pid)
            .collect();
        assert_eq!(stop(mine), 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(!is_our_child(child.id() as libc::pid_t));
    }
}
