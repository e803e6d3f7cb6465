//! The only step that touches the output directory: objects first, then the human-facing names
//! (`<name>.json`, `<name>.ipxe`), each atomically. A failure removes what this build added and
//! puts back the names it replaced, so the directory is never half-updated.

use crate::store::{write_atomic as write_file, Store};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot create output directory {}: {cause}", out.display())]
    Create { out: PathBuf, cause: std::io::Error },
    #[error("writing {} failed; the output directory was left as it was: {cause}", out.display())]
    Write { out: PathBuf, cause: std::io::Error },
}

/// One file written whole or not at all; its message names it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {cause}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    cause: std::io::Error,
}

/// [`crate::store::write_atomic`] with the path in its error: the CLI's `plan --output`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file(path, bytes).map_err(|cause| WriteError {
        path: path.to_owned(),
        cause,
    })
}

/// What one build writes into the output directory.
pub struct Output<'a> {
    /// Content-addressed objects: (sha256, bytes).
    pub objects: Vec<(&'a str, &'a [u8])>,
    /// Stable names, written after every object: (path, bytes).
    pub names: Vec<(PathBuf, Vec<u8>)>,
}

/// Writes `output` into `out`, or leaves `out` as it was.
pub fn write(out: &Path, output: &Output) -> Result<(), OutputError> {
    let existed = out.exists();
    let previous: Vec<Option<Vec<u8>>> = output
        .names
        .iter()
        .map(|(p, _)| std::fs::read(p).ok())
        .collect();
    let mut store = Store::open(out).map_err(|cause| OutputError::Create {
        out: out.to_owned(),
        cause,
    })?;
    let write_all = |store: &mut Store| -> std::io::Result<()> {
        for (digest, bytes) in &output.objects {
            store.put_with_digest(digest, bytes)?;
        }
        for (path, bytes) in &output.names {
            write_file(path, bytes)?;
        }
        Ok(())
    };
    if let Err(cause) = write_all(&mut store) {
        store.roll_back();
        // Put back whichever human-facing name was already replaced.
        for ((path, _), old) in output.names.iter().zip(&previous) {
            match old {
                Some(bytes) => {
                    let _ = write_file(path, bytes);
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if !existed {
            let _ = std::fs::remove_dir_all(out);
        }
        return Err(OutputError::Write {
            out: out.to_owned(),
            cause,
        });
    }
    Ok(())
}
