//! The virtual lab machine: QEMU with a virtio NIC whose option ROM is iPXE (Debian's
//! `ipxe-qemu`), slirp user networking with `restrict=on` (the guest reaches nothing but the
//! boot server), and the serial console on standard output. Always bounded by a timeout: a
//! failed network boot ends at "No bootable device" and waits forever.

use anyhow::{bail, Context};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";
/// The address the guest fetches HTTP from; slirp forwards it to the harness's server.
const BOOT_SERVER: &str = "10.0.2.100";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if a probe boot works, else TCG.
    Auto,
    Kvm,
    Tcg,
    /// TCG with a virtual clock that counts instructions (1 ns each), for benchmarks: guest
    /// times then measure the guest's work, not the host's speed or load (single-threaded
    /// TCG here varied by ±30 % between identical boots).
    Icount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP from a server on 127.0.0.1 via slirp guestfwd (faster).
    Http,
    /// slirp's built-in TFTP server.
    Tftp,
}

/// How the guest gets its boot files.
pub enum Source<'a> {
    Http { port: u16 },
    Tftp { dir: &'a Path },
}

pub struct Machine {
    pub memory_mib: u32,
    pub cpus: u32,
    pub mac: String,
    pub accel: Accel,
    /// More ports between host loopback and guest (the join test's API server and kubelet).
    pub forwards: Vec<Forward>,
}

/// A slirp port forward beside the boot server's.
#[derive(Debug, Clone, Copy)]
pub enum Forward {
    /// The guest connects to `BOOT_SERVER:guest_port`; a `cmd:` forward per connection (a
    /// plain tcp: one carries only one) reaches 127.0.0.1:`host_port`.
    ToHost { guest_port: u16, host_port: u16 },
    /// 127.0.0.1:`host_port` on the host reaches the guest's `guest_port`.
    ToGuest { host_port: u16, guest_port: u16 },
}

impl Machine {
    pub fn command(&self, source: &Source) -> anyhow::Result<Command> {
        let net = match source {
            Source::Http { port } => {
                let busybox = find_busybox()?;
                // A `cmd:` forward starts one process per connection; a plain tcp: forward
                // carries only one connection (field notes), and iPXE opens several.
                format!(
                    "user,id=n0,restrict=on,guestfwd=tcp:{BOOT_SERVER}:80-cmd:{busybox} nc 127.0.0.1 {port},bootfile=http://{BOOT_SERVER}/boot.ipxe"
                )
            }
            Source::Tftp { dir } => {
                let dir = dir.to_str().context("boot directory path is not UTF-8")?;
                if dir.contains(',') {
                    bail!("boot directory {dir} contains a comma, which QEMU options cannot carry");
                }
                format!("user,id=n0,restrict=on,tftp={dir},bootfile=boot.ipxe")
            }
        };
        let mut net = net;
        for f in &self.forwards {
            match *f {
                Forward::ToHost {
                    guest_port,
                    host_port,
                } => net.push_str(&format!(
                    ",guestfwd=tcp:{BOOT_SERVER}:{guest_port}-cmd:{} nc 127.0.0.1 {host_port}",
                    find_busybox()?
                )),
                Forward::ToGuest {
                    host_port,
                    guest_port,
                } => net.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host_port}-:{guest_port}")),
            }
        }
        let mut cmd = Command::new(QEMU);
        match self.accel {
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
            // Single-threaded TCG: with one host thread per vCPU (MTTCG), the guest kernel's
            // live code patching (a static key flipped when the first container's cgroup is
            // created) livelocked a vCPU in 3 of ≈ 30 boots here (RCU stall, RIP on the patched
            // NOP in kmem_cache_alloc), and the check never finished. The guest still has
            // `-smp` CPUs; boot times were within the same range.
            Accel::Icount => cmd.args([
                "-accel",
                "tcg",
                "-icount",
                "shift=0,sleep=on",
                "-cpu",
                "max",
            ]),
            _ => cmd.args(["-accel", "tcg,thread=single", "-cpu", "max"]),
        };
        cmd.args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-no-reboot",
                "-boot",
                "n",
            ])
            .args(["-netdev", &net])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={}", self.mac),
            ]);
        Ok(cmd)
    }
}

/// busybox for slirp's `guestfwd` command: Debian's path, else the first on `PATH` (a Nix
/// build sandbox has no /bin).
fn find_busybox() -> anyhow::Result<String> {
    let on_path = std::env::var_os("PATH")
        .map(|ps| {
            std::env::split_paths(&ps)
                .map(|d| d.join("busybox"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    ["/bin/busybox".into(), "/usr/bin/busybox".into()]
        .into_iter()
        .chain(on_path)
        .find(|p: &std::path::PathBuf| p.is_file())
        .map(|p| p.display().to_string())
        .context("the HTTP transport needs busybox on the host for `nc` (apt-get install busybox-static), or use --transport tftp")
}

/// Decides the accelerator: KVM only if it really boots a kernel here. On this project's
/// machines `/dev/kvm` exists but the nested hypervisor cannot run the Debian kernel (QEMU
/// aborts with "failed to set MSR" or hangs), so the probe boots the kernel with no root and
/// waits for its panic message.
pub fn resolve_accel(wanted: Accel, kernel: &Path) -> (Accel, String) {
    match wanted {
        Accel::Tcg => (Accel::Tcg, "tcg,thread=single (asked for)".into()),
        Accel::Kvm => (Accel::Kvm, "kvm (asked for)".into()),
        Accel::Icount => (
            Accel::Icount,
            "tcg -icount shift=0,sleep=on (asked for; guest times count instructions, 1 ns each)"
                .into(),
        ),
        Accel::Auto => match probe_kvm(kernel) {
            Ok(()) => (Accel::Kvm, "kvm (probe boot worked)".into()),
            Err(why) => (
                Accel::Tcg,
                format!("tcg,thread=single -cpu max (kvm unusable: {why})"),
            ),
        },
    }
}

fn probe_kvm(kernel: &Path) -> Result<(), String> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Err("/dev/kvm cannot be opened".into());
    }
    let child = Command::new(QEMU)
        .args(["-accel", "kvm", "-cpu", "host", "-m", "128", "-nodefaults"])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/diskless-probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let (lines, mut child) = console_lines(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut result = Err("no kernel panic within 15 s".to_string());
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok((_, l)) if l.contains("Kernel panic") => {
                result = Ok(());
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let out = child.wait_with_output().ok();
    if result.is_err() {
        if let Some(err) = out
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .and_then(|s| s.lines().next().map(String::from))
        {
            result = Err(err);
        }
    }
    result
}

/// Reads the child's standard output as console lines (escape sequences and `\r` removed),
/// each stamped with the time it arrived.
pub fn console_lines(
    mut child: std::process::Child,
) -> (mpsc::Receiver<(Instant, String)>, std::process::Child) {
    let (tx, rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut line = Vec::new();
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    let text = clean(&line);
                    line.clear();
                    if tx.send((Instant::now(), text)).is_err() {
                        return;
                    }
                } else {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            let _ = tx.send((Instant::now(), clean(&line)));
        }
    });
    (rx, child)
}

/// Removes ANSI escape sequences (iPXE and SeaBIOS draw with them) and control characters.
pub fn clean(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escape_sequences_are_removed() {
        assert_eq!(
            super::clean(b"\x1b[2J\x1b[0;1miPXE\x1b[0m 1.0 -- Open Source\r"),
            "iPXE 1.0 -- Open Source"
        );
        assert_eq!(super::clean(b"plain\ttext"), "plain\ttext");
    }
}
