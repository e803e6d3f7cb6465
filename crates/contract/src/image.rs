//! The builder → init contract: one versioned JSON document written at a fixed path inside the
//! image, `/.diskless/image.json`, by the builder and read by the init through these types
//! (`docs/image-contract.md` is the reference). It carries what only the builder knows
//! (segments and their sentinels, the module load order, the unpacked size) plus the plan's
//! `node` section, unchanged. Unknown fields are refused on both sides, so a newer builder's
//! additions are not silently ignored by an older init.

use crate::reference::{Reference, ReferenceError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// 2: services carry a `role`; the init no longer recognises containerd and the kubelet by name.
/// 4: segments carry a `condition_path` (a version-3 init would refuse it as an unknown field).
pub const CONTRACT_VERSION: u32 = 4;
/// Where the contract lives inside the image.
pub const CONTRACT_PATH: &str = "/.diskless/image.json";
/// Written by the init once every preloaded image has been imported (or failed to: its
/// `images` lines say which), the deferred ones included; the check hook waits for it before
/// it looks for the images.
pub const IMAGES_IMPORTED: &str = "/run/diskless/images-imported";
/// Directory of the per-segment sentinel files.
pub const SENTINEL_DIR: &str = "/.diskless/segments";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageContract {
    pub version: u32,
    pub name: String,
    /// Sum of file sizes over all segments: the init sizes its tmpfs root from this.
    pub unpacked_bytes: u64,
    /// Every segment after the manifest segment, in boot order.
    pub segments: Vec<SegmentRef>,
    /// Kernel modules in load order (dependencies first).
    pub modules: Vec<ModuleRef>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub cgroup_controllers: Vec<String>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub services: Vec<Service>,
    /// Preloaded container images, imported into the container runtime (the service with
    /// `role = "container-runtime"`) once it is ready, before the services after it.
    #[serde(default)]
    pub images: Vec<ImageRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRef {
    pub name: String,
    /// Absolute path of the sentinel file this segment ends with.
    pub sentinel: String,
    /// The sentinel's expected contents: sha256 of the segment's entries before the sentinel.
    pub content: String,
    /// The squashfs image holding this segment's `/usr` and `/nix/store` files, which the init
    /// loop-mounts read-only (absent for plain cpio segments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squashfs: Option<String>,
    /// Mounted only where this file exists at boot (plan `components[].condition_path`; only
    /// with `squashfs`): otherwise its image is deleted from the initramfs unmounted, so a
    /// program only some nodes run (kube-proxy, on nodes that join) costs the others no RAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_path: Option<String>,
}

impl SegmentRef {
    /// Whether `exists` says its condition holds (or it has none).
    pub fn wanted(&self, exists: impl Fn(&std::path::Path) -> bool) -> bool {
        self.condition_path
            .as_deref()
            .is_none_or(|p| exists(std::path::Path::new(p)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRef {
    pub name: String,
    /// Absolute path of the `.ko` inside the image.
    pub path: String,
    /// True for modules pulled in through a softdep alias (e.g. `crc32c_intel`), which may
    /// legitimately fail on a CPU without the feature: the init warns and goes on.
    #[serde(default)]
    pub optional: bool,
    /// Names of earlier modules that must be loaded first; modules whose `after` sets are
    /// loaded may load in parallel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// One preloaded image. Blobs live once in a shared pool (`/var/lib/diskless/oci/blobs/sha256/`),
/// so layers shared by several images are stored and transferred once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub name: String,
    /// Absolute path of this image's OCI `index.json` inside the image.
    pub index: String,
    /// Every blob digest (`sha256:<hex>`) the image needs from the pool.
    pub blobs: Vec<String>,
    /// References it carries in containerd's `k8s.io` namespace.
    pub refs: Vec<String>,
    /// Labels the init attaches to each ref on import, e.g. `io.cri-containerd.pinned: pinned`
    /// (containerd ≥ 1.7: the kubelet's image GC never removes a pinned image).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Imported after the kubelet has started instead of before it (plan `deferred`): for an
    /// image neither the pod sandbox nor a static pod needs, whose import would otherwise hold
    /// the kubelet back (the cluster DNS: 16 MB, ≈ 3 s under TCG).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// Imported only where this file exists at boot, as a service's `condition_path` (plan
    /// `condition_path`): the cluster DNS only where the node joins a cluster (the bootstrap
    /// kubeconfig), as a standalone node has no cluster to serve and would hold it in RAM for
    /// nothing. The pool blobs of an image left out are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_path: Option<String>,
}

impl ImageRef {
    /// Whether this boot imports it: no condition, or its file exists.
    pub fn wanted(&self) -> bool {
        self.condition_path
            .as_deref()
            .is_none_or(|p| std::path::Path::new(p).exists())
    }
}

/// How the node's network comes up (plan `node.network`, passed through unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Network {
    /// DHCP on the first interface with link (or `interface`).
    Dhcp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<String>,
    },
    /// A fixed address (`"10.0.0.5/24"`), optional gateway and DNS servers.
    Static {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interface: Option<String>,
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gateway: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dns: Vec<String>,
    },
    /// Loopback only.
    None,
}

impl Default for Network {
    fn default() -> Self {
        Network::Dhcp { interface: None }
    }
}

/// A long-running program the init supervises (plan `node.services`, passed through unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// argv; `command[0]` is an absolute path inside the image.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The service counts as ready once this path exists (e.g. a unix socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_path: Option<String>,
    /// Start only when this path exists in the image (e.g. a per-node join config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_path: Option<String>,
    /// Restart with backoff when it exits (default true).
    #[serde(default = "yes")]
    pub restart: bool,
    /// What the init does around this service beyond starting it; `None` for a plain service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

fn yes() -> bool {
    true
}

/// The parts a worker's boot sequence treats specially. At most one service has each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// containerd: started first, alone; the preloaded images are imported once it is ready,
    /// and the modules/network step starts then (it only needs overlayfs to start).
    ContainerRuntime,
    /// The kubelet: gets the node's labels, taints and mode (node.json) and a serving
    /// certificate before it starts.
    Kubelet,
    /// etcd: before it starts, the init restores its data directory from the node segment's
    /// snapshot (`controlplane::ETCD_SNAPSHOT`) with the `etcdutl` beside it, which checks the
    /// snapshot's hash; a snapshot that does not restore keeps etcd from starting (an empty
    /// etcd would be snapshotted next and replace the good one).
    Etcd,
    /// The API server: gets the node's `--advertise-address` (node.json `control_plane`).
    ApiServer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ContainerRuntime => "container-runtime",
            Role::Kubelet => "kubelet",
            Role::Etcd => "etcd",
            Role::ApiServer => "api-server",
        }
    }
}

/// Why the init cannot use `image.json`; every message starts with [`CONTRACT_PATH`].
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("cannot read {CONTRACT_PATH}: {0}; the manifest segment (the first `initrd` line of the iPXE entry) is missing")]
    Read(std::io::Error),
    /// Not JSON, or not the shape of [`ImageContract`].
    #[error("{CONTRACT_PATH}: {0}")]
    Json(serde_json::Error),
    #[error("{CONTRACT_PATH} has version {0}; this init reads version {CONTRACT_VERSION}: rebuild the image with a matching builder")]
    WrongVersion(u64),
    #[error("{CONTRACT_PATH}: {0}; this init reads version {CONTRACT_VERSION}: rebuild the image with a matching builder")]
    Version(crate::version::VersionError),
    /// Parses, but breaks a rule serde cannot express.
    #[error("{CONTRACT_PATH}: {0}")]
    Rule(RuleError),
}

