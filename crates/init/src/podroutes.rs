//! `/init pod-routes`: the joined node's way to the other nodes' pods, host-gw style. Every
//! [`INTERVAL`] it lists the Nodes as the node itself ([`crate::apiclient`]) and, for each
//! other node with a `spec.podCIDR` and an IPv4 `InternalIP`, keeps
//! `ip route replace <podCIDR> via <InternalIP>` (busybox `ip`); a node that left loses its
//! route. The next hop must be on this node's own L2 segment: the kernel refuses a gateway it
//! cannot reach directly, and the log then says so (a routed lab needs an overlay or routes on
//! its routers instead).
//!
//! The bridge CNI plugin's `ipMasq` masquerades everything a pod sends outside its own node's
//! range, other nodes' pods included, so the receiving pod would see the sending node's address.
//! The sync therefore keeps the nat chain [`CHAIN`], jumped to from the head of POSTROUTING
//! (before the plugin's per-pod rules; kube-proxy may put its own jump above it), that accepts
//! (ends NAT for) traffic to the other nodes' pod ranges — exactly the ranges it routes,
//! so no cluster CIDR has to be configured on the node. Packets kube-proxy marked for
//! masquerading (0x4000) return to POSTROUTING untouched, so its own rules still apply; the
//! plugin keeps masquerading traffic that leaves the cluster, standalone nodes included.
//!
//! Why a listing every few seconds and not a watch: a handful of Nodes served from the API
//! server's cache (`resourceVersion=0`) costs nothing, needs no chunked decoding or resume
//! logic, and a new node's pods cannot run before it is Ready, seconds after it registered.

use crate::apiclient::{ApiError, Client, CLIENT_PEM};
use crate::run::{run, RunError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// How often the Nodes are listed.
pub const INTERVAL: Duration = Duration::from_secs(3);
/// The nat chain that keeps pod-to-pod traffic between nodes unmasqueraded.
pub const CHAIN: &str = "DISKLESS-POD-ROUTES";
/// Written for `iptables-restore`, which reads a file.
const RULES_FILE: &str = "/run/diskless/pod-routes.rules";
/// kube-proxy's masquerade mark (`masqueradeBit: 14`).
const KUBE_PROXY_MASQ_MARK: &str = "0x4000/0x4000";

/// Why the sync did not (yet) bring the routes and rules up to date.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("waiting for {CLIENT_PEM} (the kubelet's bootstrap CSR)")]
    NoClientCert,
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the Node list: not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("{RULES_FILE}: {0}")]
    RulesFile(std::io::Error),
    #[error(transparent)]
    Run(#[from] RunError),
    /// What went wrong with some nodes' routes or the rules, each said once.
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
}

/// A node's `podCIDR` that is not an IPv4 range without host bits.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?}: {why}")]
pub struct CidrError {
    value: String,
    why: &'static str,
}

