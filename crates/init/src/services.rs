//! Starting one service: a clean environment, its own process group (so stopping it reaches
//! its children), and its output forwarded line by line to the console as `[name] …` and to
//! `/var/log/<name>.log`.

use diskless_contract::image::Service;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the pid of each running service is written, for people and the check hook.
pub const PID_DIR: &str = "/run/diskless/services";

/// A service that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("pipe for {name}: {err}")]
    Pipe { name: String, err: std::io::Error },
    /// `command` is the service's argv joined by spaces.
    #[error("start {command}: {err}")]
    Start {
        command: String,
        err: std::io::Error,
    },
}

/// How a service's standard streams are connected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// Prefixed lines on the console plus `/var/log/<name>.log`.
    Logged,
    /// The console itself (the debug shell, the check hook).
    Console,
}

pub fn spawn(svc: &Service, output: Output) -> Result<i32, SpawnError> {
    let mut cmd = Command::new(&svc.command[0]);
    cmd.args(&svc.command[1..])
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .envs(&svc.env)
        .current_dir("/")
        .process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls on a local set.
    unsafe {
        cmd.pre_exec(|| {
            // PID 1 blocks the signals it takes with sigtimedwait (supervisor.rs), and a
            // child inherits the mask across exec: a service would then never see SIGTERM,
            // nor SIGCHLD (dropbear waits for its sessions' shells on SIGCHLD and hung).
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let reader = match output {
        Output::Console => None,
        Output::Logged => {
            let pipe_err = |err| SpawnError::Pipe {
                name: svc.name.clone(),
                err,
            };
            let (r, w) = pipe().map_err(pipe_err)?;
            let w2 = w.try_clone().map_err(pipe_err)?;
            cmd.stdin(Stdio::null()).stdout(w).stderr(w2);
            Some(r)
        }
    };
    let child = cmd.spawn().map_err(|err| SpawnError::Start {
        command: svc.command.join(" "),
        err,
    })?;
    // `cmd` still holds the write ends: drop it so the reader sees EOF when the service exits.
    drop(cmd);
    let pid = child.id() as i32;
    // The supervisor reaps by pid (waitpid), not through `Child`, so dropping it is fine.
    drop(child);
    if let Some(r) = reader {
        let name = svc.name.clone();
        std::thread::spawn(move || forward(&name, r));
    }
    let _ = std::fs::create_dir_all(PID_DIR);
    let _ = std::fs::write(format!("{PID_DIR}/{}.pid", svc.name), format!("{pid}\n"));
    Ok(pid)
}

fn pipe() -> std::io::Result<(File, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Copies a service's output to the console and its log until every writer has closed.
fn forward(name: &str, r: File) {
    let _ = std::fs::create_dir_all("/var/log");
    let mut logfile = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/var/log/{name}.log"))
        .ok();
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        crate::log::line(&format!("[{name}] {text}"));
        if let Some(f) = logfile.as_mut() {
            let _ = writeln!(f, "{text}");
        }
    }
}
