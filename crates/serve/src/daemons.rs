//! Runs dnsmasq and nginx in the foreground as one unit: both start or neither keeps running,
//! and SIGINT/SIGTERM (or either daemon stopping) stops both. Their messages go to our
//! standard error as they print them (dnsmasq `log-facility=-`, nginx `error_log stderr`).
//! If serve is killed outright, its watchdog stops them (`watchdog.rs`).

use crate::dnsmasq::DnsmasqConf;
use crate::nginx::NginxConf;
use crate::watchdog::Watchdog;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot listen on {addr}:{port}: is another web server using that port? (give --http-port): {cause}")]
    PortTaken {
        addr: Ipv4Addr,
        port: u16,
        cause: std::io::Error,
    },
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    #[error("cannot bind a socket to interface {interface}: {cause} (serve needs root, as dnsmasq does)")]
    BindDevice {
        interface: String,
        cause: std::io::Error,
    },
    #[error(
        "a DHCP server on this machine already answers on {interface} (UDP port 67 is taken: \
         another `diskless serve` or dnsmasq?): stop it, or use --proxy-dhcp beside it"
    )]
    DhcpTaken { interface: String },
    #[error("cannot bind UDP port 67 on {interface}: {cause}")]
    BindDhcp {
        interface: String,
        cause: std::io::Error,
    },
    /// The daemon's program is not installed: an environment problem.
    #[error("cannot run {name}: apt-get install {package}: {cause}")]
    Program {
        name: &'static str,
        package: &'static str,
        cause: std::io::Error,
    },
    #[error("cannot start the watchdog that stops the daemons if serve is killed: {0}")]
    Watchdog(std::io::Error),
    #[error("{why} while starting: see its message above; nothing is left running")]
    StoppedStarting { why: String },
    #[error("nginx did not answer on {addr}:{port} within 10 s; stopped both daemons")]
    NoAnswer { addr: Ipv4Addr, port: u16 },
    #[error("{why}; stopped the other daemon too")]
    Stopped { why: String },
}

impl DaemonError {
    /// Whether this machine lacks dnsmasq or nginx.
    pub fn is_environment(&self) -> bool {
        matches!(self, DaemonError::Program { .. })
    }
}

/// Refuses a port someone else already holds, before anything starts.
pub fn check_port_free(addr: Ipv4Addr, port: crate::word::Port) -> Result<(), DaemonError> {
    TcpListener::bind((addr, port.get()))
        .map(drop)
        .map_err(|cause| DaemonError::PortTaken {
            addr,
            port: port.get(),
            cause,
        })
}

/// Refuses to lease addresses on an interface where a DHCP server of this machine (another
/// `diskless serve`, a dnsmasq) already answers: dnsmasq binds port 67 shared (SO_REUSEADDR,
/// bound to its interface), so a second one starts happily and both answer every client.
/// A socket bound to the same interface without SO_REUSEADDR conflicts with it; one bound
/// to another interface does not. Needs CAP_NET_RAW (SO_BINDTODEVICE), as dnsmasq does.
pub fn check_dhcp_free(interface: &crate::word::Interface) -> Result<(), DaemonError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let name = interface.as_str();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(DaemonError::Socket(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns; it is closed on drop.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the option value is the interface name's bytes, with its length.
    let bound = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if bound != 0 {
        return Err(DaemonError::BindDevice {
            interface: name.to_string(),
            cause: std::io::Error::last_os_error(),
        });
    }
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 67u16.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a complete sockaddr_in that lives across the call.
    let r = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EADDRINUSE) {
            return Err(DaemonError::DhcpTaken {
                interface: name.to_string(),
            });
        }
        return Err(DaemonError::BindDhcp {
            interface: name.to_string(),
            cause: e,
        });
    }
    Ok(())
}

/// A started daemon, stopped (TERM, then KILL after 5 s) when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Daemon {
    fn start(name: &'static str, cmd: &mut Command) -> Result<Daemon, DaemonError> {
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
                // If serve itself is killed (SIGKILL, a crash), the daemons go with it: nginx
                // by this; dnsmasq changes its user, which clears it (`watchdog.rs`).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|cause| DaemonError::Program {
            name,
            package: package(name),
            cause,
        })?;
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
    dhcp: &DnsmasqConf,
    http: &NginxConf,
) -> Result<(), DaemonError> {
    let signals = block_stop_signals();
    // Declared before the daemons, so dropped after them: it only acts if we die first.
    let watchdog = Watchdog::start().map_err(DaemonError::Watchdog)?;
    let mut dnsmasq = Daemon::start(
        "dnsmasq",
        Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", dnsmasq_conf.display())),
    )?;
    watchdog.guard(dnsmasq.child.id());
    let mut nginx = Daemon::start(
        "nginx",
        Command::new("nginx")
            .args(["-e", "stderr", "-p"])
            .arg(state)
            .arg("-c")
            .arg(nginx_conf),
    )?;
    watchdog.guard(nginx.child.id());
    // Up when nginx answers and dnsmasq is still running (it stops at once when it cannot
    // bind DHCP or TFTP).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for d in [&mut dnsmasq, &mut nginx] {
            if let Some(why) = d.stopped() {
                return Err(DaemonError::StoppedStarting { why });
            }
        }
        if TcpStream::connect_timeout(
            &(http.listen, http.port.get()).into(),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(DaemonError::NoAnswer {
                addr: http.listen,
                port: http.port.get(),
            });
        }
        if let Some(sig) = stop_signal(&signals, Duration::from_millis(100)) {
            eprintln!("diskless serve: signal {sig} while starting; stopping");
            return Ok(());
        }
    }
    eprintln!(
        "diskless serve: ready: DHCP/TFTP on {}, {} over HTTP (Ctrl-C stops both)",
        dhcp.interface.as_str(),
        dhcp.script_url
    );
    loop {
        if let Some(sig) = stop_signal(&signals, Duration::from_millis(250)) {
            eprintln!("diskless serve: signal {sig}: stopping dnsmasq and nginx");
            return Ok(());
        }
        for d in [&mut dnsmasq, &mut nginx] {
            if let Some(why) = d.stopped() {
                return Err(DaemonError::Stopped { why });
            }
        }
    }
}
