//! `diskless inspect OUT_DIR`: what an image contains, per segment and per file, largest first,
//! read back from the stored objects (not from the plan), so it shows what a machine will get.

use crate::index::{Index, IndexError};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Image name (`<name>.json` in the output directory).
    pub name: String,
    /// How many files to list (largest first); 0 lists all.
    pub top: usize,
}

#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub name: String,
    pub description: String,
    pub cmdline: String,
    pub kernel_size: u64,
    pub segments: Vec<SegmentInfo>,
    /// Largest files first: (path, size, segment).
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Serialize)]
pub struct SegmentInfo {
    pub name: String,
    pub size: u64,
    pub unpacked_size: u64,
    pub files: u64,
    pub compression: String,
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub mode: String,
    pub segment: String,
}

impl InspectReport {
    pub fn print(&self) {
        println!("{}: {}", self.name, self.description);
        println!("cmdline: {}", self.cmdline);
        println!("kernel: {} bytes", self.kernel_size);
        let mut segs: Vec<&SegmentInfo> = self.segments.iter().collect();
        segs.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
        println!(
            "{:<24} {:>12} {:>12} {:>7} {:>6}  compression",
            "segment", "size", "unpacked", "files", "ratio"
        );
        for s in segs {
            println!(
                "{:<24} {:>12} {:>12} {:>7} {:>6.2}  {}",
                s.name, s.size, s.unpacked_size, s.files, s.ratio, s.compression
            );
        }
        println!("{:>12}  {:<6} {:<16} path", "size", "mode", "segment");
        for f in &self.files {
            println!("{:>12}  {:<6} {:<16} {}", f.size, f.mode, f.segment, f.path);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("segment {segment}: cannot read {}: {cause}", path.display())]
    Read {
        segment: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("segment {segment}: cannot decompress {}: {cause}", path.display())]
    Decompress {
        segment: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("segment {segment}: not a newc archive: {cause}")]
    Cpio {
        segment: String,
        cause: std::io::Error,
    },
}

/// Decompresses a stored segment, whatever its codec (detected from its magic bytes).
pub fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?;
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
    } else {
        out = bytes.to_vec();
    }
    Ok(out)
}

/// Every entry of one newc archive: (name, mode, size).
pub fn list_cpio(data: &[u8]) -> std::io::Result<Vec<(String, u32, u64)>> {
    let mut out = Vec::new();
    let mut r: &[u8] = data;
    loop {
        let rd = cpio::newc::Reader::new(r)?;
        if rd.entry().is_trailer() {
            break;
        }
        let e = rd.entry();
        out.push((e.name().to_string(), e.mode(), e.file_size() as u64));
        r = rd.finish()?;
    }
    Ok(out)
}

pub fn inspect(out: &Path, args: &InspectOptions) -> Result<InspectReport, InspectError> {
    let index = Index::load(&out.join(format!("{}.json", args.name)))?;
    let mut segments = Vec::new();
    let mut files = Vec::new();
    for s in &index.segments {
        let path = out.join(s.object_path());
        let bytes = std::fs::read(&path).map_err(|cause| InspectError::Read {
            segment: s.name.clone(),
            path: path.clone(),
            cause,
        })?;
        let data = decompress(&bytes).map_err(|cause| InspectError::Decompress {
            segment: s.name.clone(),
            path: path.clone(),
            cause,
        })?;
        let entries = list_cpio(&data).map_err(|cause| InspectError::Cpio {
            segment: s.name.clone(),
            cause,
        })?;
        for (name, mode, size) in entries {
            if mode & 0o170000 == 0o100000 {
                files.push(FileInfo {
                    path: format!("/{name}"),
                    size,
                    mode: format!("{:04o}", mode & 0o7777),
                    segment: s.name.clone(),
                });
            }
        }
        segments.push(SegmentInfo {
            name: s.name.clone(),
            size: s.size,
            unpacked_size: s.unpacked_size,
            files: s.files,
            compression: s.compression.clone(),
            ratio: if s.size > 0 {
                s.unpacked_size as f64 / s.size as f64
            } else {
                0.0
            },
        });
    }
    files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    if args.top > 0 {
        files.truncate(args.top);
    }
    Ok(InspectReport {
        name: index.name.into(),
        description: index.description.into(),
        cmdline: index.cmdline.into(),
        kernel_size: index.kernel.size,
        segments,
        files,
    })
}
