//! The build plan, format v1: what the Nix modules (or `diskless plan --host`) write and the
//! builder reads. This is the contract between the layers; `docs/plan.md` documents every field.
//!
//! These types mirror the JSON exactly (`deny_unknown_fields` everywhere) so that a typo in a
//! plan is an error, not a silently ignored setting. Checks that need more than one field, or the
//! filesystem, live in `resolve/`, which turns a `Plan` into a checked `ResolvedImage`.

use crate::words::Words;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The only plan format this builder reads.
pub const PLAN_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read at all.
    #[error("cannot read plan {path}: {cause}")]
    Read {
        path: PathBuf,
        /// Not `source`: the message already holds it, and `{:#}` would print it twice.
        cause: std::io::Error,
    },
    /// serde_json's message already names the field and the line/column.
    #[error("invalid plan {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "plan {path} has \"version\": {found}; this builder reads version {PLAN_VERSION} (see docs/plan.md)"
    )]
    Version { path: PathBuf, found: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Must be 1.
    pub version: u32,
    /// Image name: names `<name>.json`, `<name>.ipxe` and `<name>.initrd` in the output.
    pub name: String,
    /// One line for menus and `inspect` (written into iPXE scripts: `words.rs`).
    #[serde(default)]
    pub description: Words,
    pub kernel: Kernel,
    #[serde(default)]
    pub compression: Compression,
    /// Block codec of every squashfs-packed segment (a component may override it); absent:
    /// [`SquashfsCompression::default`].
    #[serde(default, skip_serializing_if = "SquashfsCompression::is_default")]
    pub squashfs: SquashfsCompression,
    /// Ordered: each becomes one cpio segment, in this order.
    pub components: Vec<Component>,
    /// Container images preloaded into containerd (each becomes its own segment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PreloadImage>,
    /// What the node's init does at boot; passed to it in `/.diskless/image.json`.
    #[serde(default)]
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// The kernel image (bzImage) to boot.
    pub image: PathBuf,
    /// The module tree of that kernel (`/lib/modules/<version>`), used to resolve
    /// `components[].modules`. Required when any component names a module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules_dir: Option<PathBuf>,
    /// The kernel command line written into the iPXE entry and the index.
    #[serde(default)]
    pub cmdline: Words,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Zstd,
    Gzip,
    /// Uncompressed cpio: for segments whose content is already compressed.
    None,
}

/// How a component's files travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Packing {
    /// Every file as a cpio entry the kernel unpacks into RAM.
    #[default]
    Cpio,
    /// Files under `/usr` and `/nix/store` in one squashfs image the init mounts read-only
    /// (needs the `loop`, `squashfs` and `overlay` modules); the rest stays cpio.
    Squashfs,
}

impl Packing {
    fn is_cpio(&self) -> bool {
        *self == Packing::Cpio
    }
}

/// The block codec of a squashfs image. The kernel decompresses a block on the first read of
/// any page in it, so this trades download size against decompression at boot
/// (docs/performance.md). Only codecs that win one of those trades are offered: gzip and xz
/// lose on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SquashfsAlgorithm {
    /// LZ4 at high compression: the fastest to decompress, the largest.
    Lz4hc,
    /// zstd: 25 % smaller than LZ4-HC, about twice the decompression work.
    Zstd,
}

