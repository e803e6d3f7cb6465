//! Image archives as a set of named files, whatever their container: an OCI layout directory is
//! read in place; a tar archive (docker-archive or OCI archive, whole-file gzip or zstd allowed,
//! as nixpkgs' `dockerTools` writes `.tar.gz`/`.tar.zst`) is streamed once into the
//! content-addressed blob cache, so every file ends up as a path on disk that a segment can
//! point at (`Content::Path`) without holding layers in memory.
//!
//! Every file is copied into a staging directory inside the cache while it is hashed, so the
//! bytes a segment later reads are the very bytes that were hashed (a layout directory or
//! archive changed under the build cannot slip other bytes under a verified digest). Only the
//! blobs an image actually uses are then kept in the cache ([`Source::keep`]); the rest of the
//! archive is dropped with the staging directory.
//!
//! This is also where hostile archives are stopped: absolute paths, `..`, links that leave the
//! archive, device nodes, duplicate entries, and archives over [`Limits`] are errors naming the
//! entry or the limit.

use super::blob::Blob;
use super::verify::HashingWriter;
use diskless_builder::tree::Content;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

/// An archive (or layout directory) that cannot be read, or that a hostile hand made: the
/// message names the archive, the entry or the limit.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{what} has more than {limit} entries, the limit for an image archive: this is not a real image (or split it into smaller layers)")]
    TooManyEntries { what: String, limit: u64 },
    #[error("{what} holds more than {limit} of member data, the limit for an image archive: this is not a real image (or split it into smaller images)")]
    TooManyBytes { what: String, limit: String },
    #[error("{} is not a regular file or an OCI layout directory: give the image archive itself", path.display())]
    NotAFile { path: PathBuf },
    /// `place` is "the archive" or "the layout directory".
    #[error("{rel} is missing from {place}")]
    Missing { rel: String, place: &'static str },
    #[error("{rel} has {size} bytes; a JSON document over {JSON_LIMIT} bytes is not a real image manifest or config")]
    TooLarge { rel: String, size: u64 },
    #[error("{rel} is a symlink leaving the layout directory (to {})", target.display())]
    LeavesLayout { rel: String, target: PathBuf },
    #[error("{rel} is not a regular file")]
    NotRegular { rel: String },
    #[error("entry {name:?} has an absolute path")]
    Absolute { name: String },
    #[error("entry {name:?} has a path traversal (`..`)")]
    Traversal { name: String },
    #[error("entry {link:?} is a link leaving the archive ({target})")]
    LinkLeaves { link: String, target: String },
    #[error("entry {name:?} has a name that is not UTF-8")]
    NotUtf8 { name: String },
    #[error("entry {name:?} is not a directory but names the archive root")]
    Root { name: String },
    #[error("duplicate entry {path:?}: an archive must hold each file once")]
    Duplicate { path: String },
    #[error("link {path:?} has no target")]
    NoTarget { path: String },
    #[error("link {path:?} has a target that is not UTF-8")]
    TargetNotUtf8 { path: String },
    #[error("hard link {path:?} is a link leaving the archive: {cause}")]
    HardLinkLeaves {
        path: String,
        cause: Box<ArchiveError>,
    },
    #[error("entry {path:?} is a device node or FIFO: image archives hold only files, directories and links")]
    Device { path: String },
    #[error("entry {path:?} has tar entry type {kind}, which image archives do not use")]
    EntryType { path: String, kind: String },
    #[error("link {link:?} is part of a symlink loop")]
    Loop { link: String },
    #[error("link {link:?} points to {target:?}, which is not a file in the archive")]
    Dangling { link: String, target: String },
    #[error("{} vanished from the staging directory", path.display())]
    Vanished { path: PathBuf },
    /// No place for the blob cache: an environment problem.
    #[error("neither XDG_CACHE_HOME nor HOME is set: set XDG_CACHE_HOME to a writable directory for the image blob cache")]
    NoCacheDir,
    /// An I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// Another failure, with what was being done.
    #[error("{context}: {cause}")]
    In {
        context: String,
        cause: Box<ArchiveError>,
    },
}

impl ArchiveError {
    /// Whether this machine lacks something (a home for the blob cache).
    pub fn is_environment(&self) -> bool {
        match self {
            ArchiveError::NoCacheDir => true,
            ArchiveError::In { cause, .. } | ArchiveError::HardLinkLeaves { cause, .. } => {
                cause.is_environment()
            }
            _ => false,
        }
    }
}

/// For `map_err`: an I/O error while doing `context`.
fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let context = context.into();
    move |cause| ArchiveError::Io { context, cause }
}

