//! The squashfs block codec: the plan's setting checked, and the compressor backhand calls.
//!
//! backhand compresses blocks one after another on the thread that writes the image; its
//! compressor must be a `'static`. So [`pack`](super::pack) compresses the file blocks on
//! every thread first ([`super::blocks`]) and hands them to that `'static` through a
//! thread-local for the duration of one write: backhand's calls find each block by its bytes
//! (compared whole, not by a hash) and compress only what was not foreseen (metadata, a
//! fragment block laid out differently).

use crate::plan::{SquashfsAlgorithm, SquashfsCompression};
use backhand::compression::{
    CompressionAction, CompressionOptions, Compressor, DefaultCompressor, Lz4, Zstd,
};
use backhand::kind::Kind;
use backhand::{BackhandError, FilesystemCompressor, SuperBlock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::RangeInclusive;

/// LZ4-HC's default level, as `mksquashfs -comp lz4 -Xhc` uses.
pub const DEFAULT_LZ4HC_LEVEL: i32 = 9;
/// mksquashfs's default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 15;

/// Squashfs's LZ4 options: the "legacy" LZ4 format (the only one the kernel reads), HC flag.
const LZ4_OPTIONS: Lz4 = Lz4 {
    version: 1,
    flags: 1,
};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{what}: lz4hc level {level} is out of range; use 1 to 12")]
    Lz4hcLevel { what: String, level: i32 },
    #[error("{what}: zstd level {level} is out of range; use 1 to 22")]
    ZstdLevel { what: String, level: i32 },
    #[error("{what}: applies to packing \"squashfs\" only; remove it or set packing")]
    NotSquashfs { what: String },
}

/// A squashfs block codec with its level resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SquashfsCodec {
    pub algorithm: SquashfsAlgorithm,
    pub level: i32,
}

/// The plan's default setting, resolved.
impl Default for SquashfsCodec {
    fn default() -> Self {
        SquashfsCodec::from_plan(&SquashfsCompression::default(), "squashfs")
            .expect("the default squashfs setting is in range")
    }
}

/// An algorithm's level range and the level it takes when the plan gives none: the one place
/// a squashfs level is checked (`data/defaults.json` hands them to the Nix option's assertion).
pub fn levels(algorithm: SquashfsAlgorithm) -> (RangeInclusive<i32>, i32) {
    match algorithm {
        SquashfsAlgorithm::Lz4hc => (1..=12, DEFAULT_LZ4HC_LEVEL),
        SquashfsAlgorithm::Zstd => (1..=22, DEFAULT_ZSTD_LEVEL),
    }
}

impl SquashfsCodec {
    /// Checks the level; `what` names the plan field for the message.
    pub fn from_plan(c: &SquashfsCompression, what: &str) -> Result<Self, CodecError> {
        let (range, default) = levels(c.algorithm);
        let level = c.level.unwrap_or(default);
        if !range.contains(&level) {
            let what = what.to_string();
            return Err(match c.algorithm {
                SquashfsAlgorithm::Lz4hc => CodecError::Lz4hcLevel { what, level },
                SquashfsAlgorithm::Zstd => CodecError::ZstdLevel { what, level },
            });
        }
        Ok(SquashfsCodec {
            algorithm: c.algorithm,
            level,
        })
    }

    /// `lz4hc-9`, `zstd-15`: in cache keys.
    pub fn label(&self) -> String {
        match self.algorithm {
            SquashfsAlgorithm::Lz4hc => format!("lz4hc-{}", self.level),
            SquashfsAlgorithm::Zstd => format!("zstd-{}", self.level),
        }
    }

    /// What the superblock says: the id and the options block readers check.
    pub fn filesystem_compressor(&self) -> Result<FilesystemCompressor, BackhandError> {
        match self.algorithm {
            SquashfsAlgorithm::Lz4hc => FilesystemCompressor::new(
                Compressor::Lz4,
                Some(CompressionOptions::Lz4(LZ4_OPTIONS)),
            ),
            // Informative only (the kernel ignores zstd's options), as mksquashfs writes it.
            SquashfsAlgorithm::Zstd => FilesystemCompressor::new(
                Compressor::Zstd,
                Some(CompressionOptions::Zstd(Zstd {
                    compression_level: self.level as u32,
                })),
            ),
        }
    }

    /// A compressor for one thread (zstd's context is reused: setting one up costs more
    /// than compressing a small block).
    pub fn compressor(&self) -> std::io::Result<BlockCompressor> {
        Ok(match self.algorithm {
            SquashfsAlgorithm::Lz4hc => BlockCompressor::Lz4hc(self.level),
            SquashfsAlgorithm::Zstd => {
                BlockCompressor::Zstd(Box::new(zstd::bulk::Compressor::new(self.level)?))
            }
        })
    }
}

