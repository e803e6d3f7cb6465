//! Executables with their ELF shared-library closure ([`super::elf`], no `ldd`). Libraries land
//! at their host paths, with every symlink met on the way reproduced.

use super::checks::{check_dest, check_readable, normalized_mode};
use super::error::{invalid, ResolveError, MAX_HOPS};
use super::insert::Collector;
use super::links::join_target;
use crate::plan::BinaryEntry;
use crate::tree::{Content, Entry, EntryKind};
use std::path::{Path, PathBuf};

/// Without a `dest`, a binary lands at its own (absolute) source path.
pub(super) fn add_binaries(
    col: &mut Collector,
    binaries: &[BinaryEntry],
) -> Result<(), ResolveError> {
    for (i, b) in binaries.iter().enumerate() {
        let f = col.field(&format!("binaries[{i}]"));
        let origin = col.origin(&format!("binaries[{i}] {}", b.source.display()));
        let meta = check_readable(&origin, &b.source)?;
        if !meta.is_file() {
            return Err(invalid(
                f,
                format!("{} is not a regular file", b.source.display()),
            ));
        }
        match &b.dest {
            Some(dest) => {
                check_dest(&f, dest)?;
                col.insert(
                    dest.clone(),
                    Entry {
                        kind: EntryKind::File(Content::Path {
                            path: b.source.clone(),
                            size: meta.len(),
                        }),
                        mode: 0o755,
                        origin: origin.clone(),
                    },
                )?;
            }
            None => {
                if !b.source.is_absolute() {
                    return Err(invalid(f, "source must be absolute when dest is not given"));
                }
                add_host_path(col, &b.source, &origin)?;
            }
        }
        for lib in super::elf::closure(&b.source)? {
            add_host_path(col, &lib, &origin)?;
        }
    }
    Ok(())
}

/// Adds a host file at its own path, reproducing each symlink met on the way (`/lib64 ->
/// usr/lib64`), so the image has the same layout the binary was linked against.
fn add_host_path(col: &mut Collector, path: &Path, origin: &str) -> Result<(), ResolveError> {
    let mut pending = path.to_string_lossy().into_owned();
    let mut hops = 0;
    'restart: loop {
        let mut cur = String::new();
        let parts: Vec<String> = pending
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        for (i, part) in parts.iter().enumerate() {
            cur = format!("{cur}/{part}");
            let meta = std::fs::symlink_metadata(&cur).map_err(|cause| ResolveError::Read {
                origin: origin.into(),
                path: PathBuf::from(&cur),
                cause,
            })?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::Loop {
                        origin: origin.into(),
                        path: path.display().to_string(),
                    });
                }
                let target = std::fs::read_link(&cur).map_err(|cause| ResolveError::Read {
                    origin: origin.into(),
                    path: PathBuf::from(&cur),
                    cause,
                })?;
                let target = target.to_string_lossy().into_owned();
                col.insert(
                    cur.clone(),
                    Entry {
                        kind: EntryKind::Symlink(target.clone()),
                        mode: 0o777,
                        origin: origin.into(),
                    },
                )?;
                let rest = parts[i + 1..].join("/");
                pending = join_target(&cur, &target);
                if !rest.is_empty() {
                    pending = format!("{pending}/{rest}");
                }
                continue 'restart;
            }
        }
        let meta = check_readable(origin, Path::new(&cur))?;
        return col.insert(
            cur.clone(),
            Entry {
                kind: EntryKind::File(Content::Path {
                    path: PathBuf::from(&cur),
                    size: meta.len(),
                }),
                mode: normalized_mode(&meta),
                origin: origin.into(),
            },
        );
    }
}
