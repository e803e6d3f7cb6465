//! One kernel module file, as the init's `finit_module(fd, "", 0)` takes it: a plain ELF object.
//!
//! Distributions compress their modules: nixpkgs `.ko.xz`, Debian 13 and Ubuntu `.ko.xz` or
//! `.ko.zst`, others `.ko.gz`. A kernel loads a compressed module only when it was built with
//! `CONFIG_MODULE_DECOMPRESS` *and* is asked to (`MODULE_INIT_COMPRESSED_FILE`), so the builder
//! stores every module decompressed, under its `.ko` name, and `kmod.rs` rewrites
//! `modules.dep` to match. That works with every kernel and keeps the init free of
//! decompressors; the download hardly grows, as each segment is compressed as a whole.

use std::io::Read;
use std::path::Path;

/// How a module file in a module tree is compressed, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

const SUFFIXES: &[(Compression, &str)] = &[
    (Compression::Xz, ".ko.xz"),
    (Compression::Zstd, ".ko.zst"),
    (Compression::Gzip, ".ko.gz"),
];

impl Compression {
    /// `kernel/fs/overlayfs/overlay.ko.xz` → `Xz`; a plain `.ko` (or anything else) → `None`.
    pub fn of(relpath: &str) -> Compression {
        SUFFIXES
            .iter()
            .find(|(_, s)| relpath.ends_with(s))
            .map_or(Compression::None, |(c, _)| *c)
    }
}

/// The path a module has in the image: its tree path with `.ko.xz`/`.ko.zst`/`.ko.gz`
/// shortened to `.ko`.
pub fn stored_path(relpath: &str) -> String {
    for (_, suffix) in SUFFIXES {
        if let Some(stem) = relpath.strip_suffix(suffix) {
            return format!("{stem}.ko");
        }
    }
    relpath.to_string()
}

/// The module at `path`, decompressed as its name says. The result must be an ELF object: a
/// file that is not (a truncated stream, the wrong suffix) is refused here rather than by the
/// kernel at boot.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.to_string_lossy();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut out = Vec::new();
    let compression = Compression::of(&name);
    let result = match compression {
        Compression::None => std::io::BufReader::new(file).read_to_end(&mut out),
        Compression::Xz => liblzma::read::XzDecoder::new(file).read_to_end(&mut out),
        Compression::Zstd => zstd::Decoder::new(file).and_then(|mut d| d.read_to_end(&mut out)),
        Compression::Gzip => flate2::read::GzDecoder::new(file).read_to_end(&mut out),
    };
    result.map_err(|e| format!("cannot decompress {name} ({compression:?}): {e}"))?;
    if !out.starts_with(b"\x7fELF") {
        return Err(format!(
            "{name} is not a kernel module: no ELF header{}",
            match compression {
                Compression::None => String::new(),
                c => format!(" after {c:?} decompression"),
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MODULE: &[u8] = b"\x7fELF\x02\x01\x01\0 a relocatable object, as far as this test goes";

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn every_compression_reads_back_the_elf_object() {
        let d = tempfile::tempdir().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(MODULE).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(MODULE).unwrap();
        for (name, bytes) in [
            ("a.ko", MODULE.to_vec()),
            ("b.ko.xz", xz.finish().unwrap()),
            ("c.ko.zst", zstd::encode_all(MODULE, 19).unwrap()),
            ("d.ko.gz", gz.finish().unwrap()),
        ] {
            assert_eq!(
                read(&write(d.path(), name, &bytes)).unwrap(),
                MODULE,
                "{name}"
            );
        }
    }

    #[test]
    fn corrupt_or_mislabelled_modules_are_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let e = read(&write(d.path(), "bad.ko.xz", b"not xz at all")).unwrap_err();
        assert!(e.contains("bad.ko.xz") && e.contains("Xz"), "{e}");
        let plain_as_zst = write(d.path(), "plain.ko.zst", MODULE);
        let e = read(&plain_as_zst).unwrap_err();
        assert!(e.contains("plain.ko.zst"), "{e}");
        let text = zstd::encode_all(&b"#!/bin/sh\n"[..], 3).unwrap();
        let e = read(&write(d.path(), "script.ko.zst", &text)).unwrap_err();
        assert!(e.contains("no ELF header after Zstd"), "{e}");
    }

    #[test]
    fn stored_paths_drop_the_compression_suffix() {
        assert_eq!(stored_path("kernel/a/b.ko.xz"), "kernel/a/b.ko");
        assert_eq!(stored_path("kernel/a/b.ko.zst"), "kernel/a/b.ko");
        assert_eq!(stored_path("kernel/a/b.ko.gz"), "kernel/a/b.ko");
        assert_eq!(stored_path("kernel/a/b.ko"), "kernel/a/b.ko");
        assert_eq!(Compression::of("x/y.ko.zst"), Compression::Zstd);
        assert_eq!(Compression::of("x/y.ko"), Compression::None);
    }
}
