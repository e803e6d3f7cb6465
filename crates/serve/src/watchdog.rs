//! Stops the daemons when `diskless serve` dies without stopping them itself (SIGKILL, a
//! crash). Their PR_SET_PDEATHSIG is not enough: the kernel clears it when a process changes
//! its user, and dnsmasq drops root (to `dnsmasq` or `nobody`) as soon as its ports are bound,
//! so a SIGKILLed serve used to leave dnsmasq answering DHCP.
//!
//! A forked watchdog reads daemon pids from a pipe whose only write end is serve's (close-on-
//! exec, so no daemon holds it). When serve dies the kernel closes that end, `read` returns
//! 0, and the watchdog sends SIGTERM to each pid it was given. On a normal stop serve has
//! stopped and reaped the daemons itself, so it first writes [`DISARM`]: the watchdog then
//! exits without signalling pids that may already belong to someone else.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Sent instead of a pid on a normal stop.
const DISARM: i32 = 0;
/// More than serve ever starts (dnsmasq and nginx).
const MAX_PIDS: usize = 8;

pub struct Watchdog {
    write: Option<OwnedFd>,
    pid: libc::pid_t,
}

impl Watchdog {
    /// Forks the watchdog. Call with SIGINT and SIGTERM blocked (the watchdog inherits the
    /// mask): Ctrl-C on the terminal must not end it before serve.
    pub fn start() -> std::io::Result<Watchdog> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both are fresh descriptors nobody else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only calls async-signal-safe functions (close, read, kill, _exit)
        // and never returns into Rust code that might allocate or take locks.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => unsafe { watch(read.as_raw_fd(), write.as_raw_fd()) },
            pid => Ok(Watchdog {
                write: Some(write),
                pid,
            }),
        }
    }

    /// Tells the watchdog about a started daemon.
    pub fn guard(&self, pid: u32) {
        self.send(pid as i32);
    }

    fn send(&self, value: i32) {
        if let Some(w) = &self.write {
            let bytes = value.to_ne_bytes();
            // SAFETY: writes 4 bytes from a local array to our own pipe; a pipe write of
            // 4 bytes is atomic. A failure (the watchdog gone) leaves nothing to do.
            unsafe { libc::write(w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        }
    }
}

impl Drop for Watchdog {
    /// A normal stop: the daemons are already stopped (declare the watchdog before them, so
    /// they are dropped first).
    fn drop(&mut self) {
        self.send(DISARM);
        self.write = None;
        let mut status = 0;
        // SAFETY: waitpid on our own child, which exits once it reads DISARM or EOF.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// The watchdog's whole life, in the forked child.
///
/// # Safety
/// Only in the child of `fork`: it uses raw descriptors and ends with `_exit`.
unsafe fn watch(read: i32, write: i32) -> ! {
    libc::close(write);
    let mut pids = [0i32; MAX_PIDS];
    let mut n = 0;
    loop {
        let mut buf = [0u8; 4];
        let got = libc::read(read, buf.as_mut_ptr().cast(), buf.len());
        if got == -1 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if got != 4 {
            // EOF (serve is gone) or an error: stop every daemon serve started.
            for &pid in &pids[..n] {
                libc::kill(pid, libc::SIGTERM);
            }
            libc::_exit(0);
        }
        match i32::from_ne_bytes(buf) {
            DISARM => libc::_exit(0),
            pid if n < MAX_PIDS => {
                pids[n] = pid;
                n += 1;
            }
            _ => {}
        }
    }
}