/// An IPv4 range, parsed: what goes into a route or a rule is printed from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub net: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Ipv4Cidr, CidrError> {
        let bad = |why| CidrError {
            value: s.to_owned(),
            why,
        };
        let (net, prefix) = s.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let net: Ipv4Addr = net.parse().map_err(|_| bad("not IPv4"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| bad("bad prefix"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(net) & !mask != 0 {
            return Err(bad("host bits set"));
        }
        Ok(Ipv4Cidr { net, prefix })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Pod range → next hop, for every other node.
pub type Routes = BTreeMap<Ipv4Cidr, Ipv4Addr>;

/// The routes a NodeList asks for, seen from node `me`; nodes without an IPv4 pod range or
/// InternalIP are left out (an IPv6 or not-yet-allocated node), malformed values named.
pub fn routes(list: &Value, me: &str) -> (Routes, Vec<String>) {
    let mut routes = Routes::new();
    let mut skipped = Vec::new();
    for n in list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let name = n["metadata"]["name"].as_str().unwrap_or("?");
        if name == me {
            continue;
        }
        let cidr = n["spec"]["podCIDR"].as_str().map(str::parse::<Ipv4Cidr>);
        let ip = n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
            .and_then(|x| x["address"].as_str())
            .map(str::parse::<Ipv4Addr>);
        match (cidr, ip) {
            (Some(Ok(c)), Some(Ok(ip))) => {
                routes.insert(c, ip);
            }
            (Some(Err(e)), _) => skipped.push(format!("node {name}: podCIDR {e}")),
            (_, Some(Err(e))) => skipped.push(format!("node {name}: InternalIP {e}")),
            _ => skipped.push(format!("node {name}: no podCIDR or InternalIP yet")),
        }
    }
    (routes, skipped)
}

/// The `iptables-restore --noflush` input that replaces [`CHAIN`]'s rules (declaring the
/// chain flushes it; the rest of the nat table stays).
pub fn masquerade_exemptions(routes: &Routes) -> String {
    let mut s = format!("*nat\n:{CHAIN} - [0:0]\n");
    s.push_str(&format!(
        "-A {CHAIN} -m mark --mark {KUBE_PROXY_MASQ_MARK} -j RETURN\n"
    ));
    for cidr in routes.keys() {
        s.push_str(&format!("-A {CHAIN} -d {cidr} -j ACCEPT\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// Runs for ever (a supervised service): list, apply, sleep. Says each change once.
pub fn main() -> i32 {
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut installed = Routes::new();
    let mut rules: Option<String> = None;
    let mut last_problem = String::new();
    println!("syncing routes to the other nodes' pod ranges as node {me}");
    loop {
        let problem = match sync_once(&me, &mut installed, &mut rules) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        };
        if problem != last_problem && !problem.is_empty() {
            println!("{problem}");
        }
        last_problem = problem;
        std::thread::sleep(INTERVAL);
    }
}

fn sync_once(
    me: &str,
    installed: &mut Routes,
    rules: &mut Option<String>,
) -> Result<(), SyncError> {
    if !std::path::Path::new(CLIENT_PEM).exists() {
        return Err(SyncError::NoClientCert);
    }
    let client = Client::from_node()?;
    let body = client.get("/api/v1/nodes?resourceVersion=0")?;
    let list: Value = serde_json::from_slice(&body).map_err(SyncError::NotJson)?;
    let (wanted, skipped) = routes(&list, me);
    let mut problems = skipped;
    for (cidr, via) in &wanted {
        if installed.get(cidr) == Some(via) {
            continue;
        }
        let (c, v) = (cidr.to_string(), via.to_string());
        match run(&["ip", "route", "replace", &c, "via", &v], None) {
            Ok(_) => {
                println!("route {c} via {v}");
                installed.insert(*cidr, *via);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let gone: Vec<Ipv4Cidr> = installed
        .keys()
        .filter(|c| !wanted.contains_key(c))
        .copied()
        .collect();
    for cidr in gone {
        let c = cidr.to_string();
        match run(&["ip", "route", "del", &c], None) {
            Ok(_) => println!("route {c} removed (its node left)"),
            Err(e) => problems.push(e.to_string()),
        }
        installed.remove(&cidr);
    }
    let text = masquerade_exemptions(installed);
    if rules.as_deref() != Some(text.as_str()) {
        match apply_rules(&text) {
            Ok(()) => {
                println!("{CHAIN}: {} pod ranges not masqueraded", installed.len());
                *rules = Some(text);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Problems(problems))
    }
}

/// The chain's rules, then the jump to it at the head of nat POSTROUTING unless it is there.
fn apply_rules(text: &str) -> Result<(), SyncError> {
    let _ = std::fs::create_dir_all("/run/diskless");
    std::fs::write(RULES_FILE, text).map_err(SyncError::RulesFile)?;
    run(
        &["iptables-restore", "-w", "5", "--noflush", RULES_FILE],
        None,
    )?;
    let rule = |op: &'static str| {
        let mut argv = vec!["iptables", "-w", "5", "-t", "nat", op, "POSTROUTING"];
        if op == "-I" {
            argv.push("1");
        }
        argv.extend(["-j", CHAIN]);
        argv
    };
    if run(&rule("-C"), None).is_err() {
        run(&rule("-I"), None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Value {
        let addresses: Vec<Value> = ip
            .map(|ip| {
                vec![
                    json!({"type": "InternalIP", "address": ip}),
                    json!({"type": "Hostname", "address": name}),
                ]
            })
            .unwrap_or_default();
        json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr}, "status": {"addresses": addresses}})
    }

    #[test]
    fn other_nodes_only_and_malformed_values_named() {
        let list = json!({"items": [
            node("w1", Some("10.244.0.0/24"), Some("10.33.0.101")),
            node("w2", Some("10.244.1.0/24"), Some("10.33.0.102")),
            node("w3", None, Some("10.33.0.103")),
            node("w4", Some("10.244.3.1/24"), Some("10.33.0.104")),
            node("w5", Some("fd00::/64"), Some("10.33.0.105")),
        ]});
        let (r, skipped) = routes(&list, "w1");
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.get(&"10.244.1.0/24".parse().unwrap()),
            Some(&"10.33.0.102".parse().unwrap())
        );
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[1].contains("host bits"), "{skipped:?}");
        assert!(skipped[2].contains("not IPv4"), "{skipped:?}");
    }

    #[test]
    fn exemptions_cover_exactly_the_routed_ranges() {
        let mut r = Routes::new();
        r.insert(
            "10.244.1.0/24".parse().unwrap(),
            "10.33.0.102".parse().unwrap(),
        );
        let t = masquerade_exemptions(&r);
        assert_eq!(
            t,
            "*nat\n:DISKLESS-POD-ROUTES - [0:0]\n\
             -A DISKLESS-POD-ROUTES -m mark --mark 0x4000/0x4000 -j RETURN\n\
             -A DISKLESS-POD-ROUTES -d 10.244.1.0/24 -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!("0.0.0.0/0".parse::<Ipv4Cidr>().unwrap().prefix, 0);
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
    }
}
