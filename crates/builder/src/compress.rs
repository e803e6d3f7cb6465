//! Compression of one segment. The kernel's initramfs reader accepts each algorithm per archive,
//! so every segment can choose its own.
//!
//! zstd runs in its multi-threaded mode even with one worker: zstd guarantees that mode's output
//! is the same for any number of workers ≥ 1, whereas single-threaded mode produces different
//! bytes. So `--jobs` changes speed, never the image.

use crate::plan::{Algorithm, Compression};
use std::io::Write;

pub const DEFAULT_ZSTD_LEVEL: i32 = 7;
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
pub const DEFAULT_ZSTD_WINDOW_LOG: u32 = 24;

/// A compression setting with its level resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Codec {
    pub algorithm: Algorithm,
    pub level: i32,
    /// zstd long-distance window (2^N bytes); 0 is off.
    pub window_log: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("{what}: zstd level {level} is out of range; use 1 to 19")]
    ZstdLevel { what: String, level: i32 },
    #[error("{what}: zstd window_log {window_log} is out of range; use 10 to 27, or 0 for off")]
    WindowLog { what: String, window_log: u32 },
    #[error("{what}: window_log applies to zstd only")]
    WindowLogNotZstd { what: String },
    #[error("{what}: gzip level {level} is out of range; use 0 to 9")]
    GzipLevel { what: String, level: i32 },
    #[error("compressing segment {segment}: {cause}")]
    Io {
        segment: String,
        cause: std::io::Error,
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
        let window_log = match (c.algorithm, c.window_log) {
            (Algorithm::Zstd, None) => DEFAULT_ZSTD_WINDOW_LOG,
            (Algorithm::Zstd, Some(w)) if w == 0 || (10..=27).contains(&w) => w,
            (Algorithm::Zstd, Some(w)) => {
                return Err(CompressError::WindowLog {
                    what: what.into(),
                    window_log: w,
                })
            }
            (_, None) => 0,
            (_, Some(_)) => return Err(CompressError::WindowLogNotZstd { what: what.into() }),
        };
        Ok(Codec {
            algorithm: c.algorithm,
            level,
            window_log,
        })
    }

    /// `zstd-10`, `gzip-6`, `none`: in the index and in cache keys.
    pub fn label(&self) -> String {
        match self.algorithm {
            Algorithm::Zstd if self.window_log > 0 => {
                format!("zstd-{}-long{}", self.level, self.window_log)
            }
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
        let io = |cause| CompressError::Io {
            segment: segment.into(),
            cause,
        };
        match self.algorithm {
            Algorithm::None => Ok(data.to_vec()),
            Algorithm::Zstd => {
                let mut enc =
                    zstd::stream::Encoder::new(Vec::with_capacity(data.len() / 3), self.level)
                        .map_err(io)?;
                enc.multithread(threads.max(1)).map_err(io)?;
                if self.window_log > 0 {
                    enc.long_distance_matching(true).map_err(io)?;
                    enc.window_log(self.window_log).map_err(io)?;
                }
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
        // Level 1 without a long window: ~2 MB jobs, so 6 MB is split among the workers.
        let c = Codec {
            algorithm: Algorithm::Zstd,
            level: 1,
            window_log: 0,
        };
        let d: Vec<u8> = data().into_iter().chain(data()).collect();
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
            window_log: 0,
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
                window_log: None,
            },
            "compression",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1 to 19"), "{e}");
    }
}
