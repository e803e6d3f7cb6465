//! `diskless build`: plan → resolve → segments (in parallel, cached) → store → index + iPXE.
//!
//! Order of effects: everything is computed in memory first (resolution, every segment, the
//! manifest, the index); only then is the output directory touched, objects first and the
//! human-facing names (`<name>.json`, `<name>.ipxe`) last, each atomically. A failure while
//! writing removes what this build added, so the output directory is never half-updated.

use crate::compress::Codec;
use crate::index::{Artifact, Index, SegmentArtifact, INDEX_VERSION};
use crate::ipxe::words::{BaseUrl, Word};
use crate::plan::{Packing, Plan};
use crate::preload::Preloader;
use crate::segment;
use crate::squashfs::SquashfsCodec;
use crate::store::{Cache, Store};
use crate::tree::{Content, Entry, EntryKind, Tree};
use anyhow::Context;
use diskless_contract::image::{ImageContract, SegmentRef, CONTRACT_PATH, CONTRACT_VERSION};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// Re-exported for the CLI's `plan --output`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::store::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org convention), else 0.
fn mtime() -> anyhow::Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.trim().parse::<u32>().with_context(|| {
            format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970 that fits 32 bits"
            )
        }),
        _ => Ok(0),
    }
}

/// One segment waiting to be written.
struct Job {
    name: String,
    codec: Codec,
    packing: Packing,
    squashfs: SquashfsCodec,
    /// The component's `condition_path`, carried into its segment ref.
    condition_path: Option<String>,
    tree: Tree,
}

struct Done {
    seg: segment::Segment,
    /// Image path of the segment's squashfs part, when packed so.
    squashfs: Option<String>,
    condition_path: Option<String>,
    compressed: Vec<u8>,
    codec: Codec,
    cached: bool,
}

fn progress(total: u64) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} segments {wide_msg}")
                .expect("valid template"),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// Writes and compresses the segments on `jobs` threads, largest first so one big segment does
/// not start last. Results come back in the jobs' order.
fn run_jobs(
    jobs: Vec<Job>,
    threads: usize,
    mtime: u32,
    cache: &Cache,
) -> anyhow::Result<(Vec<Done>, Vec<String>)> {
    let n = jobs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].tree.file_bytes()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<anyhow::Result<Done>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let warnings = Mutex::new(Vec::new());
    let pb = progress(n as u64);
    let zstd_threads = threads as u32;
    std::thread::scope(|s| {
        for _ in 0..threads.min(n.max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= n {
                    break;
                }
                let job = &jobs[order[k]];
                pb.set_message(job.name.clone());
                let r = (|| -> anyhow::Result<Done> {
                    let (tree, squashfs) = match job.packing {
                        Packing::Cpio => (std::borrow::Cow::Borrowed(&job.tree), None),
                        Packing::Squashfs => {
                            let (t, path) = pack_squashfs(job, mtime, threads, cache, &warnings)?;
                            if let (Some(p), None) = (&job.condition_path, &path) {
                                anyhow::bail!(
                                    "component {}: condition_path {p:?} would leave nothing out: the component has no files under /usr or /nix/store, so it has no squashfs image; put its programs there or drop condition_path",
                                    job.name
                                );
                            }
                            (std::borrow::Cow::Owned(t), path)
                        }
                    };
                    let seg = segment::write(&job.name, &tree, mtime)?;
                    let key = Cache::key(&crate::store::sha256_hex(&seg.cpio), &job.codec.label());
                    let hit = cache.get(&key).unwrap_or_else(|w| {
                        warnings.lock().unwrap().push(w);
                        None
                    });
                    if let Some(bytes) = hit {
                        return Ok(Done {
                            seg,
                            squashfs,
                            condition_path: job.condition_path.clone(),
                            compressed: bytes,
                            codec: job.codec,
                            cached: true,
                        });
                    }
                    let compressed = job.codec.compress(&job.name, &seg.cpio, zstd_threads)?;
                    if let Err(w) = cache.put(&key, &compressed) {
                        warnings.lock().unwrap().push(w);
                    }
                    Ok(Done {
                        seg,
                        squashfs,
                        condition_path: job.condition_path.clone(),
                        compressed,
                        codec: job.codec,
                        cached: false,
                    })
                })();
                pb.inc(1);
                results.lock().unwrap()[order[k]] = Some(r);
            });
        }
    });
    pb.finish_and_clear();
    let mut done = Vec::with_capacity(n);
    for r in results.into_inner().unwrap() {
        done.push(r.expect("every job ran")?);
    }
    Ok((done, warnings.into_inner().unwrap()))
}

