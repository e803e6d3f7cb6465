//! A machine behind slirp with its boot server: the boot directory, the HTTP server (or slirp's
//! TFTP), and QEMU, its console on this terminal (`run`) or read by the harness (`check`).
//! Dropping a [`Guest`] kills QEMU and removes the boot directory.

use super::boot_server::{BootDir, BootFiles, HttpServer};
use super::console::console_lines;
use super::process::Spawn;
use super::qemu::{self, Forward, Machine, Nic, Serial, Source, Transport};
use crate::options::BootOptions;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

pub struct Guest {
    pub child: Child,
    /// The console's lines as they arrive (None when the console is the terminal).
    pub lines: Option<Receiver<(Instant, String)>>,
    _boot: BootDir,
    pub http: Option<HttpServer>,
    /// Which accelerator, and why.
    pub accel_note: String,
    pub started: Instant,
}

impl Guest {
    /// Starts the boot server and QEMU. `interactive`: the console on this terminal with
    /// QEMU's Ctrl-A escapes; otherwise it is read by the harness ([`Guest::lines`]).
    pub fn start(
        args: &BootOptions,
        boot: &BootFiles,
        interactive: bool,
        forwards: &[Forward],
    ) -> crate::error::Result<Guest> {
        let dir = BootDir::new(&args.out, &boot.files)?;
        let http = match args.transport {
            Transport::Http => Some(HttpServer::start(dir.dir.path())?),
            Transport::Tftp => None,
        };
        let source = match &http {
            Some(h) => Source::Http { port: h.port },
            None => Source::Tftp {
                dir: dir.dir.path().to_owned(),
            },
        };
        let (accel, accel_note) = super::accel::resolve_accel(args.accel, &boot.kernel);
        let machine = Machine {
            cpus: args.cpus,
            accel,
            serial: if interactive {
                Serial::Terminal
            } else {
                Serial::Stdout
            },
            ..Machine::new(
                args.memory,
                &args.mac,
                Nic::Slirp {
                    source,
                    forwards: forwards.to_vec(),
                },
            )
        };
        let mut cmd = machine.command()?;
        let spawn = if interactive {
            eprintln!(
                "diskless run: {} with {} MiB, accel {accel_note}; QEMU escapes: Ctrl-A x quits, Ctrl-A c monitor",
                boot.image, args.memory
            );
            Spawn::new().foreground()
        } else {
            cmd.stdout(Stdio::piped());
            Spawn::new()
        };
        let started = Instant::now();
        let child = spawn.spawn(&mut cmd).map_err(|e| {
            crate::error::Error::environment(format!(
                "cannot start {} ({e}): apt-get install qemu-system-x86 ipxe-qemu",
                qemu::QEMU
            ))
        })?;
        let (lines, child) = if interactive {
            (None, child)
        } else {
            let (lines, child) = console_lines(child);
            (Some(lines), child)
        };
        Ok(Guest {
            child,
            lines,
            _boot: dir,
            http,
            accel_note,
            started,
        })
    }

    /// Waits for QEMU to exit (the guest powered off, or Ctrl-A x).
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Kills QEMU (if it still runs) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
    }
}
