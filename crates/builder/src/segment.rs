//! tree → one reproducible `newc` cpio archive (a segment), ending with its sentinel file.
//!
//! Everything that could leak from the build host is fixed here, in one place: entries in byte
//! order of their path, uid/gid 0, one mtime for all, inode numbers counted from 1, nlink 1 for
//! files and 2 for directories, no device numbers. Facts about the kernel's reader
//! (`init/initramfs.c`) that shape this:
//! - it creates exactly what the archive lists, so every parent directory must come before its
//!   children (byte order of full paths guarantees that, since a parent is a prefix);
//! - it treats regular files with nlink ≥ 2 as hard-link candidates keyed by inode, so nlink is 1;
//! - a file is at most 4 GiB − 1 bytes (the size field is 8 hex digits);
//! - concatenated archives are read one after the other, each ending with `TRAILER!!!`.

use crate::tree::{Content, Entry, EntryKind, Tree};
use diskless_contract::image::SENTINEL_DIR;
use std::io::{Read, Write};
use std::path::PathBuf;

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{origin}: cannot read {path}: {cause}")]
    Read {
        origin: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{origin}: {path} changed while the image was built (expected {expected} bytes, read {found}); build again"
    )]
    Changed {
        origin: String,
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{origin}: {dest} is {size} bytes; a cpio (newc) file holds at most 4 GiB - 1")]
    TooLarge {
        origin: String,
        dest: String,
        size: u64,
    },
}

/// A written segment before compression.
#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    /// The whole archive, sentinel and trailer included.
    pub cpio: Vec<u8>,
    /// sha256 (hex) of the archive's entries before the sentinel: the sentinel's contents.
    pub content: String,
    /// Sum of file sizes.
    pub unpacked_size: u64,
    /// Number of regular files (the sentinel included).
    pub files: u64,
}

/// Path of a segment's sentinel inside the image.
pub fn sentinel_path(name: &str) -> String {
    format!("{SENTINEL_DIR}/{name}")
}

/// Writes `tree` as a newc archive named `name`, with `mtime` on every entry.
pub fn write(name: &str, tree: &Tree, mtime: u32) -> Result<Segment, SegmentError> {
    let mut tree = tree.clone();
    tree.add_parents();
    let capacity = tree.file_bytes();
    let mut out = Writer {
        buf: Vec::with_capacity(capacity as usize + tree.entries.len() * 160 + 4096),
        ino: 0,
        mtime,
        unpacked: 0,
        files: 0,
    };
    for (path, entry) in &tree.entries {
        out.entry(path, entry)?;
    }
    let content = crate::store::sha256_hex(&out.buf);

    // The sentinel's own parents may already be in the tree; writing a directory twice is
    // harmless to the kernel but we avoid it for a clean listing.
    let sentinel = sentinel_path(name);
    let mut tail = Tree::default();
    tail.entries.insert(
        sentinel.clone(),
        Entry {
            kind: EntryKind::File(Content::Bytes(format!("{content}\n").into_bytes().into())),
            mode: 0o444,
            origin: "sentinel".into(),
        },
    );
    tail.add_parents();
    for (path, entry) in &tail.entries {
        if !tree.entries.contains_key(path) {
            out.entry(path, entry)?;
        }
    }
    let mut buf = cpio::newc::trailer(out.buf).expect("writing to a Vec cannot fail");
    // The kernel reads the next archive from the next 4-byte boundary; the trailer is padded
    // by the cpio crate already, this keeps it true even if that ever changes.
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
    Ok(Segment {
        name: name.to_string(),
        cpio: buf,
        content,
        unpacked_size: out.unpacked,
        files: out.files,
    })
}

struct Writer {
    buf: Vec<u8>,
    ino: u32,
    mtime: u32,
    unpacked: u64,
    files: u64,
}

impl Writer {
    fn header(&mut self, path: &str, mode: u32, nlink: u32) -> cpio::newc::Builder {
        self.ino += 1;
        // Archive names are relative ("usr/bin/x"), as GNU cpio and the kernel expect.
        cpio::newc::Builder::new(path.trim_start_matches('/'))
            .ino(self.ino)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(nlink)
            .mtime(self.mtime)
    }