/// For `map_err`: an error while doing `context`.
fn within(context: impl Into<String>) -> impl FnOnce(ArchiveError) -> ArchiveError {
    let context = context.into();
    move |cause| ArchiveError::In {
        context,
        cause: Box::new(cause),
    }
}

/// JSON documents (manifests, configs, indexes) larger than this are refused rather than read
/// into memory: real ones are a few KiB.
const JSON_LIMIT: u64 = 16 << 20;

/// Whole-stream compression, recognised by magic bytes rather than by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`) from the first bytes of a stream.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompressed<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = reader.fill_buf()?;
    Ok(match sniff(head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(reader)?),
    })
}

/// A file of an image archive, located on disk.
#[derive(Debug, Clone)]
pub struct Located {
    pub path: PathBuf,
    /// sha256 of its content, lowercase hex.
    pub hex: String,
    pub size: u64,
}

/// Bounds on the work an untrusted archive (or layer) can cause: far above any real image
/// (the largest real layers hold ~100k files and a few GiB), far below what fills a disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub entries: u64,
    /// Sum of the sizes of all members.
    pub bytes: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        entries: 1_000_000,
        bytes: 64 << 30,
    };

    /// Counts one more entry of `size` bytes against the limits; `what` names the archive.
    pub fn count(&self, seen: &mut (u64, u64), size: u64, what: &str) -> Result<(), ArchiveError> {
        seen.0 += 1;
        seen.1 = seen.1.saturating_add(size);
        if seen.0 > self.entries {
            return Err(ArchiveError::TooManyEntries {
                what: what.to_string(),
                limit: self.entries,
            });
        }
        if seen.1 > self.bytes {
            let limit = if self.bytes >= 1 << 30 && self.bytes.is_multiple_of(1 << 30) {
                format!("{} GiB", self.bytes >> 30)
            } else {
                format!("{} bytes", self.bytes)
            };
            return Err(ArchiveError::TooManyBytes {
                what: what.to_string(),
                limit,
            });
        }
        Ok(())
    }
}

/// The files of one image archive.
pub struct Source {
    kind: Kind,
    /// Where files are copied while they are hashed; removed when the source is dropped.
    staging: tempfile::TempDir,
    cache: PathBuf,
}

enum Kind {
    /// An OCI layout directory: each file is copied to staging the first time it is located.
    Dir {
        root: PathBuf,
        copied: RefCell<BTreeMap<String, Located>>,
    },
    /// A tar archive unpacked into staging: archive path → staged file.
    Tar(BTreeMap<String, Located>),
}

impl Source {
    /// Opens a layout directory, or streams a tar archive into a staging directory in `cache`.
    pub fn open(archive: &Path, cache: &Path) -> Result<Source, ArchiveError> {
        Self::open_with(archive, cache, Limits::DEFAULT)
    }

    pub fn open_with(archive: &Path, cache: &Path, limits: Limits) -> Result<Source, ArchiveError> {
        let meta =
            std::fs::metadata(archive).map_err(io(format!("cannot read {}", archive.display())))?;
        // A FIFO, socket or device would block or never end: only regular files are read.
        if !meta.is_dir() && !meta.is_file() {
            return Err(ArchiveError::NotAFile {
                path: archive.to_owned(),
            });
        }
        std::fs::create_dir_all(cache)
            .map_err(io(format!("cannot create blob cache {}", cache.display())))?;
        let staging = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(cache)
            .map_err(io(format!(
                "cannot create a directory in {}",
                cache.display()
            )))?;
        let kind = if meta.is_dir() {
            Kind::Dir {
                root: archive.to_owned(),
                copied: RefCell::default(),
            }
        } else {
            Kind::Tar(unpack(archive, staging.path(), limits)?)
        };
        Ok(Source {
            kind,
            staging,
            cache: cache.to_owned(),
        })
    }

    pub fn contains(&self, rel: &str) -> bool {
        match &self.kind {
            Kind::Dir { root, .. } => normalize(rel).is_ok_and(|r| root.join(r).exists()),
            Kind::Tar(files) => normalize(rel).is_ok_and(|r| files.contains_key(&r)),
        }
    }

    /// Finds `rel`: a staged copy and the sha256 of exactly those bytes.
    pub fn locate(&self, rel: &str) -> Result<Located, ArchiveError> {
        let rel = normalize(rel)?;
        match &self.kind {
            Kind::Tar(files) => files.get(&rel).cloned().ok_or(ArchiveError::Missing {
                rel,
                place: "the archive",
            }),
            Kind::Dir { root, copied } => {
                if let Some(found) = copied.borrow().get(&rel) {
                    return Ok(found.clone());
                }
                let path = inside_dir(root, &rel)?;
                let mut file =
                    File::open(&path).map_err(io(format!("cannot open {}", path.display())))?;
                let located = store(&mut file, self.staging.path())
                    .map_err(within(format!("cannot copy {}", path.display())))?;
                copied.borrow_mut().insert(rel, located.clone());
                Ok(located)
            }
        }
    }

