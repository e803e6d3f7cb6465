//! What the init does with the node's own configuration, `/.diskless/node/node.json` (parsed
//! and checked by [`NodeConfig::parse`], written by `diskless publish`, see
//! docs/boot-server.md): the node's name for this boot, and the kubelet's labels, taints and
//! mode. The image is shared by many machines, so what differs between them reaches the
//! kubelet as a configuration drop-in over its config file (kubeletconf.rs), and as flags only
//! where the kubelet has no configuration field (join material paths, node labels). On any error in the file
//! the kubelet is not started at all: a kubelet registering a wrong node is worse than none.

use crate::kubeletconf::{self, Authentication, Authorization, DropIn, Enabled, X509};
use crate::sys::{self, SysError};
use diskless_contract::image::Service;
use diskless_contract::node::{
    KubeletMode, NodeConfig, BOOTSTRAP_KUBECONFIG, CLIENT_CA, NODE_JSON,
};
use std::path::{Path, PathBuf};

/// Written by the kubelet once its bootstrap CSR is signed; RAM like everything else, so every
/// boot bootstraps again.
const KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
const CERT_DIR: &str = "/var/lib/kubelet/pki";

/// Why `node.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeFileError {
    #[error("cannot read {NODE_JSON}: {0}")]
    Read(std::io::Error),
    /// Malformed, or a value the kubelet would refuse.
    #[error(transparent)]
    Invalid(#[from] diskless_contract::node::NodeError),
}

/// Why the kubelet is not started: a `FAILED` line, not a kubelet registering a wrong node.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("not started: {NODE_JSON} is invalid (see the node line)")]
    InvalidNode,
    #[error(
        "not started: the node is in join mode but {0} is missing \
         (publish the host with the inventory's [join] section)"
    )]
    Missing(String),
}