/// A contract (or plan) the init would refuse: the rules serde cannot express, which the
/// builder checks the plan with too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "interface {0:?} is not a Linux interface name (1-15 characters, no '/', ':' or spaces)"
    )]
    Interface(String),
    #[error("address {0:?} needs a prefix length, e.g. 10.0.0.5/24")]
    NoPrefixLength(String),
    #[error("address {address:?}: the prefix length must be 0-{max}")]
    PrefixLength { address: String, max: u8 },
    /// `what` is `address`, `gateway` or `dns server`.
    #[error("{what} {value:?} is not an IP address")]
    NotIp { what: &'static str, value: String },
    #[error("condition_path {0:?} is not an absolute path inside the image")]
    ConditionPath(String),
    #[error("segment {name:?}: {why}")]
    Segment { name: String, why: Box<RuleError> },
    #[error("segment {0:?} has a condition_path but no squashfs image to leave out")]
    ConditionWithoutSquashfs(String),
    #[error("image {image:?}: ref {reference:?}: {why}")]
    ImageRef {
        image: String,
        reference: String,
        why: ReferenceError,
    },
    #[error("image {image:?}: {why}")]
    Image { image: String, why: Box<RuleError> },
    #[error("image {image:?}: blob {blob:?} is not a sha256:<64 lowercase hex> digest")]
    Blob { image: String, blob: String },
    #[error("service {0:?} needs a command whose first word is an absolute path")]
    Command(String),
    #[error("services {holders:?} all have role {role:?}; at most one service may")]
    RoleTwice {
        holders: Vec<String>,
        role: &'static str,
    },
}

