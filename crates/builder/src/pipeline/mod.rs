//! `diskless build`: [`build`] runs the steps in order, each a function below; `jobs` writes
//! and compresses the segments in parallel, `output` is the only step that writes.
//!
//! Order of effects: everything is computed in memory first (resolution, every segment, the
//! manifest, the index); only then is the output directory touched, objects first and the
//! human-facing names (`<name>.json`, `<name>.ipxe`) last, each atomically. A failure while
//! writing removes what this build added, so the output directory is never half-updated.

mod jobs;
mod output;

pub use jobs::JobError;
pub use output::{write_atomic, OutputError, WriteError};

use crate::compress::{Codec, CompressError};
use crate::index::{Artifact, Index, SegmentArtifact, INDEX_VERSION};
use crate::plan::Plan;
use crate::preload::{PreloadError, Preloader};
use crate::resolve::{Packed, ResolveError, ResolvedImage};
use crate::store::{sha256_hex, Cache};
use crate::tree::{Content, Entry, EntryKind, Tree};
use crate::words::{BaseUrl, Word};
use diskless_contract::image::{
    ImageContract, ImageRef, SegmentRef, CONTRACT_PATH, CONTRACT_VERSION,
};
use jobs::{Done, Job};
use output::Output;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970 that fits 32 bits: {cause}"
    )]
    SourceDateEpoch {
        value: String,
        cause: std::num::ParseIntError,
    },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The preloader's own error names the plan entry, its archive and the blob at fault.
    #[error(transparent)]
    Preload(PreloadError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(
        "image {name} unpacks to {bytes} bytes, over 2 GiB (iPXE's practical ceiling, and the node needs it in RAM); trim the plan or pass --allow-large"
    )]
    TooLarge { name: String, bytes: u64 },
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("kernel.image: cannot read {}: {cause}", path.display())]
    Kernel {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The plan's name, checked by resolve, failed the iPXE word check.
    #[error("name: {0}")]
    Name(String),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// iPXE's practical ceiling on what it loads into memory.
pub const LARGE_IMAGE_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory (created if missing); objects already there are reused.
    pub out: PathBuf,
    /// Prefix for the URLs in `<name>.ipxe`: empty for URLs relative to the script, or e.g.
    /// `http://boot.lab/images/` (must end with '/').
    pub base_url: BaseUrl,
    /// Also store the concatenated single-file initrd (each segment padded to 4 bytes), for boot
    /// loaders that take one file.
    pub single_initrd: bool,
    /// Allow an image over 2 GiB (iPXE's practical ceiling).
    pub allow_large: bool,
    /// Threads for segment writing and compression (default: all cores). Never changes the output.
    pub jobs: Option<usize>,
    /// Segment cache directory (default: $XDG_CACHE_HOME/diskless or ~/.cache/diskless).
    pub cache_dir: Option<PathBuf>,
    /// Compress every segment afresh.
    pub no_cache: bool,
}

