//! One machine's configuration, `/.diskless/node/node.json`, in the node's own last segment:
//! written by `diskless publish` from the inventory and read by the init, both through
//! [`NodeConfig`]. The image is shared by many machines; what differs between them is here.
//!
//! Parsing is strict (unknown fields, a bad hostname, label or taint are errors naming the
//! field): a kubelet started with half a configuration registers a wrong node, which is worse
//! than none.

use crate::controlplane::ControlPlaneNode;
use crate::{cluster, identity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const NODE_JSON: &str = "/.diskless/node/node.json";
/// Join material written by `diskless publish` (where the Nix kubelet module looks for it).
pub const BOOTSTRAP_KUBECONFIG: &str = "/.diskless/node/kubelet/bootstrap-kubeconfig";
pub const CLIENT_CA: &str = "/.diskless/node/kubelet/ca.crt";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeletMode {
    /// Static pods only, no API server.
    #[default]
    Standalone,
    /// Registers with a cluster through the bootstrap kubeconfig.
    Join,
}

impl KubeletMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeletMode::Standalone => "standalone",
            KubeletMode::Join => "join",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's one identity: its hostname and Kubernetes node name.
    pub hostname: String,
    /// Normalized, `52-54-00-12-34-56`.
    pub mac: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` or `key:Effect`, in the inventory's order.
    #[serde(default)]
    pub taints: Vec<String>,
    pub kubelet_mode: KubeletMode,
    /// This node's pod range (`10.244.3.0/24`) when the inventory assigns one. Without it a
    /// joined node takes the range the controller-manager allocates (`--allocate-node-cidrs`)
    /// and a standalone one [`STANDALONE_POD_CIDR`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// The cluster DNS servers pods resolve through (the kubelet's `clusterDNS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// The cluster domain (the kubelet's `clusterDomain`, e.g. `cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    /// Present on a control-plane host (inventory `role = "control-plane"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlaneNode>,
}

/// Why `node.json` cannot be used; every message starts with [`NODE_JSON`] and names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// Not JSON, or not the shape of [`NodeConfig`]; `field` is `None` when the error is
    /// about the document itself (a missing field, bad JSON).
    #[error("{NODE_JSON}: {}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Parse {
        field: Option<String>,
        message: String,
    },
    /// A value the kubelet would refuse, by the rules of [`identity`] and [`cluster`].
    #[error("{NODE_JSON}: {field}: {why}")]
    Invalid { field: String, why: String },
}

/// The pod range of a standalone node: its pods talk to each other and, masqueraded, out.
pub const STANDALONE_POD_CIDR: &str = "10.88.0.0/16";