/// For callers whose own errors are still sentences.
impl From<RuleError> for String {
    fn from(e: RuleError) -> String {
        e.to_string()
    }
}

impl ImageContract {
    /// The service with `role`, if any.
    pub fn service(&self, role: Role) -> Option<&Service> {
        self.services.iter().find(|s| s.role == Some(role))
    }

    /// Reads the contract from [`CONTRACT_PATH`] (on the node).
    pub fn load() -> Result<ImageContract, ContractError> {
        let text = std::fs::read_to_string(CONTRACT_PATH).map_err(ContractError::Read)?;
        ImageContract::parse(&text)
    }

    /// Parses and checks a contract; errors start with [`CONTRACT_PATH`].
    pub fn parse(text: &str) -> Result<ImageContract, ContractError> {
        // Version first, so a v3 document gets "unknown version", not an unknown-field error.
        let value: serde_json::Value = serde_json::from_str(text).map_err(ContractError::Json)?;
        match crate::version::document_version(&value) {
            Ok(v) if v == u64::from(CONTRACT_VERSION) => {}
            Ok(other) => return Err(ContractError::WrongVersion(other)),
            Err(e) => return Err(ContractError::Version(e)),
        }
        let c: ImageContract = serde_json::from_value(value).map_err(ContractError::Json)?;
        c.check().map_err(ContractError::Rule)?;
        Ok(c)
    }

    /// The rules serde cannot express; the builder checks the plan with the same ones.
    pub fn check(&self) -> Result<(), RuleError> {
        check_services(&self.services)?;
        check_segments(&self.segments)?;
        check_images(&self.images)?;
        check_network(&self.network)
    }
}

/// A static network the init can configure: `address` is an IP address with a prefix length
/// valid for its family, the gateway and DNS servers are IP addresses, the interface a name
/// the kernel accepts (1–15 bytes, no '/', whitespace or ':').
pub fn check_network(network: &Network) -> Result<(), RuleError> {
    let interface_ok = |i: &Option<String>| match i {
        Some(name)
            if name.is_empty()
                || name.len() > 15
                || name
                    .chars()
                    .any(|c| c == '/' || c == ':' || !c.is_ascii_graphic()) =>
        {
            Err(RuleError::Interface(name.clone()))
        }
        _ => Ok(()),
    };
    match network {
        Network::Dhcp { interface } => interface_ok(interface),
        Network::None => Ok(()),
        Network::Static {
            interface,
            address,
            gateway,
            dns,
        } => {
            interface_ok(interface)?;
            let bad = |what: &'static str, v: &str| RuleError::NotIp {
                what,
                value: v.to_owned(),
            };
            let (ip, prefix) = address
                .split_once('/')
                .ok_or_else(|| RuleError::NoPrefixLength(address.clone()))?;
            let ip: std::net::IpAddr = ip.parse().map_err(|_| bad("address", address))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match prefix.parse::<u8>() {
                Ok(p) if p <= max => {}
                _ => {
                    return Err(RuleError::PrefixLength {
                        address: address.clone(),
                        max,
                    })
                }
            }
            if let Some(g) = gateway {
                g.parse::<std::net::IpAddr>()
                    .map_err(|_| bad("gateway", g))?;
            }
            for d in dns {
                d.parse::<std::net::IpAddr>()
                    .map_err(|_| bad("dns server", d))?;
            }
            Ok(())
        }
    }
}

/// A `condition_path` (of an image or a segment) is an absolute path: it is tested on the node,
/// where a relative one would depend on the init's working directory.
pub fn check_condition_path(path: &str) -> Result<(), RuleError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(RuleError::ConditionPath(path.to_owned()))
    }
}

/// A segment's condition leaves out its squashfs image, so only a squashfs segment has one (the
/// cpio part is unpacked by the kernel before the init can choose).
pub fn check_segments(segments: &[SegmentRef]) -> Result<(), RuleError> {
    for s in segments {
        if let Some(p) = &s.condition_path {
            check_condition_path(p).map_err(|e| RuleError::Segment {
                name: s.name.clone(),
                why: Box::new(e),
            })?;
            if s.squashfs.is_none() {
                return Err(RuleError::ConditionWithoutSquashfs(s.name.clone()));
            }
        }
    }
    Ok(())
}

