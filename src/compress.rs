//! Compression of one segment. The kernel's initramfs reader accepts each algorithm per archive,
//! so every segment can choose its own.
//!
//! zstd runs in its multi-threaded mode even with one worker: zstd guarantees that mode's output
//! is the same for any number of workers ≥ 1, whereas single-threaded mode produces different
//! bytes. So `--jobs` changes speed, never the image.

use crate::plan::{Algorithm, Compression};
use std::io::Write;

pub const DEFAULT_ZSTD_LEVEL: i32 = 10;
pub const DEFAULT_GZIP_LEVEL: i32 = 6;

/// A compression setting with its level resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    pub algorithm: Algorithm,
    pub level: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("{what}: zstd level {level} is out of range; use 1 to 19")]
    ZstdLevel { what: String, level: i32 },
    #[error("{what}: gzip level {level} is out of range; use 0 to 9")]
    GzipLevel { what: String, level: i32 },
    #[error("compressing segment {segment}: {source}")]
    Io {
        segment: String,
        source: std::io::Error,
    },
}

impl Codec {
    /// Checks the level; `what` names the plan field for the message.
    pub fn from_plan(c: &Compression, what: &str) -> Result<Codec, CompressError> {
        let level = match c.algorithm {
            Algorithm::Zstd => {
                let level = c.level.unwrap_or(DEFAULT_ZSTD_LEVEL);
                if !(1..=19).contains(&level) {
                    return Err(CompressError::ZstdLevel {
                        what: what.into(),
                        level,
                    });
                }
                level
            }
            Algorithm::Gzip => {
                let level = c.level.unwrap_or(DEFAULT_GZIP_LEVEL);
                if !(0..=9).contains(&level) {
                    return Err(CompressError::GzipLevel {
                        what: what.into(),
                        level,
                    });
                }
                level
            }
            Algorithm::None => 0,
        };
        Ok(Codec {
            algorithm: c.algorithm,
            level,
        })
    }

    /// `zstd-10`, `gzip-6`, `none`: in the index and in cache keys.
    pub fn label(&self) -> String {
        match self.algorithm {
            Algorithm::Zstd => format!("zstd-{}", self.level),
            Algorithm::Gzip => format!("gzip-{}", self.level),
            Algorithm::None => "none".into(),
        }
    }

    /// Compresses `data` using up to `threads` threads.
    pub fn compress(
        &self,
        segment: &str,
        data: &[u8],
        threads: u32,
    ) -> Result<Vec<u8>, CompressError> {
        let io = |source| CompressError::Io {
            segment: segment.into(),
            source,
        };
        match self.algorithm {
            Algorithm::None => Ok(data.to_vec()),
            Algorithm::Zstd => {
                let mut enc =
                    zstd::stream::Encoder::new(Vec::with_capacity(data.len() / 3), self.level)
                        .map_err(io)?;
                enc.multithread(threads.max(1)).map_err(io)?;
                // The kernel's decompressor needs the content size or a checksum-free frame;
                // a checksum costs little and lets `zstd -t` validate a stored object.
                enc.include_checksum(true).map_err(io)?;
                enc.write_all(data).map_err(io)?;
                enc.finish().map_err(io)
            }
            Algorithm::Gzip => {
                // flate2 writes a header without mtime or file name: nothing host-specific.
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 3),
                    flate2::Compression::new(self.level as u32),
                );
                enc.write_all(data).map_err(io)?;
                enc.finish().map_err(io)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn zstd_output_does_not_depend_on_threads() {
        let c = Codec {
            algorithm: Algorithm::Zstd,
            level: 3,
        };
        let d = data();
        let one = c.compress("t", &d, 1).unwrap();
        assert_eq!(one, c.compress("t", &d, 2).unwrap());
        assert_eq!(one, c.compress("t", &d, 4).unwrap());
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), d);
    }

    #[test]
    fn gzip_round_trips() {
        let c = Codec {
            algorithm: Algorithm::Gzip,
            level: 6,
        };
        let d = data();
        let z = c.compress("t", &d, 1).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut out).unwrap();
        assert_eq!(out, d);
    }

    #[test]
    fn levels_are_checked() {
        let e = Codec::from_plan(
            &Compression {
                algorithm: Algorithm::Zstd,
                level: Some(30),
            },
            "compression",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1 to 19"), "{e}");
    }
}