impl NodeConfig {
    /// Parses and checks `node.json`; errors start with [`NODE_JSON`] and name the field.
    pub fn parse(text: &str) -> Result<NodeConfig, NodeError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let node: NodeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            // "." or "?" when the error is about the document itself (a missing field, bad JSON).
            let field = match path.as_str() {
                "." | "?" => None,
                p => Some(p.to_owned()),
            };
            NodeError::Parse {
                field,
                message: e.inner().to_string(),
            }
        })?;
        node.check()
            .map_err(|(field, why)| NodeError::Invalid { field, why })?;
        Ok(node)
    }

    /// Every field by the rules of [`identity`]: `Err((field, why))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        identity::hostname(&self.hostname).map_err(|why| ("hostname".to_string(), why.into()))?;
        identity::mac(&self.mac).map_err(|why| ("mac".to_string(), why.into()))?;
        for (k, v) in &self.labels {
            identity::label(k, v).map_err(|why| (format!("labels.{k:?}"), why.into()))?;
        }
        for (i, t) in self.taints.iter().enumerate() {
            identity::taint(t).map_err(|why| (format!("taints[{i}]"), why.into()))?;
        }
        if let Some(c) = &self.pod_cidr {
            cluster::pod_cidr(c).map_err(|why| ("pod_cidr".to_string(), why.into()))?;
        }
        for (i, d) in self.cluster_dns.iter().enumerate() {
            cluster::dns_server(d).map_err(|why| (format!("cluster_dns[{i}]"), why.into()))?;
        }
        if let Some(d) = &self.cluster_domain {
            cluster::domain(d).map_err(|why| ("cluster_domain".to_string(), why.into()))?;
        }
        if let Some(c) = &self.control_plane {
            c.check()?;
        }
        Ok(())
    }

    /// The bytes publish writes (pretty JSON, newline-terminated).
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a NodeConfig always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// `hostname=s2 mode=join labels=2 taints=1`: the node stage's and the check hook's summary.
    pub fn summary(&self) -> String {
        format!(
            "hostname={} mode={} labels={} taints={}",
            self.hostname,
            self.kubelet_mode.as_str(),
            self.labels.len(),
            self.taints.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S2: &str = r#"{
  "hostname": "s2",
  "mac": "52-54-00-aa-bb-01",
  "labels": { "zone": "lab-a", "node.kubernetes.io/pool": "ci" },
  "taints": ["dedicated=ci:NoSchedule"],
  "kubelet_mode": "join"
}"#;

    #[test]
    fn publish_output_parses() {
        let n = NodeConfig::parse(S2).unwrap();
        assert_eq!(n.hostname, "s2");
        assert_eq!(n.kubelet_mode, KubeletMode::Join);
        assert_eq!(n.summary(), "hostname=s2 mode=join labels=2 taints=1");
        // Labels and taints are optional; the rest is not.
        let n = NodeConfig::parse(
            r#"{"hostname":"a","mac":"52:54:00:00:00:01","kubelet_mode":"standalone"}"#,
        )
        .unwrap();
        assert!(n.labels.is_empty() && n.taints.is_empty());
    }

    /// What publish writes is what the init reads.
    #[test]
    fn round_trips() {
        let n = NodeConfig::parse(S2).unwrap();
        let bytes = n.to_json();
        assert_eq!(
            NodeConfig::parse(std::str::from_utf8(&bytes).unwrap()).unwrap(),
            n
        );
    }

    #[test]
    fn malformed_files_name_the_field() {
        let cases = [
            (
                S2.replace("\"join\"", "\"joined\""),
                "kubelet_mode: unknown variant",
            ),
            (S2.replace("\"mac\"", "\"macc\""), "unknown field `macc`"),
            (S2.replace("\"s2\"", "\"S_2\""), "hostname: \"S_2\""),
            (S2.replace("52-54-00-aa-bb-01", "52-54-00"), "mac: "),
            (
                S2.replace("\"zone\"", "\"zo ne\""),
                "labels.\"zo ne\": name",
            ),
            (
                S2.replace("lab-a", "a,b=c"),
                "labels.\"zone\": value \"a,b=c\"",
            ),
            (
                S2.replace("ci:NoSchedule", "ci:NoSchedul"),
                "taints[0]: \"dedicated=ci:NoSchedul\": effect",
            ),
            (
                S2.replace("dedicated=ci:NoSchedule", "dedicated"),
                "taints[0]",
            ),
            (
                S2.replace("[\"dedicated", "[1, \"dedicated"),
                "taints[0]: invalid type",
            ),
            (
                S2.replace(
                    "\"node.kubernetes.io/pool\"",
                    "\"node-role.kubernetes.io/worker\"",
                ),
                "labels.\"node-role.kubernetes.io/worker\": the kubelet refuses",
            ),
            (
                S2.replace("\"hostname\": \"s2\",", ""),
                "missing field `hostname`",
            ),
            ("{".to_string(), "EOF"),
            (
                S2.replace(
                    "\"kubelet_mode\"",
                    "\"pod_cidr\": \"10.244.1.1/24\", \"kubelet_mode\"",
                ),
                "pod_cidr: \"10.244.1.1/24\"",
            ),
            (
                S2.replace(
                    "\"kubelet_mode\"",
                    "\"cluster_dns\": [\"10.96.0.10\", \"x\"], \"kubelet_mode\"",
                ),
                "cluster_dns[1]: \"x\"",
            ),
            (
                S2.replace(
                    "\"kubelet_mode\"",
                    "\"cluster_domain\": \"Cluster\", \"kubelet_mode\"",
                ),
                "cluster_domain: \"Cluster\"",
            ),
        ];
        for (text, want) in cases {
            let e = NodeConfig::parse(&text).unwrap_err().to_string();
            assert!(e.starts_with(NODE_JSON), "{e}");
            assert!(e.contains(want), "want {want:?} in {e}");
        }
    }
}
