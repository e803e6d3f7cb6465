//! The image's tree as the kernel will unpack it, after every component is merged: what the
//! kernel's initramfs reader would silently drop or cut is refused here instead. A regular
//! file (or a symlink, which is not followed when unpacking) cannot also be the parent of
//! another entry, wherever either comes from; no name may exceed `NAME_MAX` and no path
//! `PATH_MAX`, or the kernel skips the entry and the node boots without it.

use super::error::{invalid, ResolveError};
use super::resolved::ResolvedComponent;
use crate::tree::{Entry, EntryKind};
use std::collections::BTreeMap;

/// Linux's `NAME_MAX`: bytes in one path component.
const NAME_MAX: usize = 255;
/// Linux's `PATH_MAX`, which counts the terminating NUL.
const PATH_MAX: usize = 4096;

pub(super) fn check_shape(components: &[ResolvedComponent]) -> Result<(), ResolveError> {
    let mut all: BTreeMap<&str, &Entry> = BTreeMap::new();
    for c in components {
        for (p, e) in &c.tree.entries {
            all.entry(p.as_str()).or_insert(e);
        }
    }
    for (path, entry) in &all {
        if path.len() >= PATH_MAX {
            return Err(invalid(
                entry.origin.clone(),
                format!(
                    "{}… is {} bytes long; Linux paths hold at most {} bytes",
                    path.chars().take(64).collect::<String>(),
                    path.len(),
                    PATH_MAX - 1
                ),
            ));
        }
        if let Some(name) = path.split('/').find(|n| n.len() > NAME_MAX) {
            return Err(invalid(
                entry.origin.clone(),
                format!(
                    "{path}: the name {}… is {} bytes; Linux names hold at most {NAME_MAX}",
                    name.chars().take(32).collect::<String>(),
                    name.len()
                ),
            ));
        }
        let mut parent = *path;
        while let Some((up, _)) = parent.rsplit_once('/') {
            if up.is_empty() {
                break;
            }
            if let Some(p) = all.get(up) {
                if !matches!(p.kind, EntryKind::Dir) {
                    return Err(ResolveError::Conflict {
                        path: up.to_string(),
                        first: p.origin.clone(),
                        second: format!("{} (as the parent of {path})", entry.origin),
                        what: "types (file, directory, symlink)",
                    });
                }
            }
            parent = up;
        }
    }
    Ok(())
}
