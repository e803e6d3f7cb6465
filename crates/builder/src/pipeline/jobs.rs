//! The segments of one build, written and compressed on every thread, largest first, through
//! the segment cache. A job is one tree and how it travels; its result is the compressed bytes.

use crate::compress::{Codec, CompressError};
use crate::resolve::Packed;
use crate::segment::{self, Segment, SegmentError};
use crate::squashfs::{SquashfsCodec, SquashfsError};
use crate::store::{sha256_hex, Cache};
use crate::tree::{Content, Entry, EntryKind, Tree};
use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(transparent)]
    Squashfs(#[from] SquashfsError),
    #[error(
        "component {name}: condition_path {path:?} would leave nothing out: the component has no files under /usr or /nix/store, so it has no squashfs image; put its programs there or drop condition_path"
    )]
    NothingLeftOut { name: String, path: String },
}

/// One segment waiting to be written.
pub struct Job {
    pub name: String,
    /// The codec of the whole segment (cpio).
    pub codec: Codec,
    pub packing: Packed,
    /// The component's `condition_path`, carried into its segment ref.
    pub condition_path: Option<String>,
    pub tree: Tree,
}

/// One segment written and compressed.
pub struct Done {
    pub seg: Segment,
    /// Image path of the segment's squashfs part, when packed so.
    pub squashfs: Option<String>,
    pub condition_path: Option<String>,
    pub compressed: Vec<u8>,
    pub codec: Codec,
    pub cached: bool,
}

/// Warnings the jobs collect (a cache entry that could not be read or written): said, not fatal,
/// since the cache only saves time.
type Warnings = Mutex<Vec<String>>;

/// Writes and compresses the segments on `threads` threads, largest first so one big segment
/// does not start last. Results come back in the jobs' order.
pub fn run(
    jobs: Vec<Job>,
    threads: usize,
    mtime: u32,
    cache: &Cache,
) -> Result<(Vec<Done>, Vec<String>), JobError> {
    let n = jobs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].tree.file_bytes()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Done, JobError>>>> =
        Mutex::new((0..n).map(|_| None).collect());
    let warnings = Mutex::new(Vec::new());
    let pb = progress(n as u64);
    std::thread::scope(|s| {
        for _ in 0..threads.min(n.max(1)) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= n {
                    break;
                }
                let job = &jobs[order[k]];
                pb.set_message(job.name.clone());
                let r = run_one(job, threads, mtime, cache, &warnings);
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

/// One job: its squashfs part packed (when so), its cpio written, compressed or taken from the
/// cache under the cpio's digest and the codec.
fn run_one(
    job: &Job,
    threads: usize,
    mtime: u32,
    cache: &Cache,
    warnings: &Warnings,
) -> Result<Done, JobError> {
    let (tree, squashfs) = match job.packing {
        Packed::Cpio => (Cow::Borrowed(&job.tree), None),
        Packed::Squashfs(codec) => {
            let (t, path) = pack_squashfs(job, codec, mtime, threads, cache, warnings)?;
            if let (Some(p), None) = (&job.condition_path, &path) {
                return Err(JobError::NothingLeftOut {
                    name: job.name.clone(),
                    path: p.clone(),
                });
            }
            (Cow::Owned(t), path)
        }
    };
    let seg = segment::write(&job.name, &tree, mtime)?;
    let key = Cache::key(&sha256_hex(&seg.cpio), &job.codec.label());
    let (compressed, cached) = match cached(cache, &key, warnings) {
        Some(bytes) => (bytes, true),
        None => {
            let bytes = job.codec.compress(&job.name, &seg.cpio, threads as u32)?;
            if let Err(w) = cache.put(&key, &bytes) {
                warnings.lock().unwrap().push(w);
            }
            (bytes, false)
        }
    };
    Ok(Done {
        seg,
        squashfs,
        condition_path: job.condition_path.clone(),
        compressed,
        codec: job.codec,
        cached,
    })
}

/// The tree of a squashfs-packed job: its non-read-only entries plus the squashfs image of the
/// rest (from the cache when the same files were packed before), and that image's path. A job
/// with nothing under the read-only directories stays plain cpio.
fn pack_squashfs(
    job: &Job,
    codec: SquashfsCodec,
    mtime: u32,
    threads: usize,
    cache: &Cache,
    warnings: &Warnings,
) -> Result<(Tree, Option<String>), JobError> {
    let (ro, mut rest) = crate::squashfs::split(&job.tree);
    if ro.entries.is_empty() {
        return Ok((rest, None));
    }
    // The key is the digest of the files' cpio listing: the same files give the same image.
    let listing = segment::write(&job.name, &ro, mtime)?;
    let key = Cache::key(&sha256_hex(&listing.cpio), &crate::squashfs::label(codec));
    drop(listing);
    let image = match cached(cache, &key, warnings) {
        Some(bytes) => bytes,
        None => {
            let bytes = crate::squashfs::pack(&job.name, &ro, mtime, codec, threads)?;
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
            kind: EntryKind::File(Content::Bytes(Arc::new(image))),
            mode: 0o444,
            origin: format!("squashfs image of segment {}", job.name),
        },
    );
    Ok((rest, Some(path)))
}

/// The cache's bytes for `key`; a cache that cannot be read is a warning and a miss.
fn cached(cache: &Cache, key: &str, warnings: &Warnings) -> Option<Vec<u8>> {
    cache.get(key).unwrap_or_else(|w| {
        warnings.lock().unwrap().push(w);
        None
    })
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