    /// Moves the staged files `blobs` point at into the blob cache (`<cache>/<sha256 hex>`) and
    /// points them there; everything else staged is removed with the source.
    pub fn keep(self, blobs: &mut [Blob]) -> Result<(), ArchiveError> {
        for blob in blobs {
            if let Content::Path { path, .. } = &mut blob.content {
                if path.starts_with(self.staging.path()) {
                    let dest = self.cache.join(&blob.hex);
                    // Always the copy just hashed, renamed over whatever has that name: a cache
                    // file of the right size but other bytes is never trusted.
                    if path.exists() {
                        std::fs::rename(&*path, &dest).map_err(io(format!(
                            "cannot move {} to {}",
                            path.display(),
                            dest.display()
                        )))?;
                    } else if !dest.exists() {
                        return Err(ArchiveError::Vanished { path: path.clone() });
                    }
                    *path = dest;
                }
            }
        }
        Ok(())
    }

    /// Reads a small file (a JSON document) into memory, with its sha256.
    pub fn read_small(&self, rel: &str) -> Result<(Vec<u8>, Located), ArchiveError> {
        let loc = self.locate(rel)?;
        if loc.size > JSON_LIMIT {
            return Err(ArchiveError::TooLarge {
                rel: rel.to_string(),
                size: loc.size,
            });
        }
        let bytes =
            std::fs::read(&loc.path).map_err(io(format!("cannot read {}", loc.path.display())))?;
        Ok((bytes, loc))
    }
}

/// `rel` inside layout directory `root`, refusing symlinks that lead out of it and anything that
/// is not a regular file.
fn inside_dir(root: &Path, rel: &str) -> Result<PathBuf, ArchiveError> {
    let path = root.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ArchiveError::Missing {
                rel: rel.to_string(),
                place: "the layout directory",
            })
        }
        Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
    };
    if meta.file_type().is_symlink() {
        let real = path
            .canonicalize()
            .map_err(io(format!("{rel} is a dangling symlink")))?;
        let root = root
            .canonicalize()
            .map_err(io(format!("cannot resolve {}", root.display())))?;
        if !real.starts_with(&root) {
            return Err(ArchiveError::LeavesLayout {
                rel: rel.to_string(),
                target: real,
            });
        }
    }
    let meta = std::fs::metadata(&path).map_err(io(format!("cannot read {}", path.display())))?;
    if !meta.is_file() {
        return Err(ArchiveError::NotRegular {
            rel: rel.to_string(),
        });
    }
    Ok(path)
}

