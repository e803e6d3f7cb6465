//! Container images preloaded into the image: ingest image archives (docker-archive, OCI
//! archive, OCI layout), verify every blob, deduplicate blobs across images and turn each image
//! into its own segment; and `diskless oci build`, which makes small images from a directory.
//!
//! One file per concern: `archive` (tar/dir access and hostile-archive checks), `verify`
//! (digests), `layout` (OCI index → linux/amd64 manifest), `docker` (docker-archive → OCI
//! manifest), `segment` (blob pool, dedupe, index file), `build` (`oci build`), `reference`
//! (the reference worker's busybox-made images). `docs/images.md` is the user's guide.

mod archive;
mod build;
mod docker;
mod layout;
mod reference;
mod segment;
mod verify;

pub use archive::default_cache_dir;
pub use build::{build_from_dir, BuildSpec, BuildSummary, LayerCompression};
pub use reference::{host_reference_images, PAUSE_REF, WORKLOAD_REF};
pub use segment::{check_ref, image_segments_with_cache, BLOB_POOL, OCI_DIR};

use crate::plan::{Algorithm, Compression, PreloadImage};
use crate::resolve::{Content, EntryKind};
use clap::{Args, Subcommand};
use oci_spec::image::{Arch, Os, Platform, PlatformBuilder};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One segment per image: its tree (blobs under /var/lib/diskless/oci/blobs/sha256/<hex>, plus the
/// image's index file), deduplicated against the images before it, and the contract entry.
pub struct ImageSegment {
    pub segment_name: String,
    pub tree: crate::resolve::Tree,
    pub contract: crate::contract::ImageRef,
}

/// Segments for the plan's `images[]`, in order, using the blob cache at [`default_cache_dir`]
/// for tar archives. Errors name the plan entry, its archive and the blob or entry at fault.
pub fn image_segments(images: &[PreloadImage]) -> anyhow::Result<Vec<ImageSegment>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    image_segments_with_cache(images, &default_cache_dir()?)
}

/// Image segments are mostly layers that are already gzip/zstd: zstd at level 1 stores those
/// at ≈ no cost (incompressible blocks are kept raw) and still shrinks uncompressed layers
/// (nixpkgs `dockerTools` and `docker save` layers are plain tar). Measured in docs/images.md.
pub fn default_compression() -> Compression {
    Compression {
        algorithm: Algorithm::Zstd,
        level: Some(1),
    }
}

/// A blob of an ingested image: its digest, where its bytes are, and what it is (for messages).
pub(crate) struct Blob {
    pub hex: String,
    pub content: Content,
    pub what: String,
}

/// An image read from an archive: the manifest descriptor for its index, and its blobs
/// (manifest, config, layers), every one verified.
pub(crate) struct Ingested {
    pub manifest: oci_spec::image::Descriptor,
    pub blobs: Vec<Blob>,
}

fn linux_amd64() -> Platform {
    PlatformBuilder::default()
        .os(Os::Linux)
        .architecture(Arch::Amd64)
        .build()
        .expect("os and architecture are all a platform needs")
}

#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Make a single-layer OCI archive from a directory (reproducible; no registry needed).
    Build(BuildArgs),
    /// Show what the plan's images become: segments, blobs, sizes and the dedupe saving.
    Segments {
        /// The build plan whose `images[]` to read.
        #[arg(long)]
        plan: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory whose contents become the image's root filesystem.
    #[arg(long)]
    from: PathBuf,
    /// Reference the image carries, e.g. docker.io/library/busybox:mine.
    #[arg(long = "ref")]
    reference: String,
    /// Output OCI archive (tar).
    #[arg(long)]
    out: PathBuf,
    /// Entrypoint: a JSON array (`'["/bin/sh","-c","echo hi"]'`), or repeat the flag once per
    /// argument.
    #[arg(long, allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// Default arguments (Cmd): a JSON array, or repeat the flag once per argument.
    #[arg(long, allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Environment variable KEY=VALUE (repeatable); PATH defaults to the usual one.
    #[arg(long)]
    env: Vec<String>,
    /// How to store the layer.
    #[arg(long, value_enum, default_value_t = LayerCompression::None)]
    layer: LayerCompression,
    /// Modification time of every entry.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u64,
}

/// `["a","b"]` as a JSON array, else each flag occurrence is one argument.
fn argv(values: &[String], flag: &str) -> anyhow::Result<Option<Vec<String>>> {
    match values {
        [] => Ok(None),
        [one] if one.trim_start().starts_with('[') => serde_json::from_str(one)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{flag} {one:?} is not a JSON array of strings: {e}")),
        many => Ok(Some(many.to_vec())),
    }
}

pub fn main(cmd: &OciCommand) -> anyhow::Result<()> {
    match cmd {
        OciCommand::Build(a) => {
            let spec = BuildSpec {
                reference: a.reference.clone(),
                entrypoint: argv(&a.entrypoint, "--entrypoint")?,
                cmd: argv(&a.cmd, "--cmd")?,
                env: a.env.clone(),
                layer: a.layer,
                mtime: a.mtime,
            };
            let summary = build_from_dir(&a.from, &spec, &a.out)?;
            println!(
                "{} {} ({} bytes, layer {} bytes) -> {}",
                summary.reference,
                summary.manifest,
                summary.archive_bytes,
                summary.layer_bytes,
                a.out.display()
            );
            Ok(())
        }
        OciCommand::Segments { plan } => {
            let plan = crate::plan::Plan::load(plan)?;
            let segments = image_segments(&plan.images)?;
            print_segments(&plan.images, &segments)
        }
    }
}

/// Per segment: bytes stored in it vs bytes its image needs; then the total saving.
fn print_segments(images: &[PreloadImage], segments: &[ImageSegment]) -> anyhow::Result<()> {
    let mut pool: BTreeMap<String, u64> = BTreeMap::new();
    for seg in segments {
        for (path, entry) in &seg.tree.entries {
            if let (Some(hex), EntryKind::File(c)) =
                (path.strip_prefix(&format!("{BLOB_POOL}/")), &entry.kind)
            {
                pool.insert(format!("sha256:{hex}"), c.size());
            }
        }
    }
    let (mut archives, mut needed, mut stored) = (0u64, 0u64, 0u64);
    for (image, seg) in images.iter().zip(segments) {
        let archive = dir_or_file_size(&image.archive);
        let need: u64 = seg.contract.blobs.iter().map(|b| pool[b]).sum();
        let store: u64 = seg
            .tree
            .entries
            .values()
            .filter_map(|e| match &e.kind {
                EntryKind::File(c) => Some(c.size()),
                _ => None,
            })
            .sum();
        println!(
            "{:<24} archive {:>12}  needs {:>12} in {:>3} blobs  stores {:>12}",
            seg.segment_name,
            archive,
            need,
            seg.contract.blobs.len(),
            store
        );
        archives += archive;
        needed += need;
        stored += store;
    }
    println!("total: archives {archives} bytes, blobs needed {needed}, stored {stored} (dedupe saved {})", needed.saturating_sub(stored));
    Ok(())
}

fn dir_or_file_size(path: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