impl Default for SquashfsAlgorithm {
    /// The default setting's: an object that names only a level means that algorithm.
    fn default() -> Self {
        SquashfsCompression::default().algorithm
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SquashfsCompression {
    #[serde(default)]
    pub algorithm: SquashfsAlgorithm,
    /// lz4hc 1..=12, zstd 1..=22 (checked in `squashfs/codec.rs`); absent: the algorithm's own
    /// default (lz4hc 9, zstd 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

/// The one definition of the squashfs default, whoever writes the plan: the CLI's
/// `--squashfs-codec` defaults to it, the Nix option `squashfs` reads it from
/// `data/defaults.json` (a test holds the two equal), and a plan without `squashfs` means it.
impl Default for SquashfsCompression {
    /// zstd at level 3: the smaller download and RAM (images stay compressed in RAM) and the
    /// faster build, the same boot as LZ4-HC on real hardware at 1 GbE; LZ4-HC wins only under
    /// emulation and on slow CPUs (docs/performance.md).
    fn default() -> Self {
        SquashfsCompression {
            algorithm: SquashfsAlgorithm::Zstd,
            level: Some(3),
        }
    }
}

impl SquashfsCompression {
    /// Left out of the canonical JSON when default: the same image has the same plan digest
    /// whether its plan spelled the default out or not.
    fn is_default(&self) -> bool {
        *self == SquashfsCompression::default()
    }
}

/// `zstd-3`, `lz4hc`: the command line's spelling (`--squashfs-codec`).
impl std::fmt::Display for SquashfsCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.algorithm {
            SquashfsAlgorithm::Lz4hc => "lz4hc",
            SquashfsAlgorithm::Zstd => "zstd",
        };
        match self.level {
            Some(level) => write!(f, "{name}-{level}"),
            None => f.write_str(name),
        }
    }
}

/// `zstd`, `zstd-19`, `lz4hc-12`; the level's range is checked with the plan, in one place.
impl std::str::FromStr for SquashfsCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, level) = match s.split_once('-') {
            Some((name, level)) => (
                name,
                Some(
                    level
                        .parse()
                        .map_err(|_| format!("level {level:?} is not a number"))?,
                ),
            ),
            None => (s, None),
        };
        let algorithm = match name {
            "lz4hc" => SquashfsAlgorithm::Lz4hc,
            "zstd" => SquashfsAlgorithm::Zstd,
            _ => return Err(format!("{name:?} is not lz4hc or zstd")),
        };
        Ok(SquashfsCompression { algorithm, level })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    #[serde(default)]
    pub algorithm: Algorithm,
    /// zstd 1..=19, gzip 0..=9; the default is chosen per algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    /// zstd only: window of 2^N bytes with long-distance matching (10..=27), or 0 for off.
    /// The default (24, 16 MiB) finds repeats across binaries that share Go runtime code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_log: Option<u32>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithm: Algorithm::Zstd,
            level: None,
            window_log: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Segment name: `[a-z0-9][a-z0-9._-]*`, unique in the plan.
    pub name: String,
    /// Overrides the plan-wide compression for this segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// `cpio` (default) or `squashfs`: see [`Packing`].
    #[serde(default, skip_serializing_if = "Packing::is_cpio")]
    pub packing: Packing,
    /// Overrides the plan-wide `squashfs` codec; only with `packing: squashfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub squashfs: Option<SquashfsCompression>,
    /// Mounted only where this absolute path exists at boot, like an image's `condition_path`;
    /// elsewhere the init deletes the squashfs image unmounted and its RAM is free. Only with
    /// `packing: squashfs` (a cpio segment is unpacked before the init runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_path: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<DirEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symlinks: Vec<SymlinkEntry>,
    /// Files whose contents are given inline (generated configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<GeneratedEntry>,
    /// Executables whose ELF shared-library closure is resolved and copied too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binaries: Vec<BinaryEntry>,
    /// Directory trees copied recursively (e.g. a Nix store path, a CNI plugin dir).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<TreeEntry>,
    /// Kernel modules by name or alias; dependencies and softdeps are added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub source: PathBuf,
    pub dest: String,
    /// Octal string such as "0644"; default: 0755 if the source is executable, else 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirEntry {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkEntry {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratedEntry {
    pub dest: String,
    pub contents: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryEntry {
    pub source: PathBuf,
    /// Where the binary lands; default: the same path as `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeEntry {
    pub source: PathBuf,
    /// Where the tree lands; default: the same path as `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreloadImage {
    /// Segment name (`image-<name>`), unique among images.
    pub name: String,
    /// docker-archive tar, OCI archive tar or OCI layout directory.
    pub archive: PathBuf,
    /// References the image carries inside containerd, e.g. `registry.k8s.io/pause:3.6`.
    pub refs: Vec<String>,
    /// Labels each ref gets on import, e.g. `{"io.cri-containerd.pinned": "pinned"}` so the
    /// kubelet's image GC never removes it (containerd ≥ 1.7).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Import it after the kubelet has started (default: before). Only for an image that is
    /// neither the sandbox (pause) nor used by a static pod: a pod scheduled to it meanwhile
    /// waits for the kubelet's retry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
    /// Import it only where this absolute path exists at boot, like a service's
    /// `condition_path`; e.g. the cluster DNS only where the node joins (its bootstrap
    /// kubeconfig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition_path: Option<String>,
}

