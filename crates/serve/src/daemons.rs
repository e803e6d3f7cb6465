//! Runs dnsmasq and nginx in the foreground as one unit: both start or neither keeps running,
//! and SIGINT/SIGTERM (or either daemon stopping) stops both. Their messages go to our
//! standard error as they print them (dnsmasq `log-facility=-`, nginx `error_log stderr`).

use crate::Resolved;
use anyhow::{bail, Context};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Refuses a port someone else already holds, before anything starts.
pub fn check_port_free(addr: Ipv4Addr, port: crate::word::Port) -> anyhow::Result<()> {
    TcpListener::bind((addr, port.get()))
        .map(drop)
        .with_context(|| {
            format!(
            "cannot listen on {addr}:{}: is another web server using that port? (give --http-port)",
            port.get()
        )
        })
}

/// A started daemon, stopped (TERM, then KILL after 5 s) when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command) -> anyhow::Result<Daemon> {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only async-signal-safe calls (sigemptyset,
        // pthread_sigmask, prctl) on a local set.
        unsafe {
            cmd.pre_exec(|| {
                // Our SIGINT/SIGTERM are blocked (for sigtimedwait); a daemon inheriting that
                // mask could not be stopped.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                // If serve itself is killed (SIGKILL, a crash), the daemons go with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot run {name}: apt-get install {}", package(name)))?;
        Ok(Daemon { name, child })
    }

    /// `Some(why)` once it has stopped.
    fn stopped(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} stopped ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("cannot watch {}: {e}", self.name)),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, which has not been reaped (try_wait above).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn package(daemon: &str) -> &'static str {
    match daemon {
        "dnsmasq" => "dnsmasq-base",
        _ => "nginx",
    }
}

/// SIGINT and SIGTERM, blocked so that `sigtimedwait` receives them (children unblock them
/// again before exec: `Daemon::start`).
fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a local, initialised sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// A stop signal within `wait`, if one came.
fn stop_signal(set: &libc::sigset_t, wait: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: wait.as_secs() as libc::time_t,
        tv_nsec: wait.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is initialised, `ts` lives across the call, the info pointer may be null.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

pub fn run(
    dnsmasq_conf: &Path,
    nginx_conf: &Path,
    state: &Path,
    r: &Resolved,
) -> anyhow::Result<()> {
    let signals = block_stop_signals();
    let mut dnsmasq = Daemon::start(
        "dnsmasq",
        Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", dnsmasq_conf.display())),
    )?;
    let mut nginx = Daemon::start(
        "nginx",
        Command::new("nginx")
            .args(["-e", "stderr", "-p"])
            .arg(state)
            .arg("-c")
            .arg(nginx_conf),
    )?;
    // Up when nginx answers and dnsmasq is still running (it stops at once when it cannot
    // bind DHCP or TFTP).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for d in [&mut dnsmasq, &mut nginx] {
            if let Some(why) = d.stopped() {
                bail!("{why} while starting: see its message above; nothing is left running");
            }
        }
        if TcpStream::connect_timeout(
            &(r.nginx.listen, r.nginx.port.get()).into(),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "nginx did not answer on {}:{} within 10 s; stopped both daemons",
                r.nginx.listen,
                r.nginx.port.get()
            );
        }
        if let Some(sig) = stop_signal(&signals, Duration::from_millis(100)) {
            eprintln!("diskless serve: signal {sig} while starting; stopping");
            return Ok(());
        }
    }
    eprintln!(
        "diskless serve: ready: DHCP/TFTP on {}, {} over HTTP (Ctrl-C stops both)",
        r.dnsmasq.interface.as_str(),
        r.dnsmasq.script_url
    );
    loop {
        if let Some(sig) = stop_signal(&signals, Duration::from_millis(250)) {
            eprintln!("diskless serve: signal {sig}: stopping dnsmasq and nginx");
            return Ok(());
        }
        for d in [&mut dnsmasq, &mut nginx] {
            if let Some(why) = d.stopped() {
                bail!("{why}; stopped the other daemon too");
            }
        }
    }
}
