//! A node's identity as Kubernetes and iPXE see it: hostname, MAC, labels, taints. One rule
//! each, checked by the inventory at publish time and by the init when it reads `node.json`
//! (and `diskless.hostname=`), so a value the kubelet would refuse at boot fails at publish.
//! Errors are sentences without the field name: callers prefix the field they checked.

/// The kubelet's own rule (`--node-labels` help of v1.36): labels in the kubernetes.io and
/// k8s.io namespaces are refused at startup unless under these prefixes or in this set.
const KUBELET_LABEL_PREFIXES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
const KUBELET_LABELS: &[&str] = &[
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
pub const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// An identity the kubelet (or iPXE) would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("{0:?} is not a valid node name (lowercase letters, digits, '-' and '.', at most 63)")]
    Hostname(String),
    #[error("{0:?} is not a MAC address like 52:54:00:12:34:56")]
    Mac(String),
    #[error("{0:?} is a broadcast or multicast address (the group bit of its first byte is set):              give the machine's own MAC, e.g. from `ip link` or the DHCP server's log")]
    GroupMac(String),
    #[error(
        "{0:?} is the all-zero address, which no network card has: give the machine's own MAC"
    )]
    ZeroMac(String),
    #[error(
        "the kubelet refuses to start with this label: in the kubernetes.io/k8s.io \
         namespaces it may only set {}/…, {}/… and {}; use e.g. \
         node.kubernetes.io/{name} or set the label with kubectl once the node has joined",
        KUBELET_LABEL_PREFIXES[0],
        KUBELET_LABEL_PREFIXES[1],
        KUBELET_LABELS.join(", ")
    )]
    KubeletLabel { name: String },
    #[error("prefix {prefix:?} is not a DNS subdomain (lowercase letters, digits, '-', '.'): {key:?} is not a label key")]
    LabelPrefix { prefix: String, key: String },
    #[error(
        "name {name:?} must be 1–63 of letters, digits, '-', '_', '.', starting and ending \
         alphanumeric: {key:?} is not a label key"
    )]
    LabelName { name: String, key: String },
    #[error("value {0:?} must be empty or 1–63 of letters, digits, '-', '_', '.', starting and ending alphanumeric")]
    LabelValue(String),
    #[error("expected key=value:Effect or key:Effect")]
    TaintForm,
    #[error("effect {0:?} is not one of {effects}", effects = TAINT_EFFECTS.join(", "))]
    TaintEffect(String),
    /// `why` is one of the others, about a part of the taint.
    #[error("{taint:?}: {why}")]
    Taint {
        taint: String,
        why: Box<IdentityError>,
    },
    #[error("api_server {url:?} {why}; write it as https://<host>:6443")]
    ApiServer { url: String, why: &'static str },
}

/// For callers whose own errors are still sentences.
impl From<IdentityError> for String {
    fn from(e: IdentityError) -> String {
        e.to_string()
    }
}

/// A node name: an RFC 1123 subdomain of lowercase labels, at most 63 characters in all (the
/// kernel's hostname holds 64 bytes with its NUL).
pub fn hostname(h: &str) -> Result<(), IdentityError> {
    if h.len() <= 63 && h.split('.').all(dns_label) {
        Ok(())
    } else {
        Err(IdentityError::Hostname(h.to_owned()))
    }
}

/// One DNS label: 1–63 of `[a-z0-9-]`, not starting or ending with '-'.
fn dns_label(l: &str) -> bool {
    (1..=63).contains(&l.len())
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `52:54:00:AB:cd:ef` or `52-54-00-ab-cd-ef` → `52-54-00-ab-cd-ef`, the form of iPXE's
/// `${mac:hexhyp}`, which names the host entry.
pub fn mac(m: &str) -> Result<String, IdentityError> {
    let parts: Vec<&str> = m.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(IdentityError::Mac(m.to_owned()));
    }
    let first = u8::from_str_radix(parts[0], 16).expect("two hex digits");
    // No network card has a group address (broadcast ff:ff:…, multicast 01:00:5e:…, 33:33:…)
    // or all zeros: an entry for one would never be fetched, or shadow a typo.
    if first & 1 == 1 {
        return Err(IdentityError::GroupMac(m.to_owned()));
    }
    if parts.iter().all(|p| *p == "00") {
        return Err(IdentityError::ZeroMac(m.to_owned()));
    }
    Ok(parts.join("-").to_ascii_lowercase())
}