/// `Ok(None)` when the machine booted a shared entry without a per-node segment.
pub fn load() -> Result<Option<NodeConfig>, NodeFileError> {
    match std::fs::read_to_string(NODE_JSON) {
        Ok(text) => Ok(Some(NodeConfig::parse(&text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NodeFileError::Read(e)),
    }
}

/// The node's name as given for this boot: `diskless.hostname=` on the kernel command line (a
/// per-boot override for hand-made entries), else `node.json`'s. `None` leaves the name to
/// the network step: DHCP's offer, else `<image>-<mac>`.
pub fn fixed_hostname(cmdline: Option<&str>, node: Option<&NodeConfig>) -> Option<String> {
    cmdline
        .map(String::from)
        .or_else(|| node.map(|n| n.hostname.clone()))
}

/// What the init does to the image's kubelet service for this node.
#[derive(Debug, Clone)]
pub struct Kubelet {
    pub service: Service,
    /// The mode the image's kubelet was built for (join when its command line has
    /// `--bootstrap-kubeconfig`, as the Nix module writes it).
    pub image_mode: KubeletMode,
    /// Files the kubelet needs from the node segment; missing ones keep it from starting.
    pub needs: Vec<String>,
    /// The node's settings, written to [`Kubelet::drop_in_path`] before the kubelet starts.
    pub drop_in: DropIn,
}

impl Kubelet {
    /// `<--config-dir>/50-diskless-node.conf`.
    pub fn drop_in_path(&self) -> PathBuf {
        let dir = flag_value(&self.service.command, "--config-dir")
            .unwrap_or_else(|| kubeletconf::CONFIG_DIR.into());
        Path::new(&dir).join(kubeletconf::FILE_NAME)
    }

    /// Writes the drop-in (and the empty static-pod directory it may name).
    pub fn write_drop_in(&self) -> Result<String, SysError> {
        let path = self.drop_in_path();
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).map_err(sys::io("create", dir.display().to_string()))?;
        if let Some(p) = &self.drop_in.static_pod_path {
            std::fs::create_dir_all(p).map_err(sys::io("create", p))?;
        }
        std::fs::write(&path, self.drop_in.to_bytes())
            .map_err(sys::io("write", path.display().to_string()))?;
        Ok(path.display().to_string())
    }
}

/// The kubelet service for this node (`None`: a shared entry, no node segment, standalone):
/// the image's, with the node's labels, its settings in a drop-in, and the node's kubelet mode
/// where it differs from the image's (the per-machine configuration wins). Pure, so every
/// combination is unit-tested.
pub fn kubelet_for(image: &Service, node: Option<&NodeConfig>) -> Kubelet {
    let mut svc = image.clone();
    let cmd = &mut svc.command;
    let image_bootstrap = flag_value(cmd, "--bootstrap-kubeconfig");
    let image_mode = if image_bootstrap.is_some() {
        KubeletMode::Join
    } else {
        KubeletMode::Standalone
    };
    let node_mode = node.map_or(image_mode, |n| n.kubelet_mode);
    let mut drop_in = DropIn::for_node(node, node_mode == KubeletMode::Standalone);
    let mut needs = Vec::new();
    match (image_mode, node_mode) {
        (KubeletMode::Join, KubeletMode::Join) => {
            // The image's own flags and config (client CA, webhook authn/authz) already join.
            needs.extend(image_bootstrap);
        }
        (KubeletMode::Standalone, KubeletMode::Join) => {
            // Where the join material is and where the kubelet keeps its certificates: flags,
            // as these have no configuration field.
            cmd.extend([
                format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
                format!("--kubeconfig={KUBECONFIG}"),
                format!("--cert-dir={CERT_DIR}"),
            ]);
            // A standalone config trusts every caller (AlwaysAllow, no client CA): on a cluster
            // node the kubelet API must check callers against the cluster, like kubeadm's nodes.
            drop_in.authentication = Some(Authentication {
                anonymous: Some(Enabled { enabled: false }),
                webhook: Enabled { enabled: true },
                x509: Some(X509 {
                    client_ca_file: CLIENT_CA.into(),
                }),
            });
            drop_in.authorization = Some(Authorization { mode: "Webhook" });
            // The bootstrap certificate expires; the node may stay up longer than that.
            drop_in.rotate_certificates = Some(true);
            // The image's static pods are its standalone workload; the cluster's come from the API.
            drop_in.static_pod_path = Some(kubeletconf::NO_STATIC_PODS.into());
            svc.condition_path = Some(BOOTSTRAP_KUBECONFIG.into());
            needs.extend([BOOTSTRAP_KUBECONFIG.to_string(), CLIENT_CA.to_string()]);
        }
        (KubeletMode::Join, KubeletMode::Standalone) => {
            for flag in ["--bootstrap-kubeconfig", "--kubeconfig", "--cert-dir"] {
                remove_flag(cmd, flag);
            }
            // The join config points at a client CA and webhooks that need an API server. A
            // drop-in cannot clear a field (empty values are "not set"), so the client CA goes
            // by the one flag that can.
            cmd.push("--client-ca-file=".into());
            drop_in.authentication = Some(Authentication {
                anonymous: None,
                webhook: Enabled { enabled: false },
                x509: None,
            });
            drop_in.authorization = Some(Authorization {
                mode: "AlwaysAllow",
            });
            svc.condition_path = None;
        }
        (KubeletMode::Standalone, KubeletMode::Standalone) => {}
    }
    if flag_value(cmd, "--config-dir").is_none() {
        cmd.push(format!("--config-dir={}", kubeletconf::CONFIG_DIR));
    }
    // Node labels have no configuration field.
    if let Some(n) = node.filter(|n| !n.labels.is_empty()) {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cmd.push(format!("--node-labels={}", labels.join(",")));
    }
    Kubelet {
        service: svc,
        image_mode,
        needs,
        drop_in,
    }
}

/// The kubelet to run on this machine given the node configuration `load` returned, or why it
/// must not run (a `FAILED` line, not a kubelet registering a wrong node).
pub fn kubelet_service(
    image: &Service,
    node: &Result<Option<NodeConfig>, NodeFileError>,
) -> Result<Kubelet, KubeletError> {
    let node = match node {
        Err(_) => return Err(KubeletError::InvalidNode),
        Ok(n) => n.as_ref(),
    };
    let k = kubelet_for(image, node);
    match k.needs.iter().find(|p| !Path::new(p).exists()) {
        Some(missing) => Err(KubeletError::Missing(missing.clone())),
        None => Ok(k),
    }
}

/// `--flag=value` or `--flag value`.
pub fn flag_value(cmd: &[String], flag: &str) -> Option<String> {
    cmd.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            cmd.get(i + 1).cloned()
        } else {
            a.strip_prefix(flag)?.strip_prefix('=').map(String::from)
        }
    })
}

