//! Step 5: loopback, then one interface configured by DHCP or statically. Uses busybox `ip` and
//! `udhcpc` from the image; the init itself is udhcpc's script (`udhcpc -s /init` runs
//! `/init bound|renew|deconfig|…` with the lease in the environment), so the image needs no
//! extra script file. udhcpc stays in the background to renew the lease. Not fatal: a node
//! without network is still debuggable on its console.
//!
//! The step also names the node: the hostname given for this boot (resolved once by PID 1,
//! see `node::fixed_hostname`), else `<image>-<mac>`, which a DHCP-offered name replaces.

use crate::cmdline::Cmdline;
use crate::log;
use crate::run::{run, run_env, RunError};
use crate::sys::{self, SysError};
use diskless_contract::image::Network;
use std::time::{Duration, Instant};

/// Why the node has no (or not the wanted) network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(
        "interface {wanted} (from the image's network setting) does not exist; found: {found:?}"
    )]
    NoSuchInterface { wanted: String, found: Vec<String> },
    #[error("no network interface: is the NIC's driver among the image's modules (virtio_pci + virtio_net for QEMU)?")]
    NoInterface,
    #[error("no link on {0:?} after 5 s: is a cable plugged in?")]
    NoLink(Vec<String>),
    #[error("no DHCP lease on {iface}: {err}")]
    NoLease { iface: String, err: RunError },
}

/// Written after configuration, read by the check binary and people: `key=value` lines.
pub const STATE_FILE: &str = "/run/diskless/network";
/// The fixed hostname, in udhcpc's environment and so in its script's: the script is another
/// process and must not re-derive what PID 1 resolved; set, it keeps a lease's hostname out.
pub const FIXED_HOSTNAME_ENV: &str = "DISKLESS_HOSTNAME";

/// What the network step did.
pub struct Configured {
    /// The stage line's detail, or why the step failed.
    pub result: Result<String, NetworkError>,
    /// The node's hostname once the step ended (DHCP's script may have set it); `None` when the
    /// step stopped before naming the node.
    pub hostname: Option<String>,
}

/// `fixed_hostname` is the node's name given for this boot (command line, node.json); without
/// one the node is named `<image>-<mac>` until DHCP offers a name.
pub fn configure(
    network: &Network,
    cmdline: &Cmdline,
    image_name: &str,
    fixed_hostname: Option<&str>,
) -> Configured {
    let mut hostname = None;
    let result = configure_named(network, cmdline, image_name, fixed_hostname, &mut hostname);
    Configured { result, hostname }
}

fn configure_named(
    network: &Network,
    cmdline: &Cmdline,
    image_name: &str,
    fixed_hostname: Option<&str>,
    named: &mut Option<String>,
) -> Result<String, NetworkError> {
    run(&["ip", "link", "set", "lo", "up"], None)?;
    let wanted = match network {
        Network::None if cmdline.ip.is_none() => return Ok("loopback only".into()),
        Network::Dhcp { interface } | Network::Static { interface, .. } => interface.clone(),
        Network::None => None,
    };
    let iface = pick_interface(wanted.as_deref())?;
    let mac =
        std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).unwrap_or_default();
    // A stable default name for lab machines: the image name and the MAC, until DHCP gives a
    // better one.
    let hostname = fixed_hostname.map_or_else(
        || format!("{image_name}-{}", mac.trim().replace(':', "")),
        String::from,
    );
    crate::sys::sethostname(&hostname)?;
    *named = Some(hostname);

    let summary = if let Some(ip) = &cmdline.ip {
        set_static(&iface, &ip.address, ip.gateway.as_deref(), &[])?;
        format!("{iface} {} (static, command line)", ip.address)
    } else if let Network::Static {
        address,
        gateway,
        dns,
        ..
    } = network
    {
        set_static(&iface, address, gateway.as_deref(), dns)?;
        format!("{iface} {address} (static)")
    } else {
        dhcp(&iface, fixed_hostname)?
    };
    // The one place PID 1 learns a name DHCP's script gave the node.
    let hostname = current_hostname();
    *named = Some(hostname.clone());
    Ok(format!("{summary}, hostname {hostname}"))
}