/// Every preloaded image's refs are fully qualified references by the distribution grammar
/// (what containerd and the kubelet will look them up by) and its blobs sha256 digests (they
/// become paths in the blob pool).
pub fn check_images(images: &[ImageRef]) -> Result<(), RuleError> {
    for image in images {
        for r in &image.refs {
            Reference::qualified(r).map_err(|why| RuleError::ImageRef {
                image: image.name.clone(),
                reference: r.clone(),
                why,
            })?;
        }
        if let Some(p) = &image.condition_path {
            check_condition_path(p).map_err(|e| RuleError::Image {
                image: image.name.clone(),
                why: Box::new(e),
            })?;
        }
        for b in &image.blobs {
            if crate::digest::sha256_of(b).is_none() {
                return Err(RuleError::Blob {
                    image: image.name.clone(),
                    blob: b.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Every service has a command whose first word is an absolute path, and each role is held by
/// at most one service.
pub fn check_services(services: &[Service]) -> Result<(), RuleError> {
    for s in services {
        if s.command.is_empty() || !s.command[0].starts_with('/') {
            return Err(RuleError::Command(s.name.clone()));
        }
    }
    for role in [
        Role::ContainerRuntime,
        Role::Kubelet,
        Role::Etcd,
        Role::ApiServer,
    ] {
        let holders: Vec<String> = services
            .iter()
            .filter(|s| s.role == Some(role))
            .map(|s| s.name.clone())
            .collect();
        if holders.len() > 1 {
            return Err(RuleError::RoleTwice {
                holders,
                role: role.as_str(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_networks_are_checked() {
        let net = |address: &str, gateway: Option<&str>, dns: &[&str]| Network::Static {
            interface: None,
            address: address.into(),
            gateway: gateway.map(Into::into),
            dns: dns.iter().map(|d| d.to_string()).collect(),
        };
        check_network(&net("10.0.0.5/24", Some("10.0.0.1"), &["10.0.0.1"])).unwrap();
        check_network(&net("fd00::5/64", None, &[])).unwrap();
        for (n, why) in [
            (net("999.1.1.1/24", None, &[]), "not an IP address"),
            (net("10.0.0.5/99", None, &[]), "0-32"),
            (net("10.0.0.5", None, &[]), "prefix length"),
            (net("fd00::5/129", None, &[]), "0-128"),
            (net("10.0.0.5/24", Some("gw"), &[]), "gateway"),
            (net("10.0.0.5/24", None, &["8.8.8"]), "dns server"),
        ] {
            let e = check_network(&n).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let e = check_network(&Network::Dhcp {
            interface: Some("eth0/x".into()),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("interface"), "{e}");
    }

    const DOC: &str = r#"{
      "version": 4, "name": "worker", "unpacked_bytes": 1000,
      "segments": [{"name": "base", "sentinel": "/.diskless/segments/base", "content": "ab"},
                   {"name": "kube-proxy", "sentinel": "/.diskless/segments/kube-proxy", "content": "cd",
                    "squashfs": "/.diskless/squashfs/kube-proxy.sqfs",
                    "condition_path": "/.diskless/node/kubelet/bootstrap-kubeconfig"}],
      "modules": [{"name": "virtio_net", "path": "/lib/modules/x/virtio_net.ko", "optional": false}],
      "sysctls": {"net.ipv4.ip_forward": "1"},
      "cgroup_controllers": ["cpu", "memory"],
      "network": {"mode": "static", "address": "10.0.0.5/24", "dns": ["10.0.0.1"]},
      "services": [{"name": "containerd", "command": ["/usr/bin/containerd"], "env": {},
                    "ready_path": "/run/containerd/containerd.sock", "condition_path": null,
                    "restart": true, "role": "container-runtime"}],
      "images": [{"name": "pause", "index": "/var/lib/diskless/oci/pause.index.json",
                  "blobs": ["sha256:0000000000000000000000000000000000000000000000000000000000000000"], "refs": ["registry.k8s.io/pause:3.6"]}]
    }"#;

    #[test]
    fn parses_the_documented_example() {
        let c = ImageContract::parse(DOC).unwrap();
        assert_eq!(c.segments[0].name, "base");
        assert_eq!(
            c.network,
            Network::Static {
                interface: None,
                address: "10.0.0.5/24".into(),
                gateway: None,
                dns: vec!["10.0.0.1".into()]
            }
        );
        assert!(c.services[0].restart);
        assert_eq!(
            c.service(Role::ContainerRuntime).map(|s| s.name.as_str()),
            Some("containerd")
        );
        assert!(c.service(Role::Kubelet).is_none());
        assert_eq!(c.images[0].refs, ["registry.k8s.io/pause:3.6"]);
        assert_eq!(
            c.segments[1].condition_path.as_deref(),
            Some("/.diskless/node/kubelet/bootstrap-kubeconfig")
        );
        assert!(c.segments[0].wanted(|_| false));
        assert!(!c.segments[1].wanted(|_| false));
        assert!(c.segments[1].wanted(|p| p.ends_with("bootstrap-kubeconfig")));
    }

    /// The init refuses a segment condition the builder would have refused.
    #[test]
    fn segment_conditions_are_checked() {
        let doc = DOC.replace(
            "\"/.diskless/node/kubelet/bootstrap-kubeconfig\"",
            "\"node/kubelet/bootstrap-kubeconfig\"",
        );
        let e = ImageContract::parse(&doc).unwrap_err().to_string();
        assert!(e.contains("kube-proxy") && e.contains("absolute"), "{e}");
        let doc = DOC.replace("\"squashfs\": \"/.diskless/squashfs/kube-proxy.sqfs\",", "");
        let e = ImageContract::parse(&doc).unwrap_err().to_string();
        assert!(e.contains("kube-proxy") && e.contains("no squashfs"), "{e}");
    }

    /// What the builder writes is what the init reads: every field survives the round trip.
    #[test]
    fn round_trips() {
        let c = ImageContract::parse(DOC).unwrap();
        let text = serde_json::to_string_pretty(&c).unwrap();
        assert_eq!(ImageContract::parse(&text).unwrap(), c);
    }

    #[test]
    fn other_versions_are_refused() {
        for v in [3, 5] {
            let e = ImageContract::parse(&format!(r#"{{"version": {v}, "new": 1}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("has version {v}")), "{e}");
        }
        for (v, why) in [
            ("-1", "out of range"),
            ("1e40", "out of range"),
            ("\"2\"", "not a number"),
        ] {
            let e = ImageContract::parse(&format!(r#"{{"version": {v}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.contains(CONTRACT_PATH), "{v}: {e}");
        }
        let e = ImageContract::parse("{}").unwrap_err().to_string();
        assert!(e.contains("missing field `version`"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let doc = DOC.replacen("\"name\": \"worker\"", "\"name\": \"worker\", \"x\": 1", 1);
        assert!(ImageContract::parse(&doc)
            .unwrap_err()
            .to_string()
            .contains("unknown field `x`"));
    }

    /// The init refuses what the builder would have refused: a malformed ref or blob digest.
    #[test]
    fn image_refs_and_blobs_are_checked() {
        for (from, to, why) in [
            (
                "registry.k8s.io/pause:3.6",
                "registry.k8s.io/pause:t#x",
                "not a valid tag",
            ),
            (
                "registry.k8s.io/pause:3.6",
                "registry.k8s.io/pause@sha256:bad",
                "64 lowercase hex",
            ),
            (
                "registry.k8s.io/pause:3.6",
                "pause:3.6",
                "not fully qualified",
            ),
            (
                "registry.k8s.io/pause:3.6",
                "registry.k8s.io/Pause:3.6",
                "lowercase",
            ),
            (
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "sha256:../../../etc/passwd",
                "blob",
            ),
            (
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "sha256:00",
                "blob",
            ),
        ] {
            let doc = DOC.replace(from, to);
            let e = ImageContract::parse(&doc).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(CONTRACT_PATH), "{to:?}: {e}");
        }
    }

    #[test]
    fn relative_service_command_is_refused() {
        let doc = DOC.replace("[\"/usr/bin/containerd\"]", "[\"containerd\"]");
        assert!(ImageContract::parse(&doc)
            .unwrap_err()
            .to_string()
            .contains("absolute path"));
        let doc = DOC.replace("[\"/usr/bin/containerd\"]", "[]");
        assert!(ImageContract::parse(&doc)
            .unwrap_err()
            .to_string()
            .contains("absolute path"));
    }

    #[test]
    fn a_role_is_held_once() {
        let svc = |name: &str| Service {
            name: name.into(),
            command: vec!["/usr/bin/x".into()],
            env: BTreeMap::new(),
            ready_path: None,
            condition_path: None,
            restart: true,
            role: Some(Role::ContainerRuntime),
        };
        let e = check_services(&[svc("containerd"), svc("crio")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("container-runtime") && e.contains("crio"), "{e}");
    }
}
