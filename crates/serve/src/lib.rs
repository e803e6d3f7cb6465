//! `diskless serve`: the lab boot server's daemons for a published directory. dnsmasq answers
//! DHCP (its own range, or proxy-DHCP beside the lab's DHCP server) and sends each machine the
//! first iPXE binary by TFTP (BIOS: `undionly.kpxe`, x86-64 UEFI: `ipxe.efi`, both from Debian's
//! `ipxe` package); iPXE then asks again and gets `boot.ipxe` over HTTP from nginx, which serves
//! the published directory (see docs/boot-server.md).
//!
//! What the user gives (`ServeOptions`) is resolved into checked values (`Resolved`) before any
//! file is written or daemon started; each config file is one type (`dnsmasq`, `nginx`) that
//! writes only those values. `daemons` runs both in the foreground and stops both together.

mod daemons;
pub mod dnsmasq;
mod iface;
pub mod nginx;
mod watchdog;
pub mod word;

use anyhow::{bail, Context};
use dnsmasq::{Dhcp, DnsmasqConf};
use nginx::NginxConf;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use word::{Cidr, ConfPath, Interface, Port, Word};

/// Where Debian's `ipxe` package puts its binaries.
pub const DEBIAN_IPXE: &str = "/usr/lib/ipxe";
const BIOS_BINARY: &str = "undionly.kpxe";
const UEFI_BINARY: &str = "ipxe.efi";

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The published boot-server directory (made by `diskless publish`).
    pub dest: PathBuf,
    /// The network interface machines boot on.
    pub interface: String,
    /// This server's address and prefix on that interface; default: the interface's first IPv4.
    pub address: Option<String>,
    /// Full DHCP: the first and last address to lease.
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Proxy-DHCP beside an existing DHCP server (instead of a range).
    pub proxy: bool,
    /// Address nginx listens on; default: the interface address.
    pub listen: Option<Ipv4Addr>,
    pub http_port: u16,
    /// Directory with `undionly.kpxe` and `ipxe.efi`; default /usr/lib/ipxe.
    pub tftp_root: Option<PathBuf>,
    /// Leases, pid file, nginx's temporary directories; `serve` defaults to a temporary one.
    pub state_dir: Option<PathBuf>,
    /// Send IPv6 router advertisements on the interface (it needs an IPv6 /64 of its own):
    /// only on a network without an IPv6 router.
    pub ipv6_ra: bool,
}

/// The checked configuration: what both files are written from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub dnsmasq: DnsmasqConf,
    pub nginx: NginxConf,
}

/// Checks everything a daemon would otherwise trip over later, and names what to fix.
pub fn resolve(o: &ServeOptions, state: &Path) -> anyhow::Result<Resolved> {
    let dest = o
        .dest
        .canonicalize()
        .with_context(|| format!("boot-server directory {} cannot be read", o.dest.display()))?;
    if !dest.join("boot.ipxe").is_file() {
        bail!(
            "{} has no boot.ipxe: give the directory `diskless publish --to` wrote",
            dest.display()
        );
    }
    let root = ConfPath::new(&dest).context("the boot-server directory")?;
    let interface = Interface::new(&o.interface).context("--interface")?;
    let cidr = match &o.address {
        Some(a) => Cidr::parse(a).context("--address")?,
        None => iface::ipv4(interface.as_str())?.with_context(|| {
            format!(
                "interface {} has no IPv4 address: give --address ADDR/PREFIX",
                interface.as_str()
            )
        })?,
    };
    let dhcp = match (o.dhcp_range, o.proxy) {
        (Some(_), true) => bail!("give either --dhcp-range or --proxy-dhcp, not both"),
        (None, false) => bail!(
            "give --dhcp-range FIRST-LAST (this server leases addresses) or --proxy-dhcp (an existing DHCP server does)"
        ),
        (Some((start, end)), false) => {
            for a in [start, end] {
                if !cidr.holds_host(a) {
                    bail!("--dhcp-range: {a} is not a host address of {}'s network {}/{}", interface.as_str(), cidr.network(), cidr.prefix);
                }
            }
            if u32::from(start) > u32::from(end) {
                bail!("--dhcp-range: {start} comes after {end}");
            }
            if (u32::from(start)..=u32::from(end)).contains(&u32::from(cidr.addr)) {
                bail!("--dhcp-range {start}-{end} holds this server's own address {}", cidr.addr);
            }
            Dhcp::Range {
                start,
                end,
                netmask: cidr.netmask(),
            }
        }
        (None, true) => Dhcp::Proxy {
            network: cidr.network(),
            netmask: cidr.netmask(),
        },
    };
    let tftp = o
        .tftp_root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEBIAN_IPXE));
    for binary in [BIOS_BINARY, UEFI_BINARY] {
        if !tftp.join(binary).is_file() {
            bail!(
                "{} has no {binary}: install Debian's ipxe package (apt-get install ipxe) or give --tftp-root DIR holding undionly.kpxe and ipxe.efi",
                tftp.display()
            );
        }
    }
    let tftp_root = ConfPath::new(&tftp).context("--tftp-root")?;
    let state = ConfPath::new(state).context("--state-dir")?;
    let port = Port::new(o.http_port).context("--http-port")?;
    let listen = o.listen.unwrap_or(cidr.addr);
    Ok(Resolved {
        dnsmasq: DnsmasqConf {
            interface,
            dhcp,
            tftp_root,
            bios_binary: BIOS_BINARY,
            uefi_binary: UEFI_BINARY,
            script_url: Word::http_url(listen, port, "boot.ipxe"),
            lease_file: state.join("dnsmasq.leases"),
            ipv6_ra: o.ipv6_ra,
        },
        nginx: NginxConf {
            listen,
            port,
            root,
            state,
        },
    })
}

/// The state directory `--print-config DIR` names: `--state-dir`, else `DIR/state`, absolute.
fn print_state(o: &ServeOptions, dir: &Path) -> anyhow::Result<PathBuf> {
    let state = match &o.state_dir {
        Some(s) => s.clone(),
        None => dir.join("state"),
    };
    std::path::absolute(&state).with_context(|| format!("cannot resolve {}", state.display()))
}

/// `--print-config DIR`: writes `DIR/dnsmasq.conf` and `DIR/nginx.conf`, nothing else runs.
/// Everything is checked before DIR (or the state directory) is created.
pub fn print_config(o: &ServeOptions, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let state = print_state(o, dir)?;
    let r = resolve(o, &state)?;
    for d in [dir, state.as_path()] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    write_configs(&r, dir)
}

fn write_configs(r: &Resolved, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, text) in [
        ("dnsmasq.conf", r.dnsmasq.render()),
        ("nginx.conf", r.nginx.render()),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `diskless serve DEST`: dnsmasq and nginx in the foreground until SIGINT/SIGTERM or until
/// one of them stops; then both are stopped.
pub fn serve(o: &ServeOptions) -> anyhow::Result<()> {
    let temp;
    let state = match &o.state_dir {
        Some(s) => {
            std::fs::create_dir_all(s)
                .with_context(|| format!("cannot create the state directory {}", s.display()))?;
            s.canonicalize()?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("diskless-serve-")
                .tempdir()
                .context("cannot create a state directory")?;
            temp.path().to_owned()
        }
    };
    let r = resolve(o, &state)?;
    daemons::check_port_free(r.nginx.listen, r.nginx.port)?;
    if let Dhcp::Range { .. } = r.dnsmasq.dhcp {
        daemons::check_dhcp_free(&r.dnsmasq.interface)?;
    }
    let files = write_configs(&r, &state)?;
    daemons::run(&files[0], &files[1], &state, &r)
}
