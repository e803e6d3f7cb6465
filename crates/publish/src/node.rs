//! The per-node segment: one host's identity and secrets, packed as its own initrd segment and
//! served only through that host's entry, so no shared entry or image index can reach it.

use crate::authorized_keys::AuthorizedKeys;
use crate::controlplane::ControlPlaneError;
use crate::generation::{Generation, PublishedHost};
use crate::inventory::{Host, Inventory, InventoryError, Join, KubeletMode};
use crate::kubeconfig::{ClusterCa, Credentials, Kubeconfig};
use crate::token::TokenError;
use diskless_builder::index::Artifact;
use diskless_builder::store::sha256_hex;
use diskless_builder::tree::{Content, Entry, EntryKind, Tree};
use diskless_builder::words::{Word, Words};
use diskless_contract::controlplane::ControlPlaneNode;
use diskless_contract::node::{NodeConfig, BOOTSTRAP_KUBECONFIG, CLIENT_CA, NODE_JSON};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A host whose node segment cannot be made: a secret file the inventory names, join material,
/// the control plane's files.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error("inventory: cannot read {what} {}: {cause}", path.display())]
    Secret {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("join.token_file is not text: {0}")]
    TokenText(std::string::FromUtf8Error),
    #[error("host {mac}: {field}: {why}")]
    Word {
        mac: String,
        field: &'static str,
        why: String,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// Packing the segment failed (the message is the builder's).
    #[error("node segment: {0}")]
    Segment(String),
    #[error("cannot read /dev/urandom: {0}")]
    Random(std::io::Error),
}

impl NodeError {
    /// Whether this machine lacks a tool a node segment needs (kubectl, etcdctl).
    pub fn is_environment(&self) -> bool {
        match self {
            NodeError::Token(e) => e.is_environment(),
            NodeError::ControlPlane(e) => e.is_environment(),
            _ => false,
        }
    }
}

/// Node segments made by `hosts`, as (sha256, bytes), to be stored with the image objects.
pub(crate) type NewSegments = Vec<(String, Vec<u8>)>;

/// Every inventory host as published, reusing `current`'s node segment for a host whose inputs
/// did not change (a new segment has a new nonce, so remaking it would make every publish
/// a change).
pub(crate) fn hosts(
    inv: &Inventory,
    inventory_path: &Path,
    current: Option<&Generation>,
) -> Result<(BTreeMap<String, PublishedHost>, NewSegments), NodeError> {
    let mut node_segments = NewSegments::new();
    let mut hosts = BTreeMap::new();
    let keys = inv.authorized_keys(inventory_path)?;
    for h in &inv.hosts {
        let files = node_files(inv, h, keys.as_ref())?;
        let inputs = serde_json::to_vec(&(&files, &h.image, &h.kernel_args))
            .expect("node files always serialize");
        let inputs = sha256_hex(&inputs);
        let previous = current
            .and_then(|g| g.hosts.get(&h.mac))
            .filter(|p| p.inputs == inputs);
        let node_segment = match previous {
            Some(p) => p.node_segment.clone(),
            None => {
                let bytes = node_segment(&files)?;
                let sha = sha256_hex(&bytes);
                let size = bytes.len() as u64;
                node_segments.push((sha.clone(), bytes));
                Artifact { sha256: sha, size }
            }
        };
        hosts.insert(
            h.mac.clone(),
            PublishedHost {
                hostname: h.hostname.clone(),
                // Both checked by `Inventory::check` already; an error here names the host.
                image: Word::new(h.image.clone()).map_err(|why| NodeError::Word {
                    mac: h.mac.clone(),
                    field: "image",
                    why,
                })?,
                kernel_args: Words::new(h.kernel_args.clone()).map_err(|why| NodeError::Word {
                    mac: h.mac.clone(),
                    field: "kernel_args",
                    why,
                })?,
                node_segment,
                inputs,
            },
        );
    }
    Ok((hosts, node_segments))
}

/// `f` of the inventory's `[join]` section, for a host in join mode.
fn join_settings<T>(inv: &Inventory, host: &Host, f: impl Fn(&Join) -> T) -> Option<T> {
    inv.join
        .as_ref()
        .filter(|_| host.kubelet_mode == KubeletMode::Join)
        .map(f)
}

fn read_secret(path: &Path, what: &'static str) -> Result<Vec<u8>, NodeError> {
    diskless_builder::store::read_regular(path).map_err(|cause| NodeError::Secret {
        what,
        path: path.to_owned(),
        cause,
    })
}

