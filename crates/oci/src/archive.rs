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

use super::verify::HashingWriter;
use super::Blob;
use anyhow::{bail, Context};
use diskless_builder::tree::Content;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

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
    pub fn count(&self, seen: &mut (u64, u64), size: u64, what: &str) -> anyhow::Result<()> {
        seen.0 += 1;
        seen.1 = seen.1.saturating_add(size);
        if seen.0 > self.entries {
            bail!(
                "{what} has more than {} entries, the limit for an image archive: this is not a real image (or split it into smaller layers)",
                self.entries
            );
        }
        if seen.1 > self.bytes {
            let limit = if self.bytes >= 1 << 30 && self.bytes.is_multiple_of(1 << 30) {
                format!("{} GiB", self.bytes >> 30)
            } else {
                format!("{} bytes", self.bytes)
            };
            bail!(
                "{what} holds more than {limit} of member data, the limit for an image archive: this is not a real image (or split it into smaller images)"
            );
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
    pub fn open(archive: &Path, cache: &Path) -> anyhow::Result<Source> {
        Self::open_with(archive, cache, Limits::DEFAULT)
    }

    pub fn open_with(archive: &Path, cache: &Path, limits: Limits) -> anyhow::Result<Source> {
        let meta = std::fs::metadata(archive)
            .with_context(|| format!("cannot read {}", archive.display()))?;
        // A FIFO, socket or device would block or never end: only regular files are read.
        if !meta.is_dir() && !meta.is_file() {
            bail!(
                "{} is not a regular file or an OCI layout directory: give the image archive itself",
                archive.display()
            );
        }
        std::fs::create_dir_all(cache)
            .with_context(|| format!("cannot create blob cache {}", cache.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(cache)
            .with_context(|| format!("cannot create a directory in {}", cache.display()))?;
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
    pub fn locate(&self, rel: &str) -> anyhow::Result<Located> {
        let rel = normalize(rel)?;
        match &self.kind {
            Kind::Tar(files) => files
                .get(&rel)
                .cloned()
                .with_context(|| format!("{rel} is missing from the archive")),
            Kind::Dir { root, copied } => {
                if let Some(found) = copied.borrow().get(&rel) {
                    return Ok(found.clone());
                }
                let path = inside_dir(root, &rel)?;
                let mut file =
                    File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
                let located = store(&mut file, self.staging.path())
                    .with_context(|| format!("cannot copy {}", path.display()))?;
                copied.borrow_mut().insert(rel, located.clone());
                Ok(located)
            }
        }
    }

    /// Moves the staged files `blobs` point at into the blob cache (`<cache>/<sha256 hex>`) and
    /// points them there; everything else staged is removed with the source.
    pub fn keep(self, blobs: &mut [Blob]) -> anyhow::Result<()> {
        for blob in blobs {
            if let Content::Path { path, .. } = &mut blob.content {
                if path.starts_with(self.staging.path()) {
                    let dest = self.cache.join(&blob.hex);
                    // Always the copy just hashed, renamed over whatever has that name: a cache
                    // file of the right size but other bytes is never trusted.
                    if path.exists() {
                        std::fs::rename(&*path, &dest).with_context(|| {
                            format!("cannot move {} to {}", path.display(), dest.display())
                        })?;
                    } else if !dest.exists() {
                        bail!("{} vanished from the staging directory", path.display());
                    }
                    *path = dest;
                }
            }
        }
        Ok(())
    }

    /// Reads a small file (a JSON document) into memory, with its sha256.
    pub fn read_small(&self, rel: &str) -> anyhow::Result<(Vec<u8>, Located)> {
        let loc = self.locate(rel)?;
        if loc.size > JSON_LIMIT {
            bail!("{rel} has {} bytes; a JSON document over {JSON_LIMIT} bytes is not a real image manifest or config", loc.size);
        }
        let bytes = std::fs::read(&loc.path)
            .with_context(|| format!("cannot read {}", loc.path.display()))?;
        Ok((bytes, loc))
    }
}

/// `rel` inside layout directory `root`, refusing symlinks that lead out of it and anything that
/// is not a regular file.
fn inside_dir(root: &Path, rel: &str) -> anyhow::Result<PathBuf> {
    let path = root.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("{rel} is missing from the layout directory")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if meta.file_type().is_symlink() {
        let real = path
            .canonicalize()
            .with_context(|| format!("{rel} is a dangling symlink"))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        if !real.starts_with(&root) {
            bail!(
                "{rel} is a symlink leaving the layout directory (to {})",
                real.display()
            );
        }
    }
    let meta =
        std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{rel} is not a regular file");
    }
    Ok(path)
}

/// Normalizes an archive member name: drops `.` and empty components; refuses absolute paths and
/// `..`, which an extracting tool would write outside its target directory.
pub fn normalize(name: &str) -> anyhow::Result<String> {
    if name.starts_with('/') {
        bail!("entry {name:?} has an absolute path");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("entry {name:?} has a path traversal (`..`)"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink's target against the link's directory, refusing targets outside the archive.
fn link_target(link: &str, target: &str) -> anyhow::Result<String> {
    if target.starts_with('/') {
        bail!("entry {link:?} is a link leaving the archive (absolute target {target:?})");
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    bail!("entry {link:?} is a link leaving the archive (target {target:?})");
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
) -> anyhow::Result<BTreeMap<String, Located>> {
    let file = File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let reader = decompressed(BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut tar = tar::Archive::new(reader);
    let mut files: BTreeMap<String, Located> = BTreeMap::new();
    // link name → target name, resolved once every entry has been seen (targets may come later).
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let entries = tar.entries().context("not a tar archive")?;
    let what = archive.display().to_string();
    let mut seen = (0, 0);
    for entry in entries {
        let mut entry = entry.context("not a valid tar archive")?;
        limits.count(&mut seen, entry.size(), &what)?;
        let raw = entry.path_bytes();
        let name = std::str::from_utf8(&raw)
            .map_err(|_| {
                anyhow::anyhow!(
                    "entry {:?} has a name that is not UTF-8",
                    String::from_utf8_lossy(&raw)
                )
            })?
            .to_owned();
        let path = normalize(&name)?;
        let kind = entry.header().entry_type();
        // Directories carry nothing an image needs; a pax global header only metadata.
        if kind.is_dir() || kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        if path.is_empty() {
            bail!("entry {name:?} is not a directory but names the archive root");
        }
        if files.contains_key(&path) || links.contains_key(&path) {
            bail!("duplicate entry {path:?}: an archive must hold each file once");
        }
        let link_name = || -> anyhow::Result<String> {
            let target = entry
                .link_name_bytes()
                .with_context(|| format!("link {path:?} has no target"))?;
            Ok(std::str::from_utf8(&target)
                .with_context(|| format!("link {path:?} has a target that is not UTF-8"))?
                .to_owned())
        };
        if kind.is_symlink() {
            let target = link_target(&path, &link_name()?)?;
            links.insert(path, target);
        } else if kind.is_hard_link() {
            let target = link_name()?;
            let target = normalize(&target)
                .with_context(|| format!("hard link {path:?} is a link leaving the archive"))?;
            links.insert(path, target);
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let located = store(&mut entry, staging)
                .with_context(|| format!("cannot unpack entry {path:?}"))?;
            files.insert(path, located);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            bail!("entry {path:?} is a device node or FIFO: image archives hold only files, directories and links");
        } else {
            bail!("entry {path:?} has tar entry type {kind:?}, which image archives do not use");
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
                Some(_) => bail!("link {link:?} is part of a symlink loop"),
                None => {
                    bail!("link {link:?} points to {target:?}, which is not a file in the archive")
                }
            }
        };
        files.insert(link.clone(), located);
    }
    Ok(files)
}

/// Copies `reader` into `dir` under its sha256, hashing in the same pass; temp name and
/// rename, so a file's name never lies about its content.
fn store(reader: &mut impl Read, dir: &Path) -> anyhow::Result<Located> {
    let tmp = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
    io::copy(reader, &mut writer)?;
    let (buffered, hex, size) = writer.finish();
    let tmp = buffered.into_inner().map_err(|e| e.into_error())?;
    let path = dir.join(&hex);
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Located { path, hex, size })
}

/// The blob cache: `$XDG_CACHE_HOME/diskless/blobs`, else `~/.cache/diskless/blobs`.
pub fn default_cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".cache"),
            None => bail!("neither XDG_CACHE_HOME nor HOME is set: set XDG_CACHE_HOME to a writable directory for the image blob cache"),
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
