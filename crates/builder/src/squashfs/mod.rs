//! Squashfs packing: the read-only part of a segment (`/usr`, `/nix/store`) as one compressed
//! squashfs image that the init loop-mounts, instead of cpio entries the kernel unpacks.
//!
//! Why: the kernel unpacks every cpio byte into RAM before `/init` runs, and those pages can
//! never be reclaimed. Measured under TCG with the reference worker's containerd segment
//! (104 MB unpacked): `/init` started 2.6–3.4 s sooner with it packed as squashfs, and the
//! decompressed pages of a squashfs are page cache the kernel may drop and re-read, so only the
//! compressed image counts as used memory. NixOS's netboot ships its store the same way.
//!
//! The block codec is a plan setting (`codec.rs`, docs/performance.md for the choice); blocks
//! are compressed on every thread before backhand writes the image (`blocks.rs`).
//!
//! Reproducible: entries go in sorted order with the segment mtime and uid/gid 0, and a block's
//! compressed bytes depend only on its bytes and the codec.

mod blocks;
pub mod codec;

use crate::tree::{Content, Entry, EntryKind, Tree};
use backhand::{BackhandError, FilesystemWriter, NodeHeader};
pub use codec::SquashfsCodec;
use std::io::Cursor;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("segment {segment}: cannot read {}: {cause}", path.display())]
    Read {
        segment: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("segment {segment}: compressing squashfs blocks: {cause}")]
    Compress {
        segment: String,
        cause: std::io::Error,
    },
    #[error("segment {segment}: squashfs entry {path}: {cause}")]
    Entry {
        segment: String,
        path: String,
        cause: BackhandError,
    },
    #[error("segment {segment}: writing the squashfs image: {cause}")]
    Write {
        segment: String,
        cause: BackhandError,
    },
}

/// Image directories that may be squashfs-packed: the init mounts them read-only.
pub const READ_ONLY_DIRS: [&str; 2] = ["/usr", "/nix/store"];

/// Squashfs block size: 256 KiB decompresses little on each page fault yet compresses almost
/// as well as 1 MiB (measured on the containerd tree: 35.6 MB vs 34.4 MB).
const BLOCK_SIZE: u32 = 256 << 10;

/// Where the squashfs image of segment `name` sits in the image (and the contract says so).
pub fn image_path(name: &str) -> String {
    format!("/.diskless/squashfs/{name}.sqfs")
}