/// The tree of a squashfs-packed job: its non-read-only entries plus the squashfs image of the
/// rest (from the cache when the same files were packed before), and that image's path. A job
/// with nothing under the read-only directories stays plain cpio.
fn pack_squashfs(
    job: &Job,
    mtime: u32,
    threads: usize,
    cache: &Cache,
    warnings: &Mutex<Vec<String>>,
) -> anyhow::Result<(Tree, Option<String>)> {
    let (ro, mut rest) = crate::squashfs::split(&job.tree);
    if ro.entries.is_empty() {
        return Ok((rest, None));
    }
    let listing = segment::write(&job.name, &ro, mtime)?;
    let key = Cache::key(
        &crate::store::sha256_hex(&listing.cpio),
        &crate::squashfs::label(job.squashfs),
    );
    drop(listing);
    let hit = cache.get(&key).unwrap_or_else(|w| {
        warnings.lock().unwrap().push(w);
        None
    });
    let image = match hit {
        Some(bytes) => bytes,
        None => {
            let bytes = crate::squashfs::pack(&job.name, &ro, mtime, job.squashfs, threads)?;
            if let Err(w) = cache.put(&key, &bytes) {
                warnings.lock().unwrap().push(w);
            }
            bytes
        }
    };
    let path = crate::squashfs::image_path(&job.name);
    rest.entries.insert(
        path.clone(),
        Entry {
            kind: EntryKind::File(Content::Bytes(std::sync::Arc::new(image))),
            mode: 0o444,
            origin: format!("squashfs image of segment {}", job.name),
        },
    );
    Ok((rest, Some(path)))
}

