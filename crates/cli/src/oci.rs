//! `diskless oci …`: argument parsing and printing only; the work is in the `oci` crate.

use clap::{Args, Subcommand};
use diskless_builder::plan::PreloadImage;
use diskless_builder::tree::EntryKind;
use diskless_oci::{
    build_from_dir, image_segments, BuildSpec, ImageSegment, LayerCompression, BLOB_POOL,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    #[arg(long, value_enum, default_value_t = LayerArg::None)]
    layer: LayerArg,
    /// Modification time of every entry.
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    mtime: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LayerArg {
    /// Plain tar: best when the image segment is compressed anyway.
    None,
    /// gzip level 6, the format every runtime accepts.
    Gzip,
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
                layer: match a.layer {
                    LayerArg::None => LayerCompression::None,
                    LayerArg::Gzip => LayerCompression::Gzip,
                },
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
            let plan = diskless_builder::plan::Plan::load(plan)?;
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
