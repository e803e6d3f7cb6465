//! The image index: the one document that says what an image is (kernel, ordered segments,
//! command line, plan digest). It is itself stored content-addressed, and copied to the stable
//! name `<name>.json` so people and tools can find the current build.

use crate::store::object_path;
use crate::words::{Word, Words};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const INDEX_VERSION: u32 = 1;

/// Digests become paths (`objects/<hex>`) and words of iPXE scripts: one rule, the contract's.
pub use diskless_contract::digest::{is_sha256_hex, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{} does not exist: is the image name right?", path.display())]
    NoImage { path: PathBuf },
    #[error("{} does not exist: give the output directory of `diskless build`", dir.display())]
    NoDir { dir: PathBuf },
    #[error("cannot read image index {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} is not an image index of version {INDEX_VERSION}: {cause}", path.display())]
    Parse {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub version: u32,
    /// Image names and descriptions, like the command line, are written into iPXE scripts.
    pub name: Word,
    pub description: Words,
    pub kernel: Artifact,
    /// The kernel command line (without per-node additions).
    pub cmdline: Words,
    /// In boot order: `manifest` first, then components, then images.
    pub segments: Vec<SegmentArtifact>,
    /// The single concatenated initrd (`--single-initrd`), each segment padded to 4 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<Artifact>,
    /// sha256 of the plan's canonical JSON.
    #[serde(deserialize_with = "sha256_hex")]
    pub plan_sha256: String,
}

/// A stored object: `objects/<sha256>` relative to the output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    #[serde(deserialize_with = "sha256_hex")]
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentArtifact {
    pub name: String,
    #[serde(deserialize_with = "sha256_hex")]
    pub sha256: String,
    /// Compressed size: what travels over the network.
    pub size: u64,
    /// Sum of the sizes of the files inside.
    pub unpacked_size: u64,
    pub files: u64,
    /// `zstd-10`, `gzip-6` or `none`.
    pub compression: String,
    /// The segment's sentinel content (sha256 of its entries before the sentinel).
    pub content: String,
}

impl Artifact {
    /// Path of the object relative to the output directory.
    pub fn object_path(&self) -> String {
        object_path(&self.sha256)
    }
}

impl SegmentArtifact {
    pub fn object_path(&self) -> String {
        object_path(&self.sha256)
    }
}

/// One object an index refers to: what it is (for messages), its digest, its size.
pub struct ObjectRef<'a> {
    pub what: String,
    pub sha256: &'a str,
    pub size: u64,
}

impl Index {
    /// Every object the image needs, besides the index itself: kernel, segments, single initrd.
    pub fn objects(&self) -> Vec<ObjectRef<'_>> {
        let mut refs = vec![ObjectRef {
            what: "kernel".into(),
            sha256: &self.kernel.sha256,
            size: self.kernel.size,
        }];
        refs.extend(self.segments.iter().map(|s| ObjectRef {
            what: format!("segment {}", s.name),
            sha256: &s.sha256,
            size: s.size,
        }));
        refs.extend(self.initrd.iter().map(|i| ObjectRef {
            what: "single initrd".into(),
            sha256: &i.sha256,
            size: i.size,
        }));
        refs
    }

    /// Reads `<name>.json` (or an index object); a missing file says which of the two names
    /// (the image's or the directory) is wrong.
    pub fn load(path: &Path) -> Result<Index, IndexError> {
        let text = match crate::store::read_regular_text(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(Path::new("."));
                if dir.as_os_str().is_empty() || dir.is_dir() {
                    return Err(IndexError::NoImage {
                        path: path.to_owned(),
                    });
                }
                return Err(IndexError::NoDir {
                    dir: dir.to_owned(),
                });
            }
            Err(cause) => {
                return Err(IndexError::Read {
                    path: path.to_owned(),
                    cause,
                })
            }
        };
        serde_json::from_str(&text).map_err(|cause| IndexError::Parse {
            path: path.to_owned(),
            cause,
        })
    }
}