/// Normalizes an archive member name: drops `.` and empty components; refuses absolute paths and
/// `..`, which an extracting tool would write outside its target directory.
pub fn normalize(name: &str) -> Result<String, ArchiveError> {
    if name.starts_with('/') {
        return Err(ArchiveError::Absolute {
            name: name.to_string(),
        });
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ArchiveError::Traversal {
                    name: name.to_string(),
                })
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink's target against the link's directory, refusing targets outside the archive.
fn link_target(link: &str, target: &str) -> Result<String, ArchiveError> {
    let leaves = |what: String| ArchiveError::LinkLeaves {
        link: link.to_string(),
        target: what,
    };
    if target.starts_with('/') {
        return Err(leaves(format!("absolute target {target:?}")));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(leaves(format!("target {target:?}")));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Streams a tar archive into `staging` (`<staging>/<sha256 hex>`) and returns its files by name.
fn unpack(
    archive: &Path,
    staging: &Path,
    limits: Limits,
) -> Result<BTreeMap<String, Located>, ArchiveError> {
    let file = File::open(archive).map_err(io(format!("cannot open {}", archive.display())))?;
    let reader = decompressed(BufReader::with_capacity(1 << 20, file))
        .map_err(io(format!("cannot read {}", archive.display())))?;
    let mut tar = tar::Archive::new(reader);
    let mut files: BTreeMap<String, Located> = BTreeMap::new();
    // link name → target name, resolved once every entry has been seen (targets may come later).
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let entries = tar.entries().map_err(io("not a tar archive"))?;
    let what = archive.display().to_string();
    let mut seen = (0, 0);
    for entry in entries {
        let mut entry = entry.map_err(io("not a valid tar archive"))?;
        limits.count(&mut seen, entry.size(), &what)?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw)
            .map_err(|_| ArchiveError::NotUtf8 {
                name: String::from_utf8_lossy(&raw).into_owned(),
            })?
            .to_owned();
        let path = normalize(&name)?;
        let kind = entry.header().entry_type();
        // Directories carry nothing an image needs; a pax global header only metadata.
        if kind.is_dir() || kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        if path.is_empty() {
            return Err(ArchiveError::Root { name });
        }
        if files.contains_key(&path) || links.contains_key(&path) {
            return Err(ArchiveError::Duplicate { path });
        }
        let link_name = || -> Result<String, ArchiveError> {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| ArchiveError::NoTarget { path: path.clone() })?;
            Ok(std::str::from_utf8(&target)
                .map_err(|_| ArchiveError::TargetNotUtf8 { path: path.clone() })?
                .to_owned())
        };
        if kind.is_symlink() {
            let target = link_target(&path, &link_name()?)?;
            links.insert(path, target);
        } else if kind.is_hard_link() {
            let target = link_name()?;
            let target = normalize(&target).map_err(|cause| ArchiveError::HardLinkLeaves {
                path: path.clone(),
                cause: Box::new(cause),
            })?;
            links.insert(path, target);
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let located = store(&mut entry, staging)
                .map_err(within(format!("cannot unpack entry {path:?}")))?;
            files.insert(path, located);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Err(ArchiveError::Device { path });
        } else {
            return Err(ArchiveError::EntryType {
                path,
                kind: format!("{kind:?}"),
            });
        }
    }
    for (link, first) in &links {
        let mut target = first.clone();
        let mut hops = 0;
        let located = loop {
            if let Some(found) = files.get(&target) {
                break found.clone();
            }
            match links.get(&target) {
                Some(next) if hops < 40 => {
                    target = next.clone();
                    hops += 1;
                }
                Some(_) => return Err(ArchiveError::Loop { link: link.clone() }),
                None => {
                    return Err(ArchiveError::Dangling {
                        link: link.clone(),
                        target,
                    })
                }
            }
        };
        files.insert(link.clone(), located);
    }
    Ok(files)
}

/// Copies `reader` into `dir` under its sha256, hashing in the same pass; temp name and
/// rename, so a file's name never lies about its content.
fn store(reader: &mut impl Read, dir: &Path) -> Result<Located, ArchiveError> {
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .map_err(io(format!("cannot create a file in {}", dir.display())))?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
    let copying = || io(format!("cannot copy into {}", dir.display()));
    io::copy(reader, &mut writer).map_err(copying())?;
    let (buffered, hex, size) = writer.finish();
    let tmp = buffered
        .into_inner()
        .map_err(|e| copying()(e.into_error()))?;
    let path = dir.join(&hex);
    tmp.persist(&path)
        .map_err(|e| io(format!("cannot write {}", path.display()))(e.error))?;
    Ok(Located { path, hex, size })
}

/// The blob cache: `$XDG_CACHE_HOME/diskless/blobs`, else `~/.cache/diskless/blobs`.
pub fn default_cache_dir() -> Result<PathBuf, ArchiveError> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => return Err(ArchiveError::NoCacheDir),
        },
    };
    Ok(base.join("diskless").join("blobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("./blobs//sha256/ab").unwrap(), "blobs/sha256/ab");
        assert!(normalize("/etc/passwd")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(normalize("a/../../b")
            .unwrap_err()
            .to_string()
            .contains("traversal"));
    }

    #[test]
    fn link_targets_stay_inside() {
        assert_eq!(
            link_target("a/b/layer.tar", "../c/layer.tar").unwrap(),
            "a/c/layer.tar"
        );
        assert!(link_target("a/layer.tar", "../../x").is_err());
        assert!(link_target("a/layer.tar", "/x").is_err());
    }

    /// Limits name the archive and the limit, and nothing is left in the cache.
    #[test]
    fn archives_over_the_limits_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..5 {
            let mut h = tar::Header::new_gnu();
            h.set_size(100);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("f{i}"), &[0u8; 100][..])
                .unwrap();
        }
        let archive = t.path().join("many.tar");
        std::fs::write(&archive, b.into_inner().unwrap()).unwrap();
        let cache = t.path().join("cache");
        for (limits, want) in [
            (
                Limits {
                    entries: 4,
                    bytes: 1 << 20,
                },
                "more than 4 entries",
            ),
            (
                Limits {
                    entries: 100,
                    bytes: 450,
                },
                "more than 450 bytes",
            ),
        ] {
            let e = Source::open_with(&archive, &cache, limits)
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want) && e.contains("many.tar"), "{e}");
            assert_eq!(
                std::fs::read_dir(&cache).unwrap().count(),
                0,
                "nothing left"
            );
        }
        Source::open_with(
            &archive,
            &cache,
            Limits {
                entries: 5,
                bytes: 500,
            },
        )
        .unwrap();
    }

    #[test]
    fn sniff_knows_the_magics() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"ustar"), Compression::None);
    }
}
