//! The IPv4 address of a network interface, from `ip -j` (iproute2), which says it exactly.

use crate::word::{Cidr, WordError};

#[derive(Debug, thiserror::Error)]
pub enum IfaceError {
    /// iproute2 is missing: an environment problem.
    #[error("cannot run `ip` (apt-get install iproute2): {0}")]
    NoIp(std::io::Error),
    #[error(
        "interface {name} not found ({stderr}): give an interface of this machine (`ip link`), \
         or --address with --print-config"
    )]
    NotFound { name: String, stderr: String },
    #[error("cannot read `ip -j addr` output: {0}")]
    Output(serde_json::Error),
    #[error("`ip -j addr` printed an address that is not IPv4: {0}")]
    NotIpv4(WordError),
}

/// The interface's first IPv4 address with its prefix; `None` if it has none.
pub fn ipv4(name: &str) -> Result<Option<Cidr>, IfaceError> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", name])
        .output()
        .map_err(IfaceError::NoIp)?;
    if !out.status.success() {
        return Err(IfaceError::NotFound {
            name: name.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let links: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(IfaceError::Output)?;
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
            .map_err(IfaceError::NotIpv4)?,
        ),
        None => None,
    })
}
