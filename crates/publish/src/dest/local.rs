//! A boot server directory on this machine (or a mounted share).

use super::error::{io, DestError};
use super::{Source, DIRS};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Takes `flock` on `DEST/.lock`, first creating DEST (publish) or requiring it, then empties
/// `.staging/`: whatever is there was left by a run that died.
pub(super) fn lock(root: &Path, create: bool) -> Result<LocalLock, DestError> {
    if create {
        std::fs::create_dir_all(root.join("objects")).map_err(io(format!(
            "cannot create boot server directory {}",
            root.display()
        )))?;
    } else if !root.is_dir() {
        return Err(DestError::NotABootServer {
            path: root.to_owned(),
        });
    }
    let lock = LocalLock::take(root)?;
    let staging = root.join(".staging");
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("cannot clean {}", staging.display()))(e)),
    }
    std::fs::create_dir_all(&staging).map_err(io(format!("cannot write to {}", root.display())))?;
    Ok(lock)
}

/// The listing `Dest::list` describes; a missing DEST lists empty.
pub(super) fn list(root: &Path) -> Result<BTreeMap<String, u64>, DestError> {
    let mut files = BTreeMap::new();
    for dir in std::iter::once("").chain(DIRS) {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd {
            let listing = || io(format!("cannot list {}", root.display()));
            let e = e.map_err(listing())?;
            let meta = e.metadata().map_err(listing())?;
            if meta.is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                files.insert(join(dir, &name), meta.len());
            }
        }
    }
    Ok(files)
}

pub(super) fn read(root: &Path, rels: &[String]) -> Result<BTreeMap<String, Vec<u8>>, DestError> {
    let mut out = BTreeMap::new();
    for rel in rels {
        match std::fs::read(root.join(rel)) {
            Ok(bytes) => {
                out.insert(rel.clone(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot read {}", root.join(rel).display()))(e)),
        }
    }
    Ok(out)
}

pub(super) fn write_batch(root: &Path, files: &[(String, Vec<u8>)]) -> Result<(), DestError> {
    for (rel, bytes) in files {
        let target = root.join(rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        }
        write_local(root, &target, bytes)
            .map_err(io(format!("cannot write {}", target.display())))?;
    }
    Ok(())
}

pub(super) fn remove(root: &Path, rels: &[String]) -> Result<(), DestError> {
    for rel in rels {
        match std::fs::remove_file(root.join(rel)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("cannot remove {}", root.join(rel).display()))(e)),
        }
    }
    Ok(())
}

/// The digest of each named file in `objects/`, or why it could not be read.
pub(super) fn hash_objects<'a>(
    root: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Result<String, String>> {
    names
        .into_iter()
        .map(|name| {
            let d = diskless_builder::store::hash_file(&root.join("objects").join(name))
                .map(|(d, _)| d)
                .map_err(|e| e.to_string());
            (name.to_string(), d)
        })
        .collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Stores `objects/<sha>`, hashing the copy where it landed before trusting it.
pub(super) fn put_object(root: &Path, sha: &str, src: Source) -> Result<(), DestError> {
    let target = root.join(diskless_builder::store::object_path(sha));
    let bytes = match src {
        Source::File(p) => std::fs::read(p).map_err(io(format!("cannot read {}", p.display())))?,
        Source::Bytes(b) => b.to_vec(),
    };
    write_local(root, &target, &bytes).map_err(io(format!("cannot write {}", target.display())))?;
    let (copied, _) = diskless_builder::store::hash_file(&target)
        .map_err(io(format!("cannot read {}", target.display())))?;
    if copied != sha {
        let _ = std::fs::remove_file(&target);
        return Err(DestError::Changed { path: target });
    }
    Ok(())
}

/// `store::write_atomic`, but with the temporary file in `DEST/.staging/` so a write killed
/// half-way leaves nothing beside the real names.
fn write_local(root: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(root.join(".staging"))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Served by TFTP/HTTP: world-readable whatever the umask.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(target).map_err(|e| e.error)?;
    Ok(())
}

/// `flock` on `DEST/.lock`, released when dropped (or when the process dies).
pub struct LocalLock(std::fs::File);

impl LocalLock {
    fn take(dest: &Path) -> Result<LocalLock, DestError> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dest.join(".lock"))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => DestError::Missing {
                    path: dest.to_owned(),
                },
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    DestError::NotWritable {
                        path: dest.to_owned(),
                        cause: e,
                    }
                }
                _ => io(format!("cannot write to {}", dest.display()))(e),
            })?;
        // SAFETY: flock on a file descriptor we own; blocks until other publishers finish.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(io(format!("cannot lock {}", dest.display()))(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(LocalLock(f))
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor; closing it would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
