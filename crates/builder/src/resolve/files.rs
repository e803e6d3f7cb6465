//! Entries the plan spells out one path at a time: directories, symlinks, generated files and
//! single host files.

use super::checks::{check_dest, check_readable, mode_or, normalized_mode};
use super::error::{invalid, ResolveError};
use super::insert::Collector;
use crate::plan::{DirEntry, FileEntry, GeneratedEntry, SymlinkEntry};
use crate::tree::{Content, Entry, EntryKind};
use std::sync::Arc;

pub(super) fn add_directories(col: &mut Collector, dirs: &[DirEntry]) -> Result<(), ResolveError> {
    for (i, d) in dirs.iter().enumerate() {
        let f = col.field(&format!("directories[{i}]"));
        check_dest(&f, &d.path)?;
        col.insert(
            d.path.clone(),
            Entry {
                kind: EntryKind::Dir,
                mode: mode_or(d.mode, 0o755),
                origin: col.origin(&format!("directories[{i}]")),
            },
        )?;
    }
    Ok(())
}

/// Targets are taken as written (relative or absolute); `links` checks them image-wide.
pub(super) fn add_symlinks(
    col: &mut Collector,
    links: &[SymlinkEntry],
) -> Result<(), ResolveError> {
    for (i, s) in links.iter().enumerate() {
        let f = col.field(&format!("symlinks[{i}]"));
        check_dest(&f, &s.path)?;
        if s.target.is_empty() || s.target.contains('\0') {
            return Err(invalid(f, "target is empty or contains a NUL byte"));
        }
        col.insert(
            s.path.clone(),
            Entry {
                kind: EntryKind::Symlink(s.target.clone()),
                mode: 0o777,
                origin: col.origin(&format!("symlinks[{i}]")),
            },
        )?;
    }
    Ok(())
}

pub(super) fn add_generated(
    col: &mut Collector,
    generated: &[GeneratedEntry],
) -> Result<(), ResolveError> {
    for (i, g) in generated.iter().enumerate() {
        let f = col.field(&format!("generated[{i}]"));
        check_dest(&f, &g.dest)?;
        col.insert(
            g.dest.clone(),
            Entry {
                kind: EntryKind::File(Content::Bytes(Arc::new(g.contents.clone().into_bytes()))),
                mode: mode_or(g.mode, 0o644),
                origin: col.origin(&format!("generated[{i}]")),
            },
        )?;
    }
    Ok(())
}

/// Regular files only: a directory belongs in `trees`, where it is walked.
pub(super) fn add_files(col: &mut Collector, files: &[FileEntry]) -> Result<(), ResolveError> {
    for (i, file) in files.iter().enumerate() {
        let f = col.field(&format!("files[{i}]"));
        check_dest(&f, &file.dest)?;
        let origin = col.origin(&format!("files[{i}] {}", file.source.display()));
        let meta = check_readable(&origin, &file.source)?;
        if !meta.is_file() {
            return Err(invalid(
                f,
                format!(
                    "{} is not a regular file; use `trees` for directories",
                    file.source.display()
                ),
            ));
        }
        col.insert(
            file.dest.clone(),
            Entry {
                kind: EntryKind::File(Content::Path {
                    path: file.source.clone(),
                    size: meta.len(),
                }),
                mode: mode_or(file.mode, normalized_mode(&meta)),
                origin,
            },
        )?;
    }
    Ok(())
}