impl BuildOptions {
    pub fn new(out: &Path) -> BuildOptions {
        BuildOptions {
            out: out.to_owned(),
            base_url: BaseUrl::default(),
            single_initrd: false,
            allow_large: false,
            jobs: None,
            cache_dir: None,
            no_cache: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub out: PathBuf,
    /// sha256 of the index: the image's identity.
    pub index: String,
    pub kernel: Artifact,
    pub segments: Vec<SegmentReport>,
    /// Bytes a machine downloads (kernel + segments).
    pub total_size: u64,
    pub unpacked_size: u64,
    pub ipxe: PathBuf,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SegmentReport {
    #[serde(flatten)]
    pub segment: SegmentArtifact,
    /// True when the compressed bytes came from the cache.
    pub cached: bool,
}

impl BuildReport {
    pub fn print_summary(&self) {
        println!(
            "built {} → {} (index {})",
            self.name,
            self.ipxe.display(),
            &self.index[..16]
        );
        println!(
            "  {:<24} {:>12} {:>12} {:>7}  compression",
            "segment", "size", "unpacked", "files"
        );
        for r in &self.segments {
            let s = &r.segment;
            println!(
                "  {:<24} {:>12} {:>12} {:>7}  {}{}",
                s.name,
                s.size,
                s.unpacked_size,
                s.files,
                s.compression,
                if r.cached { " (cached)" } else { "" }
            );
        }
        println!(
            "  kernel {} bytes; download {} bytes; unpacked {} bytes; {:.2} s",
            self.kernel.size, self.total_size, self.unpacked_size, self.seconds
        );
    }
}

/// Builds `plan` into `options.out`.
pub fn build(
    plan: &Plan,
    options: &BuildOptions,
    preloader: &dyn Preloader,
) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let mtime = source_date_epoch()?;
    let image = crate::resolve::resolve(plan)?;
    let (jobs, image_refs) = plan_jobs(&image, preloader)?;
    check_size(&image.name, &jobs, options.allow_large)?;
    let cache = open_cache(options);
    let (segments, mut warnings) = jobs::run(jobs, threads(options), mtime, &cache)?;
    warnings.extend(missing_init(&image));
    let contract = contract(&image, &segments, image_refs);
    let (manifest, w) = manifest(&contract, image.codec, mtime, &cache)?;
    warnings.extend(w);
    let segments: Vec<Done> = std::iter::once(manifest).chain(segments).collect();
    let kernel = read_kernel(&image.kernel)?;
    let single = options.single_initrd.then(|| single_initrd(&segments));
    let index = index(&image, &kernel, &segments, single.as_deref())?;
    let script = ipxe_entry(&index, &options.base_url);
    write_output(
        &options.out,
        &kernel,
        &segments,
        single.as_deref(),
        &index,
        &script,
    )?;
    let IndexObject { index, sha256, .. } = index;
    Ok(BuildReport {
        name: image.name.clone(),
        out: options.out.clone(),
        index: sha256,
        total_size: kernel.artifact.size + index.segments.iter().map(|s| s.size).sum::<u64>(),
        unpacked_size: contract.unpacked_bytes,
        kernel: kernel.artifact,
        segments: segments
            .iter()
            .zip(&index.segments)
            .map(|(d, s)| SegmentReport {
                segment: s.clone(),
                cached: d.cached,
            })
            .collect(),
        ipxe: options.out.join(format!("{}.ipxe", image.name)),
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The one mtime of every entry: `SOURCE_DATE_EPOCH` when set (reproducible-builds.org
/// convention), else 0, so that a build never depends on when it ran.
fn source_date_epoch() -> Result<u32, BuildError> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            v.trim()
                .parse::<u32>()
                .map_err(|cause| BuildError::SourceDateEpoch {
                    value: v.clone(),
                    cause,
                })
        }
        _ => Ok(0),
    }
}

/// Threads for the segment jobs: `--jobs`, else every core.
fn threads(options: &BuildOptions) -> usize {
    options
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// One job per component, in plan order, then one per preloaded image (with the images'
/// contract entries).
fn plan_jobs(
    image: &ResolvedImage,
    preloader: &dyn Preloader,
) -> Result<(Vec<Job>, Vec<ImageRef>), BuildError> {
    let mut jobs: Vec<Job> = image
        .components
        .iter()
        .map(|c| Job {
            name: c.name.clone(),
            codec: c.codec,
            packing: c.packing,
            condition_path: c.condition_path.clone(),
            tree: c.tree.clone(),
        })
        .collect();
    let image_segments = preloader
        .segments(&image.images)
        .map_err(BuildError::Preload)?;
    let image_codec = Codec::from_plan(&preloader.compression(), "images")?;
    let mut image_refs = Vec::new();
    for s in image_segments {
        image_refs.push(s.contract);
        jobs.push(Job {
            name: s.segment_name,
            codec: image_codec,
            packing: Packed::Cpio,
            condition_path: None,
            tree: s.tree,
        });
    }
    Ok((jobs, image_refs))
}

/// Refuses an image over [`LARGE_IMAGE_BYTES`] unpacked unless `--allow-large`.
fn check_size(name: &str, jobs: &[Job], allow_large: bool) -> Result<(), BuildError> {
    let bytes: u64 = jobs.iter().map(|j| j.tree.file_bytes()).sum();
    if bytes > LARGE_IMAGE_BYTES && !allow_large {
        return Err(BuildError::TooLarge {
            name: name.to_string(),
            bytes,
        });
    }
    Ok(())
}

/// The segment cache: `--cache-dir`, else the user's cache directory; none with `--no-cache`.
fn open_cache(options: &BuildOptions) -> Cache {
    Cache::new(if options.no_cache {
        None
    } else {
        options.cache_dir.clone().or_else(Cache::default_dir)
    })
}

/// The kernel runs /init from the initramfs; without one the node panics ("No working init
/// found"). A plan may want that (a test image), so this is said, not refused.
fn missing_init(image: &ResolvedImage) -> Option<String> {
    let has_init = image.components.iter().any(|c| {
        c.tree
            .entries
            .get("/init")
            .is_some_and(|e| !matches!(e.kind, EntryKind::Dir))
    });
    (!has_init).then(|| {
        "the image has no /init: the kernel will find nothing to run and panic; add the init \
         binary at /init (the host plan and the Nix modules do)"
            .into()
    })
}

/// What the init reads at boot: the segments in order, the modules, the node's settings.
fn contract(image: &ResolvedImage, segments: &[Done], images: Vec<ImageRef>) -> ImageContract {
    ImageContract {
        version: CONTRACT_VERSION,
        name: image.name.clone(),
        unpacked_bytes: segments.iter().map(|d| d.seg.unpacked_size).sum(),
        segments: segments
            .iter()
            .map(|d| SegmentRef {
                name: d.seg.name.clone(),
                sentinel: crate::segment::sentinel_path(&d.seg.name),
                content: d.seg.content.clone(),
                squashfs: d.squashfs.clone(),
                condition_path: d.condition_path.clone(),
            })
            .collect(),
        modules: image.modules.clone(),
        sysctls: image.node.sysctls.clone(),
        cgroup_controllers: image.node.cgroup_controllers.clone(),
        network: image.node.network.clone(),
        services: image.node.services.clone(),
        images,
    }
}

/// The manifest segment, first in boot order: the contract at [`CONTRACT_PATH`], which tells
/// the init what the other segments are.
fn manifest(
    contract: &ImageContract,
    codec: Codec,
    mtime: u32,
    cache: &Cache,
) -> Result<(Done, Vec<String>), BuildError> {
    let mut tree = Tree::default();
    tree.entries.insert(
        CONTRACT_PATH.to_string(),
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(to_json(contract)))),
            mode: 0o444,
            origin: "manifest".into(),
        },
    );
    let job = Job {
        name: "manifest".into(),
        codec,
        packing: Packed::Cpio,
        condition_path: None,
        tree,
    };
    let (mut done, warnings) = jobs::run(vec![job], 1, mtime, cache)?;
    Ok((done.remove(0), warnings))
}

/// The kernel image's bytes and their digest.
struct Kernel {
    bytes: Vec<u8>,
    artifact: Artifact,
}

fn read_kernel(path: &Path) -> Result<Kernel, BuildError> {
    let bytes = std::fs::read(path).map_err(|cause| BuildError::Kernel {
        path: path.to_owned(),
        cause,
    })?;
    let artifact = Artifact {
        sha256: sha256_hex(&bytes),
        size: bytes.len() as u64,
    };
    Ok(Kernel { bytes, artifact })
}

/// Every segment in one file, for boot loaders that take one initrd.
fn single_initrd(segments: &[Done]) -> Vec<u8> {
    let mut buf = Vec::new();
    for d in segments {
        buf.extend_from_slice(&d.compressed);
        // The kernel looks for the next archive at a 4-byte boundary; without the padding
        // the files of the next segment silently go missing.
        while buf.len() % 4 != 0 {
            buf.push(0);
        }
    }
    buf
}

/// The index as it is stored: its JSON and that JSON's digest, the image's identity.
struct IndexObject {
    index: Index,
    json: Vec<u8>,
    sha256: String,
}

/// The image index: kernel, segments in boot order, command line, plan digest.
fn index(
    image: &ResolvedImage,
    kernel: &Kernel,
    segments: &[Done],
    single: Option<&[u8]>,
) -> Result<IndexObject, BuildError> {
    let index = Index {
        version: INDEX_VERSION,
        name: Word::new(image.name.clone()).map_err(BuildError::Name)?,
        description: image.description.clone(),
        kernel: kernel.artifact.clone(),
        cmdline: image.cmdline.clone(),
        segments: segments
            .iter()
            .map(|d| SegmentArtifact {
                name: d.seg.name.clone(),
                sha256: sha256_hex(&d.compressed),
                size: d.compressed.len() as u64,
                unpacked_size: d.seg.unpacked_size,
                files: d.seg.files,
                compression: d.codec.label(),
                content: d.seg.content.clone(),
            })
            .collect(),
        initrd: single.map(|b| Artifact {
            sha256: sha256_hex(b),
            size: b.len() as u64,
        }),
        plan_sha256: image.plan_sha256.clone(),
    };
    let json = to_json(&index);
    let sha256 = sha256_hex(&json);
    Ok(IndexObject {
        index,
        json,
        sha256,
    })
}

/// `<name>.ipxe`: the entry a boot loader runs, its URLs under `base_url`, with no extra
/// arguments (hosts and checks render their own from the index).
fn ipxe_entry(index: &IndexObject, base_url: &BaseUrl) -> String {
    crate::ipxe::script(&index.index, &index.sha256, base_url, &Default::default())
}

/// Pretty JSON with a final newline, as the index and the contract are stored.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(value).expect("index and contract serialize");
    json.push(b'\n');
    json
}

/// Objects (kernel, segments, single initrd, index), then `<name>.json` and `<name>.ipxe`.
fn write_output(
    out: &Path,
    kernel: &Kernel,
    segments: &[Done],
    single: Option<&[u8]>,
    index: &IndexObject,
    script: &str,
) -> Result<(), BuildError> {
    let mut objects: Vec<(&str, &[u8])> = vec![(&kernel.artifact.sha256, &kernel.bytes)];
    for (d, s) in segments.iter().zip(&index.index.segments) {
        objects.push((&s.sha256, &d.compressed));
    }
    if let (Some(b), Some(a)) = (single, &index.index.initrd) {
        objects.push((&a.sha256, b));
    }
    objects.push((&index.sha256, &index.json));
    let name = index.index.name.as_str();
    let names = vec![
        (out.join(format!("{name}.json")), index.json.clone()),
        (out.join(format!("{name}.ipxe")), script.as_bytes().to_vec()),
    ];
    output::write(out, &Output { objects, names })?;
    Ok(())
}
