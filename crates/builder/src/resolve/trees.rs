//! Host directories copied whole: walked in name order without following symlinks, so the
//! entries (and the cpio) do not depend on readdir order and links stay links.

use super::checks::{check_dest, check_readable, normalized_mode};
use super::error::{invalid, ResolveError};
use super::insert::Collector;
use crate::plan::TreeEntry;
use crate::tree::{Content, Entry, EntryKind};
use std::path::Path;

/// Without a `dest`, a tree lands at its own source path.
pub(super) fn add_trees(col: &mut Collector, trees: &[TreeEntry]) -> Result<(), ResolveError> {
    for (i, t) in trees.iter().enumerate() {
        let f = col.field(&format!("trees[{i}]"));
        let dest = t
            .dest
            .clone()
            .unwrap_or_else(|| t.source.to_string_lossy().into_owned());
        check_dest(&f, &dest)?;
        let origin = col.origin(&format!("trees[{i}] {}", t.source.display()));
        add_tree(col, &t.source, &dest, &origin)?;
    }
    Ok(())
}

fn add_tree(
    col: &mut Collector,
    source: &Path,
    dest: &str,
    origin: &str,
) -> Result<(), ResolveError> {
    let root_meta = check_readable(origin, source)?;
    if !root_meta.is_dir() {
        return Err(invalid(
            origin,
            format!("{} is not a directory", source.display()),
        ));
    }
    let walk = walkdir::WalkDir::new(source)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(source).to_owned();
            ResolveError::Read {
                origin: origin.into(),
                path,
                cause: e.into(),
            }
        })?;
        let rel = item
            .path()
            .strip_prefix(source)
            .expect("walkdir stays below its root");
        let rel = rel.to_string_lossy();
        let to = if rel.is_empty() {
            dest.to_string()
        } else {
            format!("{dest}/{rel}")
        };
        let ft = item.file_type();
        let entry = if ft.is_symlink() {
            let target = std::fs::read_link(item.path()).map_err(|cause| ResolveError::Read {
                origin: origin.into(),
                path: item.path().to_owned(),
                cause,
            })?;
            EntryKind::Symlink(target.to_string_lossy().into_owned())
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            let meta = check_readable(origin, item.path())?;
            col.insert(
                to,
                Entry {
                    kind: EntryKind::File(Content::Path {
                        path: item.path().to_owned(),
                        size: meta.len(),
                    }),
                    mode: normalized_mode(&meta),
                    origin: origin.into(),
                },
            )?;
            continue;
        } else {
            return Err(ResolveError::FileType {
                origin: origin.into(),
                path: item.path().to_owned(),
                kind: "special file (device, socket or fifo)",
            });
        };
        let mode = if matches!(entry, EntryKind::Dir) {
            0o755
        } else {
            0o777
        };
        col.insert(
            to,
            Entry {
                kind: entry,
                mode,
                origin: origin.into(),
            },
        )?;
    }
    Ok(())
}
