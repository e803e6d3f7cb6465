//! `diskless cache gc`: pruning the caches under `$XDG_CACHE_HOME/diskless`, which otherwise
//! only grow. Everything there can be made again (blobs from image archives, segments by
//! recompressing, reference images from busybox), so the least recently used entries go first.
//!
//! Only what the builder itself writes is considered: `blobs/<sha256>` and leftover staging
//! (`blobs/.partial-*` older than a day: an interrupted build), `segments/<sha256>`,
//! `reference-images/*.oci.tar`. The Kubernetes stack (`stack/`, built by scripts/build-stack)
//! and anything else is never touched, and symlinks are not followed.

use crate::index::is_sha256_hex;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cache directory {} does not exist: {cause}", root.display())]
    Missing {
        root: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} is not a directory", root.display())]
    NotDir { root: PathBuf },
    #[error("cannot list {}: {cause}", dir.display())]
    List { dir: PathBuf, cause: std::io::Error },
    #[error("cannot remove {}: {cause}", path.display())]
    Remove {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub enum Policy {
    /// Remove entries not used for this long.
    MaxAge(Duration),
    /// Remove least recently used entries until at most this many bytes remain.
    KeepBytes(u64),
}

/// Staging left by a build that did not finish is removed once it is this old (a live build's
/// staging is younger).
const STALE_STAGING: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub path: PathBuf,
    pub bytes: u64,
    /// Last use: the later of access and modification time (the builder touches what it reuses).
    pub used: SystemTime,
}

#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<CacheEntry>,
    pub kept: Vec<CacheEntry>,
}

/// Prunes the cache at `root` by `policy`, as of `now`.
pub fn gc(root: &Path, policy: Policy, now: SystemTime) -> Result<GcReport, GcError> {
    let meta = std::fs::metadata(root).map_err(|cause| GcError::Missing {
        root: root.to_owned(),
        cause,
    })?;
    if !meta.is_dir() {
        return Err(GcError::NotDir {
            root: root.to_owned(),
        });
    }
    let mut entries = Vec::new();
    let mut stale = Vec::new();
    scan(&root.join("blobs"), is_sha256_hex, &mut entries)?;
    scan(&root.join("segments"), is_sha256_hex, &mut entries)?;
    scan(
        &root.join("reference-images"),
        |n| n.ends_with(".oci.tar"),
        &mut entries,
    )?;
    staging(&root.join("blobs"), now, &mut stale)?;
    // Most recently used first.
    entries.sort_by(|a, b| b.used.cmp(&a.used).then_with(|| a.path.cmp(&b.path)));
    let mut report = GcReport::default();
    let mut total = 0u64;
    for e in entries {
        let keep = match policy {
            Policy::MaxAge(age) => now.duration_since(e.used).unwrap_or_default() <= age,
            Policy::KeepBytes(limit) => total + e.bytes <= limit,
        };
        if keep {
            total += e.bytes;
            report.kept.push(e);
        } else {
            std::fs::remove_file(&e.path).map_err(|cause| GcError::Remove {
                path: e.path.clone(),
                cause,
            })?;
            report.removed.push(e);
        }
    }
    for e in stale {
        std::fs::remove_dir_all(&e.path)
            .or_else(|_| std::fs::remove_file(&e.path))
            .map_err(|cause| GcError::Remove {
                path: e.path.clone(),
                cause,
            })?;
        report.removed.push(e);
    }
    Ok(report)
}

fn used(meta: &std::fs::Metadata) -> SystemTime {
    let m = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let a = meta.accessed().unwrap_or(m);
    a.max(m)
}

/// Regular files of `dir` whose names `wanted` accepts (a missing directory is empty).
fn scan(
    dir: &Path,
    wanted: impl Fn(&str) -> bool,
    out: &mut Vec<CacheEntry>,
) -> Result<(), GcError> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for f in read {
        let (f, meta) = listed(dir, f)?;
        let name = f.file_name();
        if meta.is_file() && name.to_str().is_some_and(&wanted) {
            out.push(CacheEntry {
                path: f.path(),
                bytes: meta.len(),
                used: used(&meta),
            });
        }
    }
    Ok(())
}

/// `.partial-*` staging directories and files in `dir` older than [`STALE_STAGING`].
fn staging(dir: &Path, now: SystemTime, out: &mut Vec<CacheEntry>) -> Result<(), GcError> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for f in read {
        let (f, meta) = listed(dir, f)?;
        let partial = f
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".partial-"));
        let age = now.duration_since(used(&meta)).unwrap_or_default();
        if partial && !meta.is_symlink() && age > STALE_STAGING {
            let bytes = if meta.is_dir() {
                walkdir_size(&f.path())
            } else {
                meta.len()
            };
            out.push(CacheEntry {
                path: f.path(),
                bytes,
                used: used(&meta),
            });
        }
    }
    Ok(())
}

/// One entry of a listing of `dir`, with its own metadata (a symlink is not followed).
fn listed(
    dir: &Path,
    f: std::io::Result<std::fs::DirEntry>,
) -> Result<(std::fs::DirEntry, std::fs::Metadata), GcError> {
    let list = |cause| GcError::List {
        dir: dir.to_owned(),
        cause,
    };
    let f = f.map_err(list)?;
    let meta = f.path().symlink_metadata().map_err(list)?;
    Ok((f, meta))
}

fn walkdir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|f| f.path().symlink_metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