/// A label the kubelet accepts in `--node-labels`: `[prefix/]name` and an empty or name-shaped
/// value, and in the kubernetes.io/k8s.io namespaces only what the kubelet may set on itself.
pub fn label(key: &str, value: &str) -> Result<(), IdentityError> {
    let name = label_key(key)?;
    label_value(value)?;
    if !kubelet_may_set(key) {
        return Err(IdentityError::KubeletLabel {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// A taint as `--register-with-taints` takes it: `key[=value]:Effect`.
pub fn taint(t: &str) -> Result<(), IdentityError> {
    taint_parts(t).map(|_| ())
}

/// A checked taint's `(key, value, effect)`; the value is empty for `key:Effect`.
pub fn taint_parts(t: &str) -> Result<(&str, &str, &str), IdentityError> {
    let check = || {
        let (kv, effect) = t.rsplit_once(':').ok_or(IdentityError::TaintForm)?;
        if !TAINT_EFFECTS.contains(&effect) {
            return Err(IdentityError::TaintEffect(effect.to_owned()));
        }
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        label_key(k)?;
        label_value(v)?;
        Ok((k, v, effect))
    };
    check().map_err(|why| IdentityError::Taint {
        taint: t.to_owned(),
        why: Box::new(why),
    })
}

/// `[prefix/]name`; returns the name. Also keeps ',' and '=' out, which would split the
/// kubelet's `--node-labels` flag elsewhere.
fn label_key(key: &str) -> Result<&str, IdentityError> {
    let (prefix, name) = key
        .split_once('/')
        .map_or((None, key), |(p, n)| (Some(p), n));
    if let Some(p) = prefix {
        if p.len() > 253 || !p.split('.').all(dns_label) {
            return Err(IdentityError::LabelPrefix {
                prefix: p.to_owned(),
                key: key.to_owned(),
            });
        }
    }
    if !label_name(name) {
        return Err(IdentityError::LabelName {
            name: name.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(name)
}

fn label_value(v: &str) -> Result<(), IdentityError> {
    if v.is_empty() || label_name(v) {
        Ok(())
    } else {
        Err(IdentityError::LabelValue(v.to_owned()))
    }
}

/// Kubernetes' label-name syntax: 1–63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
fn label_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

fn kubelet_may_set(key: &str) -> bool {
    let Some((ns, _)) = key.split_once('/') else {
        return true;
    };
    let in_ns = |suffix: &str| ns == suffix || ns.ends_with(&format!(".{suffix}"));
    if !in_ns("kubernetes.io") && !in_ns("k8s.io") {
        return true;
    }
    KUBELET_LABEL_PREFIXES.iter().any(|p| in_ns(p)) || KUBELET_LABELS.contains(&key)
}

/// The API server a node joins, as it goes into the bootstrap kubeconfig: `https://` and a
/// host (DNS name, IPv4, or `[IPv6]`) with an optional port 1-65535 and path; no user info,
/// query, fragment, whitespace or control characters.
pub fn api_server(url: &str) -> Result<(), IdentityError> {
    let bad = |why: &'static str| {
        Err(IdentityError::ApiServer {
            url: url.to_owned(),
            why,
        })
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return bad("is not an https:// URL");
    };
    if url.chars().any(|c| !c.is_ascii_graphic()) || rest.contains(['@', '?', '#']) {
        return bad("has whitespace, control characters, user info, a query or a fragment");
    }
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, tail)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                (ip, tail.strip_prefix(':'))
            }
            _ => return bad("has a malformed [IPv6] host"),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty()
        || (!authority.starts_with('[')
            && !host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }))
    {
        return bad("has no valid host");
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => bad("has a port outside 1-65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_servers() {
        for ok in [
            "https://10.0.2.100:6443",
            "https://api.lab",
            "https://[fd00::1]:6443/base",
        ] {
            api_server(ok).unwrap();
        }
        for bad in [
            "http://10.0.0.1:6443",
            "not a url",
            "https://10.0.0.1:6443\nserver: evil",
            "https://user@host:6443",
            "https://host:0",
            "https://host:70000",
            "https://",
            "https://ho st",
            "https://[zz]:6443",
        ] {
            assert!(api_server(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["s2", "node-7", "a.lab", &"a".repeat(63)] {
            hostname(ok).unwrap();
        }
        for bad in [
            "",
            "S2",
            "a_b",
            "-a",
            "a-",
            "a..b",
            &"a".repeat(64),
            "node 7",
        ] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs_normalize_to_ipxe_hexhyp() {
        assert_eq!(mac("52:54:00:AB:cd:0F").unwrap(), "52-54-00-ab-cd-0f");
        assert!(mac("52:54:00:ab:cd").is_err());
        assert!(mac("52:54:00:ab:cd:zz")
            .unwrap_err()
            .to_string()
            .contains("not a MAC"));
        for group in [
            "ff:ff:ff:ff:ff:ff",
            "FF-FF-FF-FF-FF-FF",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
            "01:80:c2:00:00:00",
            "53:54:00:12:34:56",
        ] {
            assert!(
                mac(group).unwrap_err().to_string().contains("multicast"),
                "{group}"
            );
        }
        assert!(mac("00:00:00:00:00:00")
            .unwrap_err()
            .to_string()
            .contains("all-zero"));
        // Locally administered unicast (QEMU's 52:54:00, 02:…) is fine.
        mac("02:00:00:00:00:01").unwrap();
    }

    #[test]
    fn kubelet_label_namespaces_follow_the_kubelet() {
        for ok in [
            "zone",
            "example.com/rack",
            "node.kubernetes.io/pool",
            "x.kubelet.kubernetes.io/a",
            "topology.kubernetes.io/zone",
        ] {
            assert!(kubelet_may_set(ok), "{ok}");
            label(ok, "v").unwrap();
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "foo.k8s.io/x",
        ] {
            assert!(!kubelet_may_set(refused), "{refused}");
            assert!(label(refused, "")
                .unwrap_err()
                .to_string()
                .contains("refuses"));
        }
    }

    #[test]
    fn label_syntax() {
        assert!(label("bad key", "x")
            .unwrap_err()
            .to_string()
            .starts_with("name \"bad key\""));
        assert!(label("Bad_Prefix/x", "")
            .unwrap_err()
            .to_string()
            .contains("not a label key"));
        assert!(label("zone", "a,b")
            .unwrap_err()
            .to_string()
            .starts_with("value \"a,b\""));
        label("zone", "").unwrap();
    }

    #[test]
    fn taints() {
        taint("dedicated=ci:NoSchedule").unwrap();
        taint("node-role.kubernetes.io/control-plane:NoSchedule").unwrap();
        for (bad, why) in [
            ("dedicated=ci:NoSchedul", "effect"),
            ("dedicated=ci", "expected key=value:Effect"),
            ("a b:NoSchedule", "not a label key"),
            ("k=a,b:NoExecute", "value"),
        ] {
            let e = taint(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("{bad:?}: ")) && e.contains(why),
                "{e}"
            );
        }
    }
}
