//! The one place a path enters a tree: two entries at one path must leave the same thing in the
//! image, or the plan is refused with both origins named.

use super::error::ResolveError;
use crate::tree::{Content, Entry, EntryKind, Tree};
use std::sync::Arc;

/// Collects one component's entries, and names its plan fields for errors.
pub(super) struct Collector<'a> {
    index: usize,
    component: &'a str,
    pub(super) tree: Tree,
}

impl<'a> Collector<'a> {
    pub(super) fn new(index: usize, component: &'a str) -> Self {
        Collector {
            index,
            component,
            tree: Tree::default(),
        }
    }

    pub(super) fn insert(&mut self, path: String, entry: Entry) -> Result<(), ResolveError> {
        insert_checked(&mut self.tree, path, entry)
    }

    /// Where an entry came from, as stored in it: `component base: files[2] /etc/hosts`.
    pub(super) fn origin(&self, field: &str) -> String {
        format!("component {}: {field}", self.component)
    }

    /// The plan field an error points at: `components[0] (base).files[2]`.
    pub(super) fn field(&self, field: &str) -> String {
        format!("components[{}] ({}).{field}", self.index, self.component)
    }
}

/// Adds `entry` at `path`: an identical entry already there is fine, a different one is a
/// conflict naming both origins; files over the newc size limit are refused.
pub(super) fn insert_checked(
    tree: &mut Tree,
    path: String,
    entry: Entry,
) -> Result<(), ResolveError> {
    if let Some(old) = tree.entries.get(&path) {
        return check_same(&path, old, &entry);
    }
    if let EntryKind::File(c) = &entry.kind {
        if c.size() > u32::MAX as u64 {
            return Err(ResolveError::TooLarge {
                origin: entry.origin,
                path,
                size: c.size(),
            });
        }
    }
    tree.entries.insert(path, entry);
    Ok(())
}

/// Err(Conflict) unless `new` would leave the same thing at `path` as `old`.
pub(super) fn check_same(path: &str, old: &Entry, new: &Entry) -> Result<(), ResolveError> {
    if same_entry(old, new)? {
        return Ok(());
    }
    Err(ResolveError::Conflict {
        path: path.to_string(),
        first: old.origin.clone(),
        what: describe_difference(old, new),
        second: new.origin.clone(),
    })
}

fn describe_difference(a: &Entry, b: &Entry) -> &'static str {
    match (&a.kind, &b.kind) {
        (EntryKind::File(_), EntryKind::File(_)) if a.mode != b.mode => "modes",
        (EntryKind::File(_), EntryKind::File(_)) => "contents",
        (EntryKind::Symlink(_), EntryKind::Symlink(_)) => "targets",
        (EntryKind::Dir, EntryKind::Dir) => "modes",
        _ => "types (file, directory, symlink)",
    }
}

/// True when two entries would leave the same thing in the image.
fn same_entry(a: &Entry, b: &Entry) -> Result<bool, ResolveError> {
    if a.mode != b.mode {
        return Ok(false);
    }
    Ok(match (&a.kind, &b.kind) {
        (EntryKind::Dir, EntryKind::Dir) => true,
        (EntryKind::Symlink(x), EntryKind::Symlink(y)) => x == y,
        (EntryKind::File(x), EntryKind::File(y)) => {
            if x.size() != y.size() {
                return Ok(false);
            }
            if let (Content::Path { path: p, .. }, Content::Path { path: q, .. }) = (x, y) {
                if p == q {
                    return Ok(true);
                }
            }
            content_bytes(x, &a.origin)? == content_bytes(y, &b.origin)?
        }
        _ => false,
    })
}

fn content_bytes(c: &Content, origin: &str) -> Result<Arc<Vec<u8>>, ResolveError> {
    match c {
        Content::Bytes(b) => Ok(b.clone()),
        Content::Path { path, .. } => {
            std::fs::read(path)
                .map(Arc::new)
                .map_err(|cause| ResolveError::Read {
                    origin: origin.into(),
                    path: path.clone(),
                    cause,
                })
        }
    }
}
