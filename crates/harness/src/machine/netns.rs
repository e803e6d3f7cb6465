//! A lab network that touches none of the host's interfaces: a network namespace, a bridge in
//! it with the boot server's address, and one tap device per QEMU machine. The lab-network
//! test (`crates/cli/tests/labnet.rs`) boots machines on it through `diskless serve`; the
//! cluster scenario ([`crate::scenario::cluster`]) also runs the control plane in it, by entering it
//! ([`Netns::enter`]) before starting anything: every process and thread started afterwards
//! from that thread is in the namespace. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).

use crate::error::{bail, Context};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace held by `unshare --net cat`: it lives while our pipe to `cat` is open,
/// so it goes away with the process that made it even if that process is killed (once the
/// processes started in it are gone too).
pub struct Netns {
    holder: Child,
}

impl Netns {
    pub fn new() -> crate::error::Result<Netns> {
        let holder = super::process::spawn(
            Command::new("unshare")
                .args(["--net", "cat"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null()),
        )
        .context("cannot run unshare --net (util-linux)")?;
        let ns = Netns { holder };
        // Wait until cat runs in the new namespace.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(ns.path()).ok() == std::fs::read_link("/proc/self/ns/net").ok() {
            if Instant::now() >= deadline {
                bail!("unshare --net did not start a namespace within 5 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(ns)
    }

    /// `/proc/<holder>/ns/net`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// `program` run in the namespace (through `nsenter`).
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(program);
        c
    }

    /// `ip ARGS` in the namespace (iproute2); Err quotes what it said.
    pub fn ip(&self, args: &str) -> crate::error::Result<()> {
        let out = super::process::output(self.cmd("ip").args(args.split_whitespace()))
            .context("cannot run nsenter … ip")?;
        if !out.status.success() {
            bail!(
                "ip {args} (in the lab namespace): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Moves the calling thread into the namespace (`setns(2)`): what it starts from now on
    /// (processes, threads, sockets) lives there. Other threads are not affected.
    pub fn enter(&self) -> crate::error::Result<()> {
        let f = std::fs::File::open(self.path())
            .with_context(|| format!("open {}", self.path().display()))?;
        // SAFETY: setns on a namespace file descriptor we hold open; it changes only the
        // calling thread's network namespace.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("setns into the lab network namespace (needs root)");
        }
        Ok(())
    }

    /// Loopback up, a bridge `br0` with `address`/24 (IPv4) and `ipv6` (/64, for `serve
    /// --ipv6-ra`: iPXE waits ≈ 13 s for a router advertisement otherwise), and the taps
    /// enslaved to it, all up.
    pub fn bridge(&self, address: &str, ipv6: &str, taps: &[&str]) -> crate::error::Result<()> {
        self.ip("link set lo up")?;
        // A fixed bridge MAC: by default it follows the lowest port MAC and changes as taps join.
        self.ip("link add br0 address 02:00:00:33:00:01 type bridge")?;
        self.ip(&format!("addr add {address}/24 dev br0"))?;
        self.ip(&format!("addr add {ipv6}/64 dev br0 nodad"))?;
        self.ip("link set br0 up")?;
        for tap in taps {
            self.ip(&format!("tuntap add {tap} mode tap"))?;
            self.ip(&format!("link set {tap} master br0"))?;
            self.ip(&format!("link set {tap} up"))?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// What a lab-network test needs that this machine may lack: `Some(why)` to print as
/// `skipped: <why>`.
pub fn why_skip() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for network namespaces and tap devices".into());
    }
    let on_path = |b: &str| {
        std::env::var_os("PATH")
            .map(|ps| std::env::split_paths(&ps).any(|d| d.join(b).is_file()))
            .unwrap_or(false)
    };
    for (bin, pkg) in [
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
        ("dnsmasq", "dnsmasq-base"),
        ("nginx", "nginx"),
        ("qemu-system-x86_64", "qemu-system-x86"),
    ] {
        if !on_path(bin) && !std::path::Path::new("/usr/sbin").join(bin).is_file() {
            return Some(format!("{bin} missing (apt-get install {pkg})"));
        }
    }
    for (file, pkg) in [
        ("/usr/lib/ipxe/undionly.kpxe", "ipxe"),
        ("/usr/lib/ipxe/ipxe.efi", "ipxe"),
        ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
        ("/usr/bin/containerd", "containerd"),
    ] {
        if !std::path::Path::new(file).is_file() {
            return Some(format!("{file} missing (apt-get install {pkg})"));
        }
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun missing".into());
    }
    None
}