    fn entry(&mut self, path: &str, entry: &Entry) -> Result<(), SegmentError> {
        let perm = entry.mode & 0o7777;
        match &entry.kind {
            EntryKind::Dir => {
                let h = self.header(path, S_IFDIR | perm, 2);
                let w = h.write(&mut self.buf, 0);
                w.finish().expect("Vec write");
            }
            EntryKind::Symlink(target) => {
                let h = self.header(path, S_IFLNK | 0o777, 1);
                let mut w = h.write(&mut self.buf, target.len() as u32);
                w.write_all(target.as_bytes()).expect("Vec write");
                w.finish().expect("Vec write");
            }
            EntryKind::File(content) => {
                let size = content.size();
                if size > u32::MAX as u64 {
                    return Err(SegmentError::TooLarge {
                        origin: entry.origin.clone(),
                        dest: path.to_string(),
                        size,
                    });
                }
                let h = self.header(path, S_IFREG | perm, 1);
                let mut w = h.write(&mut self.buf, size as u32);
                match content {
                    Content::Bytes(b) => w.write_all(b).expect("Vec write"),
                    Content::Path { path: src, size } => {
                        let read_err = |cause| SegmentError::Read {
                            origin: entry.origin.clone(),
                            path: src.clone(),
                            cause,
                        };
                        let f = std::fs::File::open(src).map_err(read_err)?;
                        // take(size + 1) notices a file that grew; a short copy one that shrank.
                        let n = std::io::copy(&mut f.take(size + 1), &mut w).or_else(|e| {
                            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                                Ok(size + 1)
                            } else {
                                Err(read_err(e))
                            }
                        })?;
                        if n != *size {
                            return Err(SegmentError::Changed {
                                origin: entry.origin.clone(),
                                path: src.clone(),
                                expected: *size,
                                found: n,
                            });
                        }
                    }
                }
                w.finish().expect("Vec write");
                self.unpacked += size;
                self.files += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn file(bytes: &[u8], mode: u32) -> Entry {
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(bytes.to_vec()))),
            mode,
            origin: "test".into(),
        }
    }

    fn read_back(cpio: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r: &[u8] = cpio;
        loop {
            let mut rd = cpio::newc::Reader::new(r).unwrap();
            if rd.entry().is_trailer() {
                break;
            }
            let (name, mode, ino) = (
                rd.entry().name().to_string(),
                rd.entry().mode(),
                rd.entry().ino(),
            );
            let mut data = Vec::new();
            rd.read_to_end(&mut data).unwrap();
            out.push((name, mode, ino, data));
            r = rd.finish().unwrap();
        }
        out
    }

    #[test]
    fn parents_come_first_and_sentinel_last() {
        let mut t = Tree::default();
        t.entries.insert("/usr/bin/tool".into(), file(b"x", 0o755));
        t.entries.insert("/etc/a-b".into(), file(b"y", 0o644));
        let seg = write("base", &t, 0).unwrap();
        let names: Vec<String> = read_back(&seg.cpio).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "etc",
                "etc/a-b",
                "usr",
                "usr/bin",
                "usr/bin/tool",
                ".diskless",
                ".diskless/segments",
                ".diskless/segments/base"
            ]
        );
        let last = read_back(&seg.cpio).pop().unwrap();
        assert_eq!(last.3, format!("{}\n", seg.content).into_bytes());
        assert_eq!(seg.cpio.len() % 4, 0);
    }

    #[test]
    fn modes_carry_file_type_and_permissions() {
        let mut t = Tree::default();
        t.entries.insert("/tmp".into(), {
            let mut e = file(b"", 0);
            e.kind = EntryKind::Dir;
            e.mode = 0o1777;
            e
        });
        t.entries.insert(
            "/bin/sh".into(),
            Entry {
                kind: EntryKind::Symlink("busybox".into()),
                mode: 0o777,
                origin: "t".into(),
            },
        );
        let entries = read_back(&write("s", &t, 0).unwrap().cpio);
        let tmp = entries.iter().find(|e| e.0 == "tmp").unwrap();
        assert_eq!(tmp.1, 0o041777);
        let sh = entries.iter().find(|e| e.0 == "bin/sh").unwrap();
        assert_eq!(sh.1, 0o120777);
        assert_eq!(sh.3, b"busybox");
    }

    #[test]
    fn same_tree_same_bytes() {
        let mut t = Tree::default();
        for i in 0..50 {
            t.entries
                .insert(format!("/d{}/f{i}", i % 7), file(&[i as u8; 33], 0o600));
        }
        assert_eq!(
            write("x", &t, 7).unwrap().cpio,
            write("x", &t, 7).unwrap().cpio
        );
    }

    #[test]
    fn changed_source_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        let mut t = Tree::default();
        t.entries.insert(
            "/f".into(),
            Entry {
                kind: EntryKind::File(Content::Path { path: p, size: 3 }),
                mode: 0o644,
                origin: "c".into(),
            },
        );
        let e = write("x", &t, 0).unwrap_err().to_string();
        assert!(e.contains("changed while"), "{e}");
    }
}
