//! Layers, checked at build time for what containerd would only refuse (or silently mangle) on
//! the node: a media type it knows, bytes whose compression is the one the media type says
//! (by magic bytes, not by trust), an uncompressed stream that is a tar archive whose content
//! is the config's diff_id, and no entry that escapes the layer root (`..`, absolute names,
//! hard links out of the layer, whiteouts with a path in their name). One decompressing pass
//! does all of it, under the same [`Limits`] as archives.

use super::archive::{sniff, ArchiveError, Compression, Limits, Located};
use super::verify::HashingWriter;
use std::io::{self, BufReader, Read};

/// A layer containerd would refuse or unpack wrongly; the caller adds which layer it is.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer media type {media_type:?} is not one containerd unpacks; use one of: {known}")]
    MediaType { media_type: String, known: String },
    #[error("its media type says {declared} but its bytes are {found}: fix the media type or recompress the layer")]
    Compression {
        declared: &'static str,
        found: &'static str,
    },
    #[error("it is not a tar archive: {0}")]
    NotTar(io::Error),
    #[error("it is not a valid tar archive (after decompression): {0}")]
    InvalidTar(io::Error),
    #[error(transparent)]
    Limits(#[from] ArchiveError),
    #[error("{what} {path:?} is absolute: layer entries are relative to the layer root")]
    Absolute { what: String, path: String },
    #[error("{what} {path:?} has a path traversal (`..`) out of the layer root")]
    Traversal { what: String, path: String },
    #[error("whiteout {path:?} names no file in its directory (or leaves it)")]
    Whiteout { path: String },
    #[error("hard link {path:?} has no target")]
    NoTarget { path: String },
    #[error("hard link {path:?} points at a whiteout ({target:?})")]
    LinkToWhiteout { path: String, target: String },
    /// An I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io { context: String, cause: io::Error },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let context = context.into();
    move |cause| LayerError::Io { context, cause }
}

/// The layer media types containerd unpacks, with the compression each one means: OCI, the
/// OCI non-distributable variants (deprecated, still accepted), and Docker schema 2.
const KNOWN: &[(&str, Compression)] = &[
    ("application/vnd.oci.image.layer.v1.tar", Compression::None),
    (
        "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.v1.tar+zstd",
        Compression::Zstd,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        Compression::None,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        Compression::Zstd,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar",
        Compression::None,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        Compression::Gzip,
    ),
    (
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        Compression::Zstd,
    ),
    (
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        Compression::Gzip,
    ),
];

fn name(c: Compression) -> &'static str {
    match c {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// The compression a layer media type declares; unknown media types are refused.
pub fn declared(media_type: &str) -> Result<Compression, LayerError> {
    match KNOWN.iter().find(|(mt, _)| *mt == media_type) {
        Some((_, c)) => Ok(*c),
        None => Err(LayerError::MediaType {
            media_type: media_type.to_string(),
            known: KNOWN.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The compression of a layer's bytes, from its magic.
pub fn actual(loc: &Located) -> Result<Compression, LayerError> {
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(&loc.path)
        .map_err(io_error(format!("cannot open {}", loc.path.display())))?;
    let n = f
        .read(&mut head)
        .map_err(io_error(format!("cannot read {}", loc.path.display())))?;
    Ok(sniff(&head[..n]))
}

/// Checks a layer whose media type declares `declared` compression: its bytes must be that,
/// and uncompressed a tar archive with no escaping entry. Returns the sha256 of the
/// uncompressed stream (the diff_id).
pub fn check(loc: &Located, declared: Compression, limits: Limits) -> Result<String, LayerError> {
    let found = actual(loc)?;
    if found != declared {
        return Err(LayerError::Compression {
            declared: name(declared),
            found: name(found),
        });
    }
    let file = std::fs::File::open(&loc.path)
        .map_err(io_error(format!("cannot open {}", loc.path.display())))?;
    let buffered = BufReader::with_capacity(1 << 20, file);
    let reader: Box<dyn Read> = match found {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::Decoder::with_buffer(buffered)
                .map_err(io_error("cannot start a zstd decoder"))?,
        ),
    };
    scan(reader, limits)
}

/// Reads a layer's uncompressed tar stream to its end, checking every entry; returns the
/// stream's sha256.
fn scan(reader: impl Read, limits: Limits) -> Result<String, LayerError> {
    let mut hashed = HashingReader(HashingWriter::new(io::sink()), reader);
    let mut seen = (0, 0);
    {
        let mut tar = tar::Archive::new(&mut hashed);
        let entries = tar.entries().map_err(LayerError::NotTar)?;
        for entry in entries {
            let entry = entry.map_err(LayerError::InvalidTar)?;
            limits.count(&mut seen, entry.size(), "the layer")?;
            let raw = entry.path_bytes();
            let path = String::from_utf8_lossy(&raw).into_owned();
            check_name(&path)?;
            let kind = entry.header().entry_type();
            if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                check_hard_link(&path, &target)?;
            }
        }
    }
    // The tar reader stops at the end-of-archive blocks: the rest (padding) is part of the
    // diff_id too.
    io::copy(&mut hashed.1, &mut hashed.0).map_err(io_error("cannot read the layer to its end"))?;
    let HashingReader(writer, _) = hashed;
    let (_, hex, _) = writer.finish();
    Ok(hex)
}

/// A reader that hashes what passes through it.
struct HashingReader<R>(HashingWriter<io::Sink>, R);

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.1.read(buf)?;
        io::Write::write_all(&mut self.0, &buf[..n])?;
        Ok(n)
    }
}

/// Components of a layer path, refusing what would land outside the layer root.
fn components(path: &str, what: &str) -> Result<Vec<String>, LayerError> {
    if path.starts_with('/') {
        return Err(LayerError::Absolute {
            what: what.to_string(),
            path: path.to_string(),
        });
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(LayerError::Traversal {
                    what: what.to_string(),
                    path: path.to_string(),
                })
            }
            p => parts.push(p.to_owned()),
        }
    }
    Ok(parts)
}

