//! The cluster settings a node's kubelet gets from the inventory: its pod range, the cluster
//! DNS servers and the cluster domain. One rule each, checked by the inventory at publish time
//! and by the init when it reads `node.json`, so a value the kubelet would refuse fails at
//! publish. Errors are sentences without the field name: callers prefix the field.

use std::net::IpAddr;

/// A cluster setting the kubelet would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{value:?} is not a pod range like 10.244.3.0/24: {why}")]
    PodCidr { value: String, why: String },
    #[error("{0:?} is not an IP address (the cluster DNS Service's, e.g. 10.96.0.10)")]
    DnsServer(String),
    #[error(
        "{0:?} is not a cluster domain like cluster.local (lowercase DNS labels joined by '.')"
    )]
    Domain(String),
}

/// For callers whose own errors are still sentences.
impl From<ClusterError> for String {
    fn from(e: ClusterError) -> String {
        e.to_string()
    }
}

/// A pod range as the kubelet's `podCIDR` takes it: `10.244.3.0/24` or `fd00:10:244:3::/64`,
/// with no host bits set (the kubelet and the bridge CNI's host-local IPAM refuse those).
pub fn pod_cidr(s: &str) -> Result<(), ClusterError> {
    let bad = |why: &str| {
        Err(ClusterError::PodCidr {
            value: s.to_owned(),
            why: why.to_owned(),
        })
    };
    let Some((addr, prefix)) = s.split_once('/') else {
        return bad("no /prefix");
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return bad("not an IP address before the '/'");
    };
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let Some(prefix) = prefix.parse::<u32>().ok().filter(|p| *p <= bits) else {
        return bad(&format!("the prefix must be 0–{bits}"));
    };
    let host_bits = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) & ((1u128 << (32 - prefix)) - 1),
        IpAddr::V6(a) => u128::from(a) & u128::MAX.checked_shr(prefix).unwrap_or(0),
    };
    if host_bits != 0 {
        return bad("host bits are set after the prefix");
    }
    Ok(())
}

/// A cluster DNS server (the kubelet's `clusterDNS`): an IP address, usually the DNS Service's
/// ClusterIP (`10.96.0.10`).
pub fn dns_server(s: &str) -> Result<(), ClusterError> {
    s.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| ClusterError::DnsServer(s.to_owned()))
}

/// The cluster domain (the kubelet's `clusterDomain`): a DNS subdomain of lowercase labels,
/// such as `cluster.local`.
pub fn domain(s: &str) -> Result<(), ClusterError> {
    let label = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if s.len() <= 253 && s.split('.').all(label) {
        Ok(())
    } else {
        Err(ClusterError::Domain(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ranges() {
        for ok in [
            "10.244.3.0/24",
            "10.88.0.0/16",
            "0.0.0.0/0",
            "fd00:10:244:3::/64",
        ] {
            assert_eq!(pod_cidr(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("10.244.3.1/24", "host bits"),
            ("10.244.3.0", "no /prefix"),
            ("10.244.3.0/33", "0–32"),
            ("10.244.3.0/-1", "0–32"),
            ("999.1.1.0/24", "not an IP"),
            ("fd00::1/64", "host bits"),
            ("10.244.3.0/24\n", "0–32"),
            ("", "no /prefix"),
        ] {
            let e = pod_cidr(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn dns_servers_and_domains() {
        assert!(dns_server("10.96.0.10").is_ok() && dns_server("fd00::a").is_ok());
        for bad in ["10.96.0", "dns", "10.96.0.10:53", ""] {
            assert!(dns_server(bad).is_err(), "{bad}");
        }
        assert!(domain("cluster.local").is_ok() && domain("lab-a.example").is_ok());
        for bad in [
            "Cluster.local",
            "cluster..local",
            "-a.local",
            "a b",
            "",
            "x\n",
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
    }
}