fn remove_flag(cmd: &mut Vec<String>, flag: &str) {
    let mut i = 0;
    while i < cmd.len() {
        if cmd[i] == flag {
            cmd.drain(i..(i + 2).min(cmd.len()));
        } else if cmd[i]
            .strip_prefix(flag)
            .is_some_and(|r| r.starts_with('='))
        {
            cmd.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diskless_contract::image::Role;
    use std::collections::BTreeMap;

    const S2: &str = r#"{
  "hostname": "s2",
  "mac": "52-54-00-aa-bb-01",
  "labels": { "zone": "lab-a", "node.kubernetes.io/pool": "ci" },
  "taints": ["dedicated=ci:NoSchedule"],
  "kubelet_mode": "join"
}"#;

    fn service(command: &[&str], condition: Option<&str>) -> Service {
        Service {
            name: "kubelet".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            ready_path: None,
            condition_path: condition.map(String::from),
            restart: true,
            role: Some(Role::Kubelet),
        }
    }

    fn standalone_image() -> Service {
        service(
            &[
                "/usr/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.yaml",
                "--v=1",
            ],
            None,
        )
    }

    /// As modules/kubelet.nix writes it for `mode = "join"`.
    fn join_image() -> Service {
        service(
            &[
                "/nix/store/x-kubelet/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.json",
                "--bootstrap-kubeconfig=/.diskless/node/kubelet/bootstrap-kubeconfig",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--cert-dir=/var/lib/kubelet/pki",
                "--v=2",
            ],
            Some(BOOTSTRAP_KUBECONFIG),
        )
    }

    fn node(mode: KubeletMode) -> NodeConfig {
        NodeConfig {
            kubelet_mode: mode,
            ..NodeConfig::parse(S2).unwrap()
        }
    }

    #[test]
    fn the_command_line_names_the_node_over_node_json() {
        let n = NodeConfig::parse(S2).unwrap();
        assert_eq!(fixed_hostname(Some("s9"), Some(&n)).as_deref(), Some("s9"));
        assert_eq!(fixed_hostname(None, Some(&n)).as_deref(), Some("s2"));
        assert_eq!(fixed_hostname(None, None), None);
    }

    #[test]
    fn standalone_image_joins_when_the_node_says_join() {
        let k = kubelet_for(&standalone_image(), Some(&node(KubeletMode::Join)));
        assert_eq!(k.image_mode, KubeletMode::Standalone);
        assert_eq!(
            k.service.command,
            [
                "/usr/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.yaml",
                "--v=1",
                "--bootstrap-kubeconfig=/.diskless/node/kubelet/bootstrap-kubeconfig",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--cert-dir=/var/lib/kubelet/pki",
                "--config-dir=/etc/kubernetes/kubelet.conf.d",
                // Sorted by key.
                "--node-labels=node.kubernetes.io/pool=ci,zone=lab-a",
            ]
        );
        // Everything with a configuration field is in the drop-in, no deprecated flag.
        let d = &k.drop_in;
        assert_eq!(
            d.authentication
                .as_ref()
                .unwrap()
                .x509
                .as_ref()
                .unwrap()
                .client_ca_file,
            CLIENT_CA
        );
        assert_eq!(d.authorization.as_ref().unwrap().mode, "Webhook");
        assert_eq!(d.rotate_certificates, Some(true));
        assert_eq!(d.register_with_taints.len(), 1);
        // The standalone image's demo pods stay off; the range comes from the cluster.
        assert_eq!(
            d.static_pod_path.as_deref(),
            Some(kubeletconf::NO_STATIC_PODS)
        );
        assert_eq!(d.pod_cidr, None);
        assert_eq!(
            k.service.condition_path.as_deref(),
            Some(BOOTSTRAP_KUBECONFIG)
        );
        assert_eq!(k.needs, [BOOTSTRAP_KUBECONFIG, CLIENT_CA]);
        assert_eq!(
            k.drop_in_path(),
            Path::new("/etc/kubernetes/kubelet.conf.d/50-diskless-node.conf")
        );
    }

    #[test]
    fn join_image_keeps_its_own_join_flags() {
        let mut image = join_image();
        image.command.push("--config-dir=/etc/kubelet.d".into());
        let k = kubelet_for(&image, Some(&node(KubeletMode::Join)));
        assert_eq!(k.image_mode, KubeletMode::Join);
        assert_eq!(k.service.command[..image.command.len()], image.command[..]);
        assert_eq!(
            k.service.command[image.command.len()..],
            ["--node-labels=node.kubernetes.io/pool=ci,zone=lab-a"]
        );
        // The image's own drop-in directory; its static pods and authentication stay.
        assert_eq!(
            k.drop_in_path(),
            Path::new("/etc/kubelet.d/50-diskless-node.conf")
        );
        assert_eq!(k.drop_in.static_pod_path, None);
        assert_eq!(k.drop_in.authentication, None);
        assert_eq!(k.service.condition_path, image.condition_path);
        assert_eq!(k.needs, [BOOTSTRAP_KUBECONFIG]);
    }

    #[test]
    fn join_image_runs_standalone_when_the_node_says_standalone() {
        let mut image = join_image();
        // The separate-argument form is removed too.
        image.command.push("--kubeconfig".into());
        image.command.push("/other".into());
        let n = NodeConfig {
            labels: BTreeMap::new(),
            taints: vec![],
            ..node(KubeletMode::Standalone)
        };
        let k = kubelet_for(&image, Some(&n));
        assert_eq!(k.image_mode, KubeletMode::Join);
        assert_eq!(
            k.service.command,
            [
                "/nix/store/x-kubelet/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.json",
                "--v=2",
                "--client-ca-file=",
                "--config-dir=/etc/kubernetes/kubelet.conf.d",
            ]
        );
        assert_eq!(
            k.drop_in.authorization.as_ref().unwrap().mode,
            "AlwaysAllow"
        );
        assert_eq!(
            k.drop_in.pod_cidr.as_deref(),
            Some(diskless_contract::node::STANDALONE_POD_CIDR)
        );
        assert_eq!(k.service.condition_path, None);
        assert!(k.needs.is_empty());
    }

    #[test]
    fn standalone_everywhere_only_adds_the_drop_in_and_labels() {
        let k = kubelet_for(&standalone_image(), Some(&node(KubeletMode::Standalone)));
        assert_eq!(
            k.service.command.len(),
            standalone_image().command.len() + 2
        );
        assert_eq!(k.service.condition_path, None);
        assert_eq!(k.drop_in.static_pod_path, None);
        // No node segment at all: a shared entry.
        let k = kubelet_for(&standalone_image(), None);
        assert_eq!(
            k.service.command.last().unwrap(),
            "--config-dir=/etc/kubernetes/kubelet.conf.d"
        );
        assert!(k.drop_in.register_with_taints.is_empty());
    }
}
