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

pub use daemons::DaemonError;
use dnsmasq::{Dhcp, DnsmasqConf};
pub use iface::IfaceError;
use nginx::NginxConf;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use word::{Cidr, ConfPath, Interface, Port, Word, WordError};

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

/// What keeps `serve` from starting, named by option and with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("boot-server directory {} cannot be read: {cause}", path.display())]
    Dest {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} has no boot.ipxe: give the directory `diskless publish --to` wrote", dest.display())]
    NoBootIpxe { dest: PathBuf },
    /// A value no config file may hold; `what` is the option.
    #[error("{what}: {cause}")]
    Word {
        what: &'static str,
        cause: WordError,
    },
    #[error(transparent)]
    Iface(#[from] IfaceError),
    #[error("interface {interface} has no IPv4 address: give --address ADDR/PREFIX")]
    NoAddress { interface: String },
    #[error("give either --dhcp-range or --proxy-dhcp, not both")]
    BothDhcp,
    #[error("give --dhcp-range FIRST-LAST (this server leases addresses) or --proxy-dhcp (an existing DHCP server does)")]
    NoDhcp,
    #[error(
        "--dhcp-range: {addr} is not a host address of {interface}'s network {network}/{prefix}"
    )]
    OutsideNetwork {
        addr: Ipv4Addr,
        interface: String,
        network: Ipv4Addr,
        prefix: u8,
    },
    #[error("--dhcp-range: {start} comes after {end}")]
    RangeOrder { start: Ipv4Addr, end: Ipv4Addr },
    #[error("--dhcp-range {start}-{end} holds this server's own address {addr}")]
    RangeHoldsServer {
        start: Ipv4Addr,
        end: Ipv4Addr,
        addr: Ipv4Addr,
    },
    /// No iPXE binaries to hand out: Debian's ipxe package is missing (unless `--tftp-root`
    /// names the wrong directory).
    #[error("{} has no {binary}: install Debian's ipxe package (apt-get install ipxe) or give --tftp-root DIR holding undionly.kpxe and ipxe.efi", dir.display())]
    NoIpxe {
        dir: PathBuf,
        binary: &'static str,
        /// Whether the directory is the default one (then the package is what is missing).
        default: bool,
    },
    /// Any other I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

impl ServeError {
    /// Whether this machine lacks a program or package serve needs (dnsmasq, nginx, ip,
    /// Debian's iPXE binaries), rather than an option being wrong.
    pub fn is_environment(&self) -> bool {
        match self {
            ServeError::Daemon(e) => e.is_environment(),
            ServeError::Iface(IfaceError::NoIp(_)) => true,
            ServeError::NoIpxe { default, .. } => *default,
            _ => false,
        }
    }
}

/// For `map_err`: an I/O error while doing `context`.
fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let context = context.into();
    move |cause| ServeError::Io { context, cause }
}

/// For `map_err`: a value of option `what` that no config file may hold.
fn word(what: &'static str) -> impl FnOnce(WordError) -> ServeError {
    move |cause| ServeError::Word { what, cause }
}

/// The checked configuration: what both files are written from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub dnsmasq: DnsmasqConf,
    pub nginx: NginxConf,
}

/// Checks everything a daemon would otherwise trip over later, and names what to fix.
pub fn resolve(o: &ServeOptions, state: &Path) -> Result<Resolved, ServeError> {
    let dest = o.dest.canonicalize().map_err(|cause| ServeError::Dest {
        path: o.dest.clone(),
        cause,
    })?;
    if !dest.join("boot.ipxe").is_file() {
        return Err(ServeError::NoBootIpxe { dest });
    }
    let root = ConfPath::new(&dest).map_err(word("the boot-server directory"))?;
    let interface = Interface::new(&o.interface).map_err(word("--interface"))?;
    let cidr = match &o.address {
        Some(a) => Cidr::parse(a).map_err(word("--address"))?,
        None => iface::ipv4(interface.as_str())?.ok_or_else(|| ServeError::NoAddress {
            interface: interface.as_str().to_string(),
        })?,
    };
    let dhcp = match (o.dhcp_range, o.proxy) {
        (Some(_), true) => return Err(ServeError::BothDhcp),
        (None, false) => return Err(ServeError::NoDhcp),
        (Some((start, end)), false) => {
            for addr in [start, end] {
                if !cidr.holds_host(addr) {
                    return Err(ServeError::OutsideNetwork {
                        addr,
                        interface: interface.as_str().to_string(),
                        network: cidr.network(),
                        prefix: cidr.prefix,
                    });
                }
            }
            if u32::from(start) > u32::from(end) {
                return Err(ServeError::RangeOrder { start, end });
            }
            if (u32::from(start)..=u32::from(end)).contains(&u32::from(cidr.addr)) {
                return Err(ServeError::RangeHoldsServer {
                    start,
                    end,
                    addr: cidr.addr,
                });
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
            return Err(ServeError::NoIpxe {
                dir: tftp,
                binary,
                default: o.tftp_root.is_none(),
            });
        }
    }
    let tftp_root = ConfPath::new(&tftp).map_err(word("--tftp-root"))?;
    let state = ConfPath::new(state).map_err(word("--state-dir"))?;
    let port = Port::new(o.http_port).map_err(word("--http-port"))?;
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
fn print_state(o: &ServeOptions, dir: &Path) -> Result<PathBuf, ServeError> {
    let state = match &o.state_dir {
        Some(s) => s.clone(),
        None => dir.join("state"),
    };
    std::path::absolute(&state).map_err(io(format!("cannot resolve {}", state.display())))
}

/// `--print-config DIR`: writes `DIR/dnsmasq.conf` and `DIR/nginx.conf`, nothing else runs.
/// Everything is checked before DIR (or the state directory) is created.
pub fn print_config(o: &ServeOptions, dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
    let state = print_state(o, dir)?;
    let r = resolve(o, &state)?;
    for d in [dir, state.as_path()] {
        std::fs::create_dir_all(d).map_err(io(format!("cannot create {}", d.display())))?;
    }
    write_configs(&r, dir)
}

fn write_configs(r: &Resolved, dir: &Path) -> Result<Vec<PathBuf>, ServeError> {
    let mut written = Vec::new();
    for (name, text) in [
        ("dnsmasq.conf", r.dnsmasq.render()),
        ("nginx.conf", r.nginx.render()),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).map_err(io(format!("cannot write {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io(format!("cannot write {}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// `diskless serve DEST`: dnsmasq and nginx in the foreground until SIGINT/SIGTERM or until
/// one of them stops; then both are stopped.
pub fn serve(o: &ServeOptions) -> Result<(), ServeError> {
    let temp;
    let state = match &o.state_dir {
        Some(s) => {
            let cannot = || io(format!("cannot create the state directory {}", s.display()));
            std::fs::create_dir_all(s).map_err(cannot())?;
            s.canonicalize().map_err(cannot())?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("diskless-serve-")
                .tempdir()
                .map_err(io("cannot create a state directory"))?;
            temp.path().to_owned()
        }
    };
    let r = resolve(o, &state)?;
    daemons::check_port_free(r.nginx.listen, r.nginx.port)?;
    if let Dhcp::Range { .. } = r.dnsmasq.dhcp {
        daemons::check_dhcp_free(&r.dnsmasq.interface)?;
    }
    let files = write_configs(&r, &state)?;
    Ok(daemons::run(
        &files[0], &files[1], &state, &r.dnsmasq, &r.nginx,
    )?)
}
