//! The kubelet's per-node settings as a configuration drop-in (`--config-dir`), not flags.
//!
//! The kubelet deprecates every command-line flag that has a configuration field (its log says
//! so at each start), and the image's own configuration file is shared by every machine. A
//! drop-in file carries what differs per node: its pod range, the cluster DNS, its taints, and
//! when the node's kubelet mode differs from the image's, the authentication that goes with
//! it. The kubelet merges `*.conf` files of the directory over its `--config` file, in name
//! order. Serialized from this type (JSON is YAML), never assembled as text.

use diskless_contract::identity;
use diskless_contract::node::{NodeConfig, STANDALONE_POD_CIDR};
use serde::Serialize;

/// The directory the init adds as `--config-dir` when the image's kubelet has none.
pub const CONFIG_DIR: &str = "/etc/kubernetes/kubelet.conf.d";
/// The init's drop-in inside it: after an image's own `0x-`/`1x-` files, before an admin's `9x-`.
pub const FILE_NAME: &str = "50-diskless-node.conf";
/// An empty directory: a standalone image's static pods (its demo workload) do not run on a
/// node that joined a cluster, whose workload comes from the API.
pub const NO_STATIC_PODS: &str = "/run/diskless/no-static-pods";

/// A `KubeletConfiguration` fragment: only the fields set here override the image's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DropIn {
    api_version: &'static str,
    kind: &'static str,
    #[serde(rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "clusterDNS", skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub register_with_taints: Vec<Taint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_pod_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<bool>,
}

/// A `v1.Taint` (`registerWithTaints`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Taint {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authentication {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<Enabled>,
    pub webhook: Enabled,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct X509 {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authorization {
    pub mode: &'static str,
}

impl Taint {
    /// `key[=value]:Effect`, split by the rule node.json's parser checked it with
    /// (`identity::taint_parts`).
    pub fn parse(t: &str) -> Result<Taint, identity::IdentityError> {
        let (key, value, effect) = identity::taint_parts(t)?;
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        })
    }
}

impl DropIn {
    /// What every node gets: its taints, and the pod range and cluster DNS the inventory gave.
    /// A standalone node without an assigned range takes [`STANDALONE_POD_CIDR`]; a joined one
    /// then takes the range the controller-manager allocates to its Node.
    pub fn for_node(node: Option<&NodeConfig>, standalone: bool) -> DropIn {
        let pod_cidr = node
            .and_then(|n| n.pod_cidr.clone())
            .or_else(|| standalone.then(|| STANDALONE_POD_CIDR.to_string()));
        DropIn {
            api_version: "kubelet.config.k8s.io/v1beta1",
            kind: "KubeletConfiguration",
            pod_cidr,
            cluster_dns: node.map(|n| n.cluster_dns.clone()).unwrap_or_default(),
            cluster_domain: node.and_then(|n| n.cluster_domain.clone()),
            // Checked when node.json was parsed (`NodeConfig::check`), so none is dropped here.
            register_with_taints: node
                .map(|n| {
                    n.taints
                        .iter()
                        .filter_map(|t| Taint::parse(t).ok())
                        .collect()
                })
                .unwrap_or_default(),
            static_pod_path: None,
            authentication: None,
            authorization: None,
            rotate_certificates: None,
        }
    }

    /// The file's bytes: pretty JSON, newline-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec_pretty(self).expect("a DropIn always serializes");
        b.push(b'\n');
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_kubelets() {
        let node = NodeConfig {
            hostname: "s2".into(),
            mac: "52-54-00-aa-bb-01".into(),
            labels: Default::default(),
            taints: vec!["dedicated=ci:NoSchedule".into(), "gpu:NoExecute".into()],
            kubelet_mode: diskless_contract::node::KubeletMode::Join,
            pod_cidr: Some("10.244.7.0/24".into()),
            cluster_dns: vec!["10.96.0.10".into()],
            cluster_domain: Some("cluster.local".into()),
            control_plane: None,
        };
        let mut d = DropIn::for_node(Some(&node), false);
        d.authentication = Some(Authentication {
            anonymous: Some(Enabled { enabled: false }),
            webhook: Enabled { enabled: true },
            x509: Some(X509 {
                client_ca_file: "/ca.crt".into(),
            }),
        });
        let v: serde_json::Value = serde_json::from_slice(&d.to_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "podCIDR": "10.244.7.0/24",
                "clusterDNS": ["10.96.0.10"],
                "clusterDomain": "cluster.local",
                "registerWithTaints": [
                    { "key": "dedicated", "value": "ci", "effect": "NoSchedule" },
                    { "key": "gpu", "effect": "NoExecute" }
                ],
                "authentication": {
                    "anonymous": { "enabled": false },
                    "webhook": { "enabled": true },
                    "x509": { "clientCAFile": "/ca.crt" }
                }
            })
        );
    }

    #[test]
    fn standalone_nodes_get_the_standalone_range_unless_given_one() {
        assert_eq!(
            DropIn::for_node(None, true).pod_cidr.as_deref(),
            Some(STANDALONE_POD_CIDR)
        );
        assert_eq!(DropIn::for_node(None, false).pod_cidr, None);
    }
}