/// What the init does at boot. The builder copies this into `/.diskless/image.json` after
/// adding what only it knows (segments, module load order, unpacked size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Written to `/proc/sys` after modules load, e.g. `"net.ipv4.ip_forward": "1"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// cgroup v2 controllers enabled in the root `cgroup.subtree_control`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup_controllers: Vec<String>,
    #[serde(default)]
    pub network: Network,
    /// Started in order, each after the previous one is ready; stopped in reverse order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// The node's network and services are the contract's own types: the builder passes them to
/// the init unchanged.
pub use diskless_contract::image::{Network, Role, Service};

/// A file mode written as an octal string ("0755") in JSON, since JSON has no octal numbers
/// and Nix users write modes that way (`environment.etc.<name>.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode(pub u32);

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bits = u32::from_str_radix(&s, 8).map_err(|_| {
            serde::de::Error::custom(format!("mode {s:?} is not an octal string like \"0644\""))
        })?;
        if bits > 0o7777 {
            return Err(serde::de::Error::custom(format!(
                "mode {s:?} has bits beyond 07777; give permission bits only"
            )));
        }
        Ok(Mode(bits))
    }
}

impl Plan {
    /// Reads and parses a plan file; errors carry the path and serde's line/column.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = crate::store::read_regular_text(path).map_err(|cause| PlanError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Plan::parse(&text, path)
    }

    /// Parses plan text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Plan, PlanError> {
        // Check the version first so that a v2 plan gets "wrong version", not a confusing
        // "unknown field" about whatever v2 added.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| PlanError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        match diskless_contract::version::document_version(&value) {
            Ok(v) if v == PLAN_VERSION as u64 => {}
            Ok(found) => {
                return Err(PlanError::Version {
                    path: path.to_owned(),
                    found,
                })
            }
            Err(e) => {
                return Err(PlanError::Parse {
                    path: path.to_owned(),
                    message: format!("{e}; this builder reads version {PLAN_VERSION}"),
                })
            }
        }
        // Parse from the text again (not the Value) so errors keep line and column, and name
        // the field (`kernel.cmdline: …`).
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| PlanError::Parse {
            path: path.to_owned(),
            message: match e.path().to_string().as_str() {
                "." => e.inner().to_string(),
                field => format!("{field}: {}", e.inner()),
            },
        })
    }

    /// Canonical JSON of the plan: the input of the plan digest in the index.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).expect("plan serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Plan, PlanError> {
        Plan::parse(s, Path::new("test.json"))
    }

    const MINIMAL: &str = r#"{"version":1,"name":"t","kernel":{"image":"/k"},"components":[]}"#;

    #[test]
    fn minimal_plan_parses_with_defaults() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.compression.algorithm, Algorithm::Zstd);
        // Without the setting, the one default (zstd-3, as the CLI and the Nix option write).
        assert_eq!(p.squashfs, SquashfsCompression::default());
        assert_eq!(p.squashfs.algorithm, SquashfsAlgorithm::Zstd);
        // A plan without the setting keeps the canonical JSON (and so the digest) it had.
        assert!(!p.canonical_json().contains("squashfs"));
        assert_eq!(p.node.network, Network::Dhcp { interface: None });
    }

    #[test]
    fn unknown_field_is_named() {
        let e =
            parse(r#"{"version":1,"name":"t","kernel":{"image":"/k"},"components":[],"colour":1}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn unusable_versions_are_not_called_missing() {
        for (v, why) in [
            ("-1", "out of range"),
            ("1.5", "out of range"),
            ("99999999999999999999", "out of range"),
            ("4294967296", "out of range"),
            ("\"1\"", "not a number"),
            ("null", "not a number"),
        ] {
            let e = parse(&format!(r#"{{"version":{v}}}"#))
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && !e.contains("missing"), "{v}: {e}");
        }
        let e = parse("{}").unwrap_err().to_string();
        assert!(e.contains("missing field `version`"), "{e}");
    }

    #[test]
    fn wrong_version_is_reported_as_such() {
        let e = parse(r#"{"version":2,"whatever":true}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"version\": 2"), "{e}");
    }

    #[test]
    fn malformed_json_has_line_and_column() {
        let e = parse("{\"version\": 1,\n  \"name\": }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn modes_are_octal_strings() {
        let p = parse(
            r#"{"version":1,"name":"t","kernel":{"image":"/k"},"components":[
            {"name":"c","generated":[{"dest":"/a","contents":"x","mode":"0600"}]}]}"#,
        )
        .unwrap();
        assert_eq!(p.components[0].generated[0].mode, Some(Mode(0o600)));
        let e = parse(
            r#"{"version":1,"name":"t","kernel":{"image":"/k"},"components":[
            {"name":"c","generated":[{"dest":"/a","contents":"x","mode":"rw"}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("octal"), "{e}");
    }

    #[test]
    fn squashfs_codec_parses_plan_wide_and_per_component() {
        let p = parse(
            r#"{"version":1,"name":"t","kernel":{"image":"/k"},"squashfs":{"algorithm":"zstd","level":15},
            "components":[{"name":"c","packing":"squashfs","squashfs":{"algorithm":"lz4hc"}}]}"#,
        )
        .unwrap();
        assert_eq!(p.squashfs.algorithm, SquashfsAlgorithm::Zstd);
        assert_eq!(p.squashfs.level, Some(15));
        assert_eq!(
            p.components[0].squashfs.unwrap().algorithm,
            SquashfsAlgorithm::Lz4hc
        );
        assert_eq!(parse(&p.canonical_json()).unwrap(), p);
        let e = parse(
            r#"{"version":1,"name":"t","kernel":{"image":"/k"},"squashfs":{"algorithm":"xz"},"components":[]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("squashfs.algorithm") && e.contains("lz4hc"),
            "{e}"
        );
    }

    /// The Nix option `squashfs` defaults to `data/defaults.json`: the same setting.
    #[test]
    fn defaults_json_is_the_squashfs_default() {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../data/defaults.json")).unwrap();
        let mut squashfs = json["squashfs"].clone();
        squashfs.as_object_mut().unwrap().remove("why");
        assert_eq!(
            serde_json::from_value::<SquashfsCompression>(squashfs).unwrap(),
            SquashfsCompression::default()
        );
    }

    #[test]
    fn squashfs_codec_spelling_round_trips() {
        for s in ["zstd-3", "zstd", "lz4hc-12"] {
            assert_eq!(s.parse::<SquashfsCompression>().unwrap().to_string(), s);
        }
        assert_eq!(
            SquashfsCompression::default()
                .to_string()
                .parse::<SquashfsCompression>(),
            Ok(SquashfsCompression::default())
        );
        assert!("xz-3".parse::<SquashfsCompression>().is_err());
        assert!("zstd-x".parse::<SquashfsCompression>().is_err());
    }

    #[test]
    fn canonical_json_round_trips() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(parse(&p.canonical_json()).unwrap(), p);
    }
}
