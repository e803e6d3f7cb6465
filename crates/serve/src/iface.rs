//! The IPv4 address of a network interface, from `ip -j` (iproute2), which says it exactly.

use crate::word::Cidr;
use anyhow::Context;

/// The interface's first IPv4 address with its prefix; `None` if it has none.
pub fn ipv4(name: &str) -> anyhow::Result<Option<Cidr>> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", name])
        .output()
        .context("cannot run `ip` (apt-get install iproute2)")?;
    if !out.status.success() {
        anyhow::bail!(
            "interface {name} not found ({}): give an interface of this machine (`ip link`), or --address with --print-config",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cannot read `ip -j addr` output")?;
    let first = links
        .get(0)
        .and_then(|l| l["addr_info"].as_array())
        .and_then(|a| a.first());
    Ok(match first {
        Some(a) => Some(
            Cidr::parse(&format!(
                "{}/{}",
                a["local"].as_str().unwrap_or(""),
                a["prefixlen"]
            ))
            .context("`ip -j addr` printed an address that is not IPv4")?,
        ),
        None => None,
    })
}