pub enum BlockCompressor {
    Lz4hc(i32),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl BlockCompressor {
    /// One block: a plain LZ4 block (backhand's own LZ4, lz4_flex, has no HC mode: 23 %
    /// larger images) or one zstd frame with its size, which bounds the kernel's window.
    pub fn compress(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            BlockCompressor::Lz4hc(level) => {
                let mode = lz4::block::CompressionMode::HIGHCOMPRESSION(*level);
                lz4::block::compress(bytes, Some(mode), false)
            }
            BlockCompressor::Zstd(z) => z.compress(bytes),
        }
    }
}

/// One write's codec and the blocks compressed ahead, keyed by their uncompressed bytes.
pub struct Session {
    pub codec: SquashfsCodec,
    pub ready: HashMap<Vec<u8>, Vec<u8>>,
    /// Blocks compressed during the write: metadata, and any block `ready` lacked.
    pub misses: std::cell::Cell<usize>,
}

thread_local! {
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// Runs `write` with `session` visible to backhand's calls on this thread, and clears it
/// after; returns what `write` returned and the session's misses.
pub fn with_session<T>(session: Session, write: impl FnOnce(Kind) -> T) -> (T, usize) {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            SESSION.with(|s| s.borrow_mut().take());
        }
    }
    SESSION.with(|s| *s.borrow_mut() = Some(session));
    let clear = Clear;
    let out = write(Kind::new_v4(&CODEC));
    let misses = SESSION.with(|s| s.borrow().as_ref().map_or(0, |s| s.misses.get()));
    drop(clear);
    (out, misses)
}

/// The `'static` compressor backhand calls; the state is the thread's [`Session`].
struct Codec;
static CODEC: Codec = Codec;

impl CompressionAction for Codec {
    type Error = BackhandError;
    type Compressor = Compressor;
    type FilesystemCompressor = FilesystemCompressor;
    type SuperBlock = SuperBlock;

    fn decompress(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        c: Compressor,
    ) -> Result<(), Self::Error> {
        DefaultCompressor.decompress(bytes, out, c)
    }

    fn compress(
        &self,
        bytes: &[u8],
        _: FilesystemCompressor,
        _: u32,
    ) -> Result<Vec<u8>, Self::Error> {
        SESSION.with(|s| {
            let s = s.borrow();
            let s = s.as_ref().ok_or_else(|| {
                BackhandError::from(std::io::Error::other(
                    "squashfs compressor called outside a write session",
                ))
            })?;
            match s.ready.get(bytes) {
                Some(done) => Ok(done.clone()),
                None => {
                    s.misses.set(s.misses.get() + 1);
                    Ok(s.codec.compressor()?.compress(bytes)?)
                }
            }
        })
    }

    fn compression_options(
        &self,
        superblock: &mut SuperBlock,
        kind: &Kind,
        fs_compressor: FilesystemCompressor,
    ) -> Result<Option<Vec<u8>>, Self::Error> {
        DefaultCompressor.compression_options(superblock, kind, fs_compressor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_per_algorithm() {
        let c = |algorithm, level| SquashfsCompression { algorithm, level };
        let ok = SquashfsCodec::from_plan(&c(SquashfsAlgorithm::Zstd, None), "squashfs").unwrap();
        assert_eq!(ok.label(), "zstd-15");
        assert_eq!(
            SquashfsCodec::from_plan(&SquashfsCompression::default(), "squashfs").unwrap(),
            SquashfsCodec::default()
        );
        let e = SquashfsCodec::from_plan(&c(SquashfsAlgorithm::Lz4hc, Some(13)), "squashfs")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("squashfs: lz4hc level 13") && e.contains("1 to 12"),
            "{e}"
        );
        let e = SquashfsCodec::from_plan(&c(SquashfsAlgorithm::Zstd, Some(0)), "x.squashfs")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.squashfs: zstd level 0"), "{e}");
    }

    /// The Nix option's assertion reads the ranges from `data/defaults.json`.
    #[test]
    fn defaults_json_has_these_levels() {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../../data/defaults.json")).unwrap();
        for (name, algorithm) in [
            ("lz4hc", SquashfsAlgorithm::Lz4hc),
            ("zstd", SquashfsAlgorithm::Zstd),
        ] {
            let (range, default) = levels(algorithm);
            let l = &json["squashfs_levels"][name];
            assert_eq!(l["min"], *range.start(), "{name}");
            assert_eq!(l["max"], *range.end(), "{name}");
            assert_eq!(l["default"], default, "{name}");
        }
    }
}