/// Whether `path` belongs in the squashfs part.
pub fn is_read_only(path: &str) -> bool {
    READ_ONLY_DIRS
        .iter()
        .any(|d| path == *d || path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// Splits a tree into (read-only part, the rest). The read-only part's parents (`/nix`)
/// stay in the rest too, so the mount points exist.
pub fn split(tree: &Tree) -> (Tree, Tree) {
    let (mut ro, mut rest) = (Tree::default(), Tree::default());
    for (p, e) in &tree.entries {
        let t = if is_read_only(p) { &mut ro } else { &mut rest };
        t.entries.insert(p.clone(), e.clone());
    }
    (ro, rest)
}

/// A label for the segment cache key: changes whenever the bytes would.
pub fn label(codec: SquashfsCodec) -> String {
    format!("squashfs-{}-b{BLOCK_SIZE}-backhand0.25", codec.label())
}

/// Packs `tree` (absolute image paths) into a squashfs image rooted at the image's `/`,
/// compressing on up to `threads` threads.
pub fn pack(
    name: &str,
    tree: &Tree,
    mtime: u32,
    codec: SquashfsCodec,
    threads: usize,
) -> Result<Vec<u8>, SquashfsError> {
    pack_counting(name, tree, mtime, codec, threads).map(|(image, _)| image)
}

/// [`pack`], and how many blocks were compressed during the write (not ahead).
fn pack_counting(
    name: &str,
    tree: &Tree,
    mtime: u32,
    codec: SquashfsCodec,
    threads: usize,
) -> Result<(Vec<u8>, usize), SquashfsError> {
    let ready = precompress(name, tree, codec, threads)?;
    let session = codec::Session {
        codec,
        ready,
        misses: Default::default(),
    };
    let (image, misses) =
        codec::with_session(session, |kind| write(name, tree, mtime, codec, kind));
    Ok((image?, misses))
}

/// The file blocks of `tree`, compressed on `threads` threads ahead of the write.
fn precompress(
    name: &str,
    tree: &Tree,
    codec: SquashfsCodec,
    threads: usize,
) -> Result<std::collections::HashMap<Vec<u8>, Vec<u8>>, SquashfsError> {
    // backhand's order: paths compared by component.
    let mut files: Vec<(&str, &Content)> = tree
        .entries
        .iter()
        .filter_map(|(p, e)| match &e.kind {
            EntryKind::File(c) => Some((p.as_str(), c)),
            _ => None,
        })
        .collect();
    files.sort_by(|a, b| Path::new(a.0).cmp(Path::new(b.0)));
    let mut layout = blocks::Layout::new(BLOCK_SIZE as usize);
    for (_, content) in files {
        match content {
            Content::Path { path: src, .. } => {
                layout.add(&std::fs::read(src).map_err(|cause| SquashfsError::Read {
                    segment: name.into(),
                    path: src.clone(),
                    cause,
                })?)
            }
            Content::Bytes(b) => layout.add(b),
        }
    }
    let blocks = layout.finish();
    blocks::compress(blocks, codec, threads).map_err(|cause| SquashfsError::Compress {
        segment: name.into(),
        cause,
    })
}

fn write(
    name: &str,
    tree: &Tree,
    mtime: u32,
    codec: SquashfsCodec,
    kind: backhand::kind::Kind,
) -> Result<Vec<u8>, SquashfsError> {
    let failed = |cause| SquashfsError::Write {
        segment: name.into(),
        cause,
    };
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    fs.set_block_size(BLOCK_SIZE);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_kind(kind);
    fs.set_compressor(codec.filesystem_compressor().map_err(failed)?);
    let header = |mode: u32| NodeHeader::new((mode & 0o7777) as u16, 0, 0, mtime);
    let mut tree = tree.clone();
    tree.add_parents();
    // Sorted paths: every directory comes before what it holds.
    for (path, entry) in &tree.entries {
        let rel = path.trim_start_matches('/');
        let Entry { kind, mode, .. } = entry;
        let r = match kind {
            EntryKind::Dir => fs.push_dir(rel, header(*mode)),
            EntryKind::Symlink(target) => fs.push_symlink(target, rel, header(0o777)),
            EntryKind::File(Content::Path { path: src, .. }) => {
                fs.push_file_from_path(src.clone(), rel, header(*mode))
            }
            EntryKind::File(Content::Bytes(b)) => {
                fs.push_file(Cursor::new(b.as_ref().clone()), rel, header(*mode))
            }
        };
        r.map_err(|cause| SquashfsError::Entry {
            segment: name.into(),
            path: path.clone(),
            cause,
        })?;
    }
    let mut out = Cursor::new(Vec::new());
    fs.write(&mut out).map_err(failed)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::SquashfsAlgorithm;
    use std::sync::Arc;

    fn file(bytes: Vec<u8>) -> Entry {
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(bytes))),
            mode: 0o644,
            origin: "test".into(),
        }
    }

    /// Files of every shape: several blocks, exactly one block, holes, duplicates, small files
    /// that fill fragment blocks, empty; names whose string and path orders differ.
    fn tree() -> Tree {
        let mut t = Tree::default();
        let block = BLOCK_SIZE as usize;
        let noise = |n: usize, seed: u32| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(seed) >> 7) as u8)
                .collect()
        };
        let mut holed = noise(3 * block + 5, 7);
        holed[block..2 * block].fill(0);
        for (p, b) in [
            ("/usr/a-b", noise(2 * block + 100, 3)),
            ("/usr/a/b", noise(block, 5)),
            ("/usr/a/c", noise(block, 5)),
            ("/usr/holed", holed),
            ("/usr/empty", Vec::new()),
        ] {
            t.entries.insert(p.into(), file(b));
        }
        for i in 0..40u32 {
            t.entries.insert(
                format!("/usr/small/{i}"),
                file(noise(20_000 + i as usize, i + 11)),
            );
        }
        t
    }

    #[test]
    fn bytes_do_not_depend_on_threads_and_blocks_are_compressed_ahead() {
        for codec in [
            SquashfsCodec {
                algorithm: crate::plan::SquashfsAlgorithm::Lz4hc,
                level: 9,
            },
            SquashfsCodec {
                algorithm: SquashfsAlgorithm::Zstd,
                level: 3,
            },
        ] {
            let t = tree();
            let (one, misses) = pack_counting("t", &t, 7, codec, 1).unwrap();
            let (three, _) = pack_counting("t", &t, 7, codec, 3).unwrap();
            assert!(
                one == three,
                "{codec:?}: the image changed with the threads"
            );
            // Every data and fragment block came ready; only metadata blocks (2 here: the
            // inode and directory tables) were compressed during the write.
            assert!(
                misses <= 2,
                "{codec:?}: {misses} blocks compressed during the write"
            );
        }
    }
}