fn current_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The named interface, or the first one (by name) that reports carrier within a few seconds.
fn pick_interface(wanted: Option<&str>) -> Result<String, NetworkError> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map_err(sys::io("read", "/sys/class/net"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    if let Some(w) = wanted {
        if !names.iter().any(|n| n == w) {
            return Err(NetworkError::NoSuchInterface {
                wanted: w.to_owned(),
                found: names,
            });
        }
        names = vec![w.to_string()];
    }
    if names.is_empty() {
        return Err(NetworkError::NoInterface);
    }
    for n in &names {
        run(&["ip", "link", "set", n, "up"], None)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for n in &names {
            let carrier = std::fs::read_to_string(format!("/sys/class/net/{n}/carrier"));
            if carrier.map(|c| c.trim() == "1").unwrap_or(false) {
                return Ok(n.clone());
            }
        }
        if Instant::now() > deadline {
            return Err(NetworkError::NoLink(names));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_static(
    iface: &str,
    address: &str,
    gateway: Option<&str>,
    dns: &[String],
) -> Result<(), NetworkError> {
    run(&["ip", "addr", "replace", address, "dev", iface], None)?;
    default_route(iface, gateway)?;
    write_resolv_conf(dns, None);
    write_state(iface, address, gateway.unwrap_or(""), "static");
    Ok(())
}

fn dhcp(iface: &str, fixed_hostname: Option<&str>) -> Result<String, NetworkError> {
    // -n: exit if no lease (the parent then reports); after a lease udhcpc forks into the
    // background and keeps renewing. -t/-T: 5 discovers, 1 s apart (slirp answers in ≈ 0.3 s).
    let env: Vec<(&str, &str)> = fixed_hostname
        .map(|h| (FIXED_HOSTNAME_ENV, h))
        .into_iter()
        .collect();
    run_env(
        &[
            "udhcpc", "-i", iface, "-s", "/init", "-t", "5", "-T", "1", "-n",
        ],
        &env,
        None,
    )
    .map_err(|err| NetworkError::NoLease {
        iface: iface.to_owned(),
        err,
    })?;
    let state = std::fs::read_to_string(STATE_FILE).unwrap_or_default();
    let get = |k: &str| {
        state
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    let router = get("router");
    Ok(format!(
        "{iface} {} (dhcp{})",
        get("address"),
        if router.is_empty() {
            ", no router offered: default route on the link".to_string()
        } else {
            format!(", router {router}")
        }
    ))
}

/// Without a gateway (an isolated lab, slirp with `restrict=on`) the default route goes on the
/// link itself: programs that find the node's address through the default route (kubelet:
/// "no default routes" otherwise) work, and nothing becomes reachable that was not.
fn default_route(iface: &str, gateway: Option<&str>) -> Result<(), RunError> {
    match gateway {
        Some(gw) => run(
            &["ip", "route", "replace", "default", "via", gw, "dev", iface],
            None,
        ),
        None => run(&["ip", "route", "replace", "default", "dev", iface], None),
    }
    .map(drop)
}

fn write_resolv_conf(dns: &[String], domain: Option<&str>) {
    if dns.is_empty() && domain.is_none() {
        return;
    }
    let mut text = String::new();
    if let Some(d) = domain {
        text.push_str(&format!("search {d}\n"));
    }
    for s in dns {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if let Err(e) = std::fs::write("/etc/resolv.conf", text) {
        log::warn(&format!("cannot write /etc/resolv.conf: {e}"));
    }
}

fn write_state(iface: &str, address: &str, router: &str, source: &str) {
    let _ = std::fs::create_dir_all("/run/diskless");
    let text = format!("interface={iface}\naddress={address}\nrouter={router}\nsource={source}\n");
    let _ = std::fs::write(STATE_FILE, text);
}

/// `/init <event>` as udhcpc's script: applies the lease in the environment. Returns the exit
/// code for udhcpc.
pub fn dhcp_event(event: &str) -> i32 {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let iface = env("interface");
    let result = match event {
        "deconfig" => run(&["ip", "addr", "flush", "dev", &iface], None)
            .and_then(|_| run(&["ip", "link", "set", &iface, "up"], None))
            .map(|_| ())
            .map_err(NetworkError::from),
        "bound" | "renew" => apply_lease(&iface, &env),
        // leasefail / nak / unknown: udhcpc retries by itself.
        _ => Ok(()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("diskless: dhcp {event} on {iface}: {e}");
            1
        }
    }
}

fn apply_lease(iface: &str, env: &dyn Fn(&str) -> String) -> Result<(), NetworkError> {
    let ip = env("ip");
    let mask = env("mask");
    let prefix = if mask.is_empty() {
        "24".to_string()
    } else {
        mask
    };
    let address = format!("{ip}/{prefix}");
    run(&["ip", "addr", "replace", &address, "dev", iface], None)?;
    // slirp with restrict=on offers neither router nor DNS: both are optional.
    let router = env("router")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    default_route(iface, (!router.is_empty()).then_some(router.as_str()))?;
    let dns: Vec<String> = env("dns").split_whitespace().map(Into::into).collect();
    let domain = env("domain");
    write_resolv_conf(&dns, (!domain.is_empty()).then_some(domain.as_str()));
    // A name given for this boot (command line, node.json) wins over the lease's.
    let hostname = env("hostname");
    let fixed = !env(FIXED_HOSTNAME_ENV).is_empty();
    if !hostname.is_empty() && !fixed {
        crate::sys::sethostname(&hostname)?;
    }
    write_state(iface, &address, &router, "dhcp");
    Ok(())
}
