//! The one QEMU command line the harness builds, for every machine it runs: `check`/`run`
//! behind slirp, the cluster's workers and control plane on a lab bridge's taps, the
//! lab-network test's BIOS and UEFI machines. A virtio NIC; with BIOS firmware SeaBIOS boots
//! its option ROM (iPXE, Debian's `ipxe-qemu`), with UEFI firmware OVMF's own PXE client does.
//! slirp runs with `restrict=on` (the guest reaches nothing but the boot server). The serial
//! console is on standard output. Callers bound every run by a timeout or a person: a failed
//! network boot ends at "No bootable device" and waits forever.

use crate::error::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const QEMU: &str = "qemu-system-x86_64";
/// The address the guest fetches HTTP from; slirp forwards it to the harness's server.
const BOOT_SERVER: &str = "10.0.2.100";
/// Debian's OVMF (`ovmf`), 4 MiB flash layout.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

pub use crate::options::{Accel, Transport};

/// One virtual machine. Build it with [`Machine::new`], adjust the fields, then take
/// [`Machine::command`] (or [`Machine::args`] to run QEMU through a wrapper such as `nsenter`).
#[derive(Debug, Clone)]
pub struct Machine {
    pub memory_mib: u32,
    pub cpus: u32,
    pub mac: String,
    pub accel: Accel,
    pub nic: Nic,
    pub firmware: Firmware,
    pub serial: Serial,
    /// Boot this kernel with this command line instead of from the network (the KVM probe).
    pub kernel: Option<(PathBuf, String)>,
}

/// Where the NIC is plugged in.
#[derive(Debug, Clone)]
pub enum Nic {
    /// slirp user networking: the boot server (`source`) and `forwards` to the host.
    Slirp {
        source: Source,
        forwards: Vec<Forward>,
    },
    /// A tap device (on a lab bridge), made by the caller.
    Tap { ifname: String },
    /// No NIC.
    None,
}

/// How the guest gets its boot files behind slirp.
#[derive(Debug, Clone)]
pub enum Source {
    Http { port: u16 },
    Tftp { dir: PathBuf },
}

#[derive(Debug, Clone)]
pub enum Firmware {
    /// SeaBIOS, booting the NIC's iPXE option ROM. `sga`: sgabios copies the text screen to the
    /// serial line (iPXE's messages then reach the console).
    Bios { sga: bool },
    /// OVMF on a q35 machine with no option ROM on the NIC: OVMF's own virtio-net driver and
    /// PXE client, as on a UEFI machine whose NIC firmware is not iPXE. `vars` is the machine's
    /// own writable copy of [`OVMF_VARS`].
    Uefi { vars: PathBuf },
}

/// Where the serial console goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// On this terminal, with QEMU's Ctrl-A escapes and monitor (`diskless run`).
    Terminal,
    /// On QEMU's standard output, for the harness to read; no monitor.
    Stdout,
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
    /// A BIOS machine with one CPU under single-threaded TCG, its console on standard output.
    pub fn new(memory_mib: u32, mac: &str, nic: Nic) -> Machine {
        Machine {
            memory_mib,
            cpus: 1,
            mac: mac.to_string(),
            accel: Accel::Tcg,
            nic,
            firmware: Firmware::Bios { sga: false },
            serial: Serial::Stdout,
            kernel: None,
        }
    }

    /// `qemu-system-x86_64 ARGS`, standard input closed when the console is not the terminal.
    pub fn command(&self) -> crate::error::Result<Command> {
        let mut cmd = Command::new(QEMU);
        cmd.args(self.args()?);
        if self.serial == Serial::Stdout {
            cmd.stdin(Stdio::null());
        }
        Ok(cmd)
    }

    /// QEMU's arguments.
    pub fn args(&self) -> crate::error::Result<Vec<String>> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|x| x.to_string()));
        match self.accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            // Single-threaded TCG: with one host thread per vCPU (MTTCG), the guest kernel's
            // live code patching (a static key flipped when the first container's cgroup is
            // created) livelocked a vCPU in 3 of ≈ 30 boots here (RCU stall, RIP on the patched
            // NOP in kmem_cache_alloc), and the check never finished. The guest still has
            // `-smp` CPUs; boot times were within the same range.
            Accel::Icount => push(&[
                "-accel",
                "tcg",
                "-icount",
                "shift=0,sleep=on",
                "-cpu",
                "max",
            ]),
            Accel::Auto | Accel::Tcg => push(&["-accel", "tcg,thread=single", "-cpu", "max"]),
        }
        push(&["-m", &self.memory_mib.to_string()]);
        push(&["-smp", &self.cpus.to_string()]);
        push(&["-nodefaults", "-display", "none", "-no-reboot"]);
        match self.serial {
            Serial::Terminal => push(&["-serial", "mon:stdio"]),
            Serial::Stdout => push(&["-serial", "stdio", "-monitor", "none"]),
        }
        if let Some((kernel, append)) = &self.kernel {
            push(&["-kernel", &kernel.display().to_string(), "-append", append]);
            return Ok(a);
        }
        push(&["-netdev", &self.netdev()?]);
        match &self.firmware {
            Firmware::Bios { sga } => {
                if *sga {
                    push(&["-device", "sga"]);
                }
                push(&["-boot", "n"]);
                push(&[
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={}", self.mac),
                ]);
            }
            Firmware::Uefi { vars } => {
                push(&["-machine", "q35"]);
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                ]);
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,file={}", vars.display()),
                ]);
                push(&[
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={},romfile=", self.mac),
                ]);
            }
        }
        Ok(a)
    }

    fn netdev(&self) -> crate::error::Result<String> {
        let (source, forwards) = match &self.nic {
            Nic::Tap { ifname } => {
                return Ok(format!("tap,id=n0,ifname={ifname},script=no,downscript=no"))
            }
            Nic::Slirp { source, forwards } => (source, forwards),
            Nic::None => bail!("a network boot needs a NIC"),
        };
        let mut net = match source {
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
        for f in forwards {
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
        Ok(net)
    }
}

/// A fresh copy of [`OVMF_VARS`] at `path`, for one UEFI machine's variables.
pub fn uefi_vars(path: &Path) -> crate::error::Result<PathBuf> {
    std::fs::copy(OVMF_VARS, path).map_err(|e| {
        crate::error::Error::environment(format!(
            "cannot copy {OVMF_VARS} ({e}): apt-get install ovmf"
        ))
    })?;
    Ok(path.to_owned())
}

/// busybox for slirp's `guestfwd` command: Debian's path, else the first on `PATH` (a Nix
/// build sandbox has no /bin).
fn find_busybox() -> crate::error::Result<String> {
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
        .ok_or_else(|| crate::error::Error::environment("the HTTP transport needs busybox on the host for `nc` (apt-get install busybox-static), or use --transport tftp"))
}
