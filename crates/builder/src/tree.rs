//! The data model every step shares: a tree of absolute paths inside the image → entries.
//! `resolve` makes one per component, `segment` and `squashfs` write them, `oci` makes one per
//! preloaded image, `publish` one per node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What one segment will contain: absolute path inside the image → entry. A `BTreeMap` so
/// iteration order (and therefore the cpio) never depends on readdir or hash order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Sum of the sizes of the regular files: what the tree costs unpacked.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                EntryKind::File(c) => c.size(),
                _ => 0,
            })
            .sum()
    }

    /// Adds every missing parent directory of every entry (mode 0755), so a tree from any source
    /// unpacks completely.
    pub fn add_parents(&mut self) {
        let mut missing = Vec::new();
        for path in self.entries.keys() {
            let mut p = path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                if p.is_empty() {
                    break;
                }
                if !self.entries.contains_key(p) {
                    missing.push(p.to_string());
                }
            }
        }
        for p in missing {
            self.entries.entry(p).or_insert_with(|| Entry {
                kind: EntryKind::Dir,
                mode: 0o755,
                origin: "parent directory".into(),
            });
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits only (07777); the file type comes from `kind`.
    pub mode: u32,
    /// Where the entry came from, for error messages ("component base: files[2]").
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    Dir,
    File(Content),
    Symlink(String),
}

/// A regular file's bytes: read from a source path when the segment is written, or held in memory.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Path { path: PathBuf, size: u64 },
    Bytes(Arc<Vec<u8>>),
}

impl Content {
    pub fn size(&self) -> u64 {
        match self {
            Content::Path { size, .. } => *size,
            Content::Bytes(b) => b.len() as u64,
        }
    }
}