/// Builds `plan` into `options.out`.
pub fn build(
    plan: &Plan,
    options: &BuildOptions,
    preloader: &dyn Preloader,
) -> anyhow::Result<BuildReport> {
    let started = Instant::now();
    let mtime = mtime()?;
    let threads = options
        .jobs
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let image = crate::resolve::resolve(plan)?;

    let mut jobs: Vec<Job> = image
        .components
        .iter()
        .map(|c| Job {
            name: c.name.clone(),
            codec: c.codec,
            packing: c.packing,
            squashfs: c.squashfs,
            condition_path: c.condition_path.clone(),
            tree: c.tree.clone(),
        })
        .collect();
    let image_segments = preloader.segments(&image.images)?;
    let image_codec = Codec::from_plan(&preloader.compression(), "images")?;
    let mut image_refs = Vec::new();
    for s in image_segments {
        image_refs.push(s.contract);
        jobs.push(Job {
            name: s.segment_name,
            codec: image_codec,
            packing: Packing::Cpio,
            squashfs: SquashfsCodec::default(),
            condition_path: None,
            tree: s.tree,
        });
    }

    let unpacked: u64 = jobs.iter().map(|j| j.tree.file_bytes()).sum();
    if unpacked > LARGE_IMAGE_BYTES && !options.allow_large {
        anyhow::bail!(
            "image {} unpacks to {} bytes, over 2 GiB (iPXE's practical ceiling, and the node needs it in RAM); \
             trim the plan or pass --allow-large",
            image.name,
            unpacked
        );
    }

    let cache = Cache::new(if options.no_cache {
        None
    } else {
        options.cache_dir.clone().or_else(Cache::default_dir)
    });
    let (done, mut warnings) = run_jobs(jobs, threads, mtime, &cache)?;
    // The kernel runs /init from the initramfs; without one the node panics ("No working init
    // found"). A plan may want that (a test image), so this is said, not refused.
    let has_init = image.components.iter().any(|c| {
        c.tree
            .entries
            .get("/init")
            .is_some_and(|e| !matches!(e.kind, EntryKind::Dir))
    });
    if !has_init {
        warnings.push(
            "the image has no /init: the kernel will find nothing to run and panic; add the init \
             binary at /init (the host plan and the Nix modules do)"
                .into(),
        );
    }

    // The manifest segment, first in boot order, tells the init what the others are.
    let contract = ImageContract {
        version: CONTRACT_VERSION,
        name: image.name.clone(),
        unpacked_bytes: done.iter().map(|d| d.seg.unpacked_size).sum(),
        segments: done
            .iter()
            .map(|d| SegmentRef {
                name: d.seg.name.clone(),
                sentinel: segment::sentinel_path(&d.seg.name),
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
        images: image_refs,
    };
    let mut manifest = Tree::default();
    let mut json = serde_json::to_vec_pretty(&contract)?;
    json.push(b'\n');
    manifest.entries.insert(
        CONTRACT_PATH.to_string(),
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(json))),
            mode: 0o444,
            origin: "manifest".into(),
        },
    );
    let (mut manifest_done, w) = run_jobs(
        vec![Job {
            name: "manifest".into(),
            codec: image.codec,
            packing: Packing::Cpio,
            squashfs: SquashfsCodec::default(),
            condition_path: None,
            tree: manifest,
        }],
        1,
        mtime,
        &cache,
    )?;
    warnings.extend(w);
    let mut all = vec![manifest_done.remove(0)];
    all.extend(done);

    let kernel_bytes = std::fs::read(&image.kernel)
        .with_context(|| format!("kernel.image: cannot read {}", image.kernel.display()))?;
    let kernel = Artifact {
        sha256: crate::store::sha256_hex(&kernel_bytes),
        size: kernel_bytes.len() as u64,
    };
    let segments: Vec<SegmentArtifact> = all
        .iter()
        .map(|d| SegmentArtifact {
            name: d.seg.name.clone(),
            sha256: crate::store::sha256_hex(&d.compressed),
            size: d.compressed.len() as u64,
            unpacked_size: d.seg.unpacked_size,
            files: d.seg.files,
            compression: d.codec.label(),
            content: d.seg.content.clone(),
        })
        .collect();
    let single = options.single_initrd.then(|| {
        let mut buf = Vec::new();
        for d in &all {
            buf.extend_from_slice(&d.compressed);
            // The kernel looks for the next archive at a 4-byte boundary; without the padding
            // the files of the next segment silently go missing.
            while buf.len() % 4 != 0 {
                buf.push(0);
            }
        }
        buf
    });
    let index = Index {
        version: INDEX_VERSION,
        name: Word::new(image.name.clone()).map_err(anyhow::Error::msg)?,
        description: image.description.clone(),
        kernel: kernel.clone(),
        cmdline: image.cmdline.clone(),
        segments,
        initrd: single.as_ref().map(|b| Artifact {
            sha256: crate::store::sha256_hex(b),
            size: b.len() as u64,
        }),
        plan_sha256: image.plan_sha256.clone(),
    };
    let mut index_json = serde_json::to_vec_pretty(&index)?;
    index_json.push(b'\n');
    let index_sha = crate::store::sha256_hex(&index_json);
    let script = crate::ipxe::script(&index, &index_sha, &options.base_url, &Default::default());

    // Only now touch the output directory.
    let out = &options.out;
    let existed = out.exists();
    let names = [
        (out.join(format!("{}.json", image.name)), index_json.clone()),
        (
            out.join(format!("{}.ipxe", image.name)),
            script.clone().into_bytes(),
        ),
    ];
    let previous: Vec<Option<Vec<u8>>> = names.iter().map(|(p, _)| std::fs::read(p).ok()).collect();
    let write_all = |store: &mut Store| -> anyhow::Result<()> {
        store.put_with_digest(&kernel.sha256, &kernel_bytes)?;
        for (d, s) in all.iter().zip(&index.segments) {
            store.put_with_digest(&s.sha256, &d.compressed)?;
        }
        if let (Some(b), Some(a)) = (&single, &index.initrd) {
            store.put_with_digest(&a.sha256, b)?;
        }
        store.put_with_digest(&index_sha, &index_json)?;
        for (path, bytes) in &names {
            crate::store::write_atomic(path, bytes)?;
        }
        Ok(())
    };
    let mut store = Store::open(out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    if let Err(e) = write_all(&mut store) {
        store.roll_back();
        // Put back whichever human-facing name was already replaced.
        for ((path, _), old) in names.iter().zip(&previous) {
            match old {
                Some(bytes) => {
                    let _ = crate::store::write_atomic(path, bytes);
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if !existed {
            let _ = std::fs::remove_dir_all(out);
        }
        return Err(e.context(format!(
            "writing {} failed; the output directory was left as it was",
            out.display()
        )));
    }

    Ok(BuildReport {
        name: image.name.clone(),
        out: out.clone(),
        index: index_sha,
        total_size: kernel.size + index.segments.iter().map(|s| s.size).sum::<u64>(),
        unpacked_size: contract.unpacked_bytes,
        kernel,
        segments: all
            .iter()
            .zip(&index.segments)
            .map(|(d, s)| SegmentReport {
                segment: s.clone(),
                cached: d.cached,
            })
            .collect(),
        ipxe: out.join(format!("{}.ipxe", image.name)),
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}