/// The files of one host's node segment: identity, join material, SSH keys; mode 0600 where secret.
/// Join material goes where the Nix kubelet module's `join.*` options expect it by default.
fn node_files(
    inv: &Inventory,
    host: &Host,
    keys: Option<&AuthorizedKeys>,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, NodeError> {
    let mut files = BTreeMap::new();
    let control_plane = inv.control_plane.as_ref().filter(|c| c.runs_on(host));
    // The node's one identity channel: the init reads this file with the same type.
    let node = NodeConfig {
        hostname: host.hostname.clone(),
        mac: host.mac.clone(),
        labels: host.labels.clone(),
        taints: host.taints.clone(),
        kubelet_mode: host.kubelet_mode,
        pod_cidr: host.pod_cidr.clone(),
        // Cluster settings only for nodes that join the cluster.
        cluster_dns: join_settings(inv, host, |j| j.cluster_dns.clone()).unwrap_or_default(),
        cluster_domain: join_settings(inv, host, |j| j.cluster_domain.clone()).flatten(),
        control_plane: control_plane.map(|c| ControlPlaneNode {
            advertise_address: c.advertise_address.clone(),
        }),
    };
    files.insert(NODE_JSON.to_string(), (node.to_json(), 0o600));
    if let Some(c) = control_plane {
        files.extend(crate::controlplane::files(c)?);
    }
    if host.kubelet_mode == KubeletMode::Join {
        let j = inv.join.as_ref().expect("checked by Inventory::check");
        let token = match (&j.token_file, &j.mint_tokens) {
            (_, Some(m)) => crate::token::mint(
                m.kubectl.as_deref().unwrap_or(Path::new("kubectl")),
                &m.admin_kubeconfig,
                &host.hostname,
                std::time::Duration::from_secs(m.ttl_seconds),
            )?
            .bearer(),
            (Some(file), None) => String::from_utf8(read_secret(file, "join.token_file")?)
                .map_err(NodeError::TokenText)?,
            (None, None) => unreachable!("checked by Inventory::check"),
        };
        let kubeconfig = Kubeconfig::single(
            &j.api_server,
            ClusterCa::File(CLIENT_CA.into()),
            "kubelet-bootstrap",
            Credentials {
                token: Some(token.trim().to_string()),
                ..Default::default()
            },
        );
        files.insert(BOOTSTRAP_KUBECONFIG.into(), (kubeconfig.to_bytes(), 0o600));
        files.insert(
            CLIENT_CA.into(),
            (read_secret(&j.ca_file, "join.ca_file")?, 0o600),
        );
    }
    if let Some(k) = keys {
        files.insert(AUTHORIZED_KEYS.into(), (k.to_bytes(), 0o600));
    }
    if let Some(dir) = &host.ssh_host_keys_dir {
        let mut keys: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|cause| NodeError::Secret {
                what: "ssh_host_keys_dir",
                path: dir.clone(),
                cause,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_"))
            })
            .collect();
        keys.sort();
        for k in keys {
            let name = k.file_name().unwrap().to_string_lossy().into_owned();
            let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
            files.insert(
                format!("/etc/ssh/{name}"),
                (read_secret(&k, "host key")?, mode),
            );
        }
    }
    Ok(files)
}

/// Root's SSH keys on the node, where dropbear (and OpenSSH) look. Its directories are
/// written 0700 (`node_segment`), as the image's `/root` is: the parents a segment adds by
/// itself are 0755 and would open root's home to every user of the node.
const AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";

/// Builds a node segment. A random nonce inside makes its name unguessable even for someone
/// who knows every non-secret input.
fn node_segment(files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<Vec<u8>, NodeError> {
    let mut tree = Tree::default();
    if files.contains_key(AUTHORIZED_KEYS) {
        for d in ["/root", "/root/.ssh"] {
            tree.entries.insert(
                d.into(),
                Entry {
                    kind: EntryKind::Dir,
                    mode: 0o700,
                    origin: "inventory".into(),
                },
            );
        }
    }
    for (path, (bytes, mode)) in files {
        tree.entries.insert(
            path.clone(),
            Entry {
                kind: EntryKind::File(Content::Bytes(Arc::new(bytes.clone()))),
                mode: *mode,
                origin: "inventory".into(),
            },
        );
    }
    let mut nonce = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce))
        .map_err(NodeError::Random)?;
    tree.entries.insert(
        "/.diskless/node/nonce".into(),
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(hex::encode(nonce).into_bytes()))),
            mode: 0o600,
            origin: "nonce".into(),
        },
    );
    let seg = diskless_builder::segment::write("node", &tree, 0)
        .map_err(|e| NodeError::Segment(format!("{e:#}")))?;
    let codec = diskless_builder::compress::Codec {
        algorithm: diskless_builder::plan::Algorithm::Zstd,
        level: 3,
        window_log: 0,
    };
    codec
        .compress("node", &seg.cpio, 1)
        .map_err(|e| NodeError::Segment(format!("{e:#}")))
}
