//! The builder → init contract: one versioned JSON document written at a fixed path inside the
//! image, `/.diskless/image.json`. The init (a separate binary that shares no code with the
//! builder) keeps its own copy of these types; `docs/image-contract.md` is the reference both
//! follow. It carries what only the builder knows (segments and their sentinels, the module load
//! order, the unpacked size) plus the plan's `node` section, unchanged.

use crate::plan::{Network, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CONTRACT_VERSION: u32 = 1;
/// Where the contract lives inside the image.
pub const CONTRACT_PATH: &str = "/.diskless/image.json";
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
    pub sysctls: BTreeMap<String, String>,
    pub cgroup_controllers: Vec<String>,
    pub network: Network,
    pub services: Vec<Service>,
    /// Preloaded container images, imported into containerd before the services after it.
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRef {
    pub name: String,
    /// Absolute path of the `.ko` inside the image.
    pub path: String,
    /// True for modules pulled in through a softdep alias (e.g. `crc32c_intel`), which may
    /// legitimately fail on a CPU without the feature: the init warns and goes on.
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
}
