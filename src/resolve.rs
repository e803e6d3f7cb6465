//! plan → resolved tree: every component becomes a checked map of absolute paths to entries
//! (in progress: the types are settled, the resolution is being written).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What one segment will contain: absolute path inside the image → entry. A `BTreeMap` so
/// iteration order (and therefore the cpio) never depends on readdir or hash order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
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