/// An entry name: inside the layer root, and a whiteout (`.wh.<name>`) names one sibling.
fn check_name(path: &str) -> Result<(), LayerError> {
    let parts = components(path, "entry")?;
    if let Some(last) = parts.last() {
        if let Some(hidden) = last.strip_prefix(".wh.") {
            // `.wh..wh..opq` marks an opaque directory; any other whiteout hides one name.
            if hidden != ".wh..opq" && (hidden.is_empty() || hidden == "." || hidden == "..") {
                return Err(LayerError::Whiteout {
                    path: path.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// A hard link's target is another entry of the same layer: relative to the layer root.
fn check_hard_link(path: &str, target: &str) -> Result<(), LayerError> {
    if target.is_empty() {
        return Err(LayerError::NoTarget {
            path: path.to_string(),
        });
    }
    let parts = components(target, &format!("hard link {path:?} → target"))?;
    if parts.last().is_some_and(|p| p.starts_with(".wh.")) {
        return Err(LayerError::LinkToWhiteout {
            path: path.to_string(),
            target: target.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(0);
            h.set_mode(0o644);
            // Raw names: tar::Builder's helpers refuse `..`, which is what a hostile layer has.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                let l = l.as_bytes();
                h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
            }
            h.set_cksum();
            b.append(&h, io::empty()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn scan_err(entries: &[(&str, tar::EntryType, Option<&str>)]) -> String {
        scan(&tar_with(entries)[..], Limits::DEFAULT)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn known_media_types_only() {
        assert_eq!(
            declared("application/vnd.oci.image.layer.v1.tar+gzip").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            declared("application/vnd.docker.image.rootfs.diff.tar.gzip").unwrap(),
            Compression::Gzip
        );
        for bad in [
            "application/zip",
            "application/vnd.oci.image.layer.v1.tar+bzip2",
            "application/vnd.oci.image.config.v1+json",
            "",
            "application/vnd.oci.image.layer.v1.tar+gzip\n",
        ] {
            let e = declared(bad).unwrap_err().to_string();
            assert!(e.contains("not one containerd unpacks"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn escaping_entries_are_refused() {
        use tar::EntryType::{Link, Regular};
        for (entries, want) in [
            (vec![("../etc/passwd", Regular, None)], "traversal"),
            (vec![("a/../../x", Regular, None)], "traversal"),
            (vec![("/etc/shadow", Regular, None)], "absolute"),
            (
                vec![("a", Regular, None), ("b", Link, Some("../a"))],
                "traversal",
            ),
            (vec![("b", Link, Some("/etc/passwd"))], "absolute"),
            (vec![("b", Link, Some("a/.wh.x"))], "whiteout"),
            (vec![("etc/.wh...", Regular, None)], "whiteout"),
            (vec![("etc/.wh.", Regular, None)], "whiteout"),
            (vec![("etc/.wh..", Regular, None)], "whiteout"),
            (vec![(".wh.../../x", Regular, None)], "traversal"),
        ] {
            let e = scan_err(&entries);
            assert!(e.contains(want), "{entries:?}: {e}");
        }
    }

    #[test]
    fn ordinary_layers_pass_and_hash_whole_stream() {
        use tar::EntryType::{Link, Regular, Symlink};
        let bytes = tar_with(&[
            ("./bin/busybox", Regular, None),
            ("bin/sh", Link, Some("bin/busybox")),
            ("usr/lib/a.wh.b", Regular, None),
            ("usr/lib/c", Link, Some("usr/lib/a.wh.b")),
            ("bin/ls", Symlink, Some("/bin/busybox")),
            ("etc/.wh.old", Regular, None),
            ("var/.wh..wh..opq", Regular, None),
        ]);
        let hex = scan(&bytes[..], Limits::DEFAULT).unwrap();
        assert_eq!(hex, diskless_builder::store::sha256_hex(&bytes));
    }

    #[test]
    fn limits_apply_to_layers() {
        let bytes = tar_with(&[("a", tar::EntryType::Regular, None); 3]);
        let small = Limits {
            entries: 2,
            bytes: 1 << 20,
        };
        let e = scan(&bytes[..], small).unwrap_err().to_string();
        assert!(e.contains("more than 2 entries"), "{e}");
    }

    #[test]
    fn a_zip_is_not_a_tar() {
        let mut zip = b"PK\x03\x04".to_vec();
        zip.resize(1024, 7);
        assert!(scan(&zip[..], Limits::DEFAULT).is_err());
    }
}
