//! `diskless verify OUT_DIR`: every object hashes to its name, and every index and iPXE entry
//! refers only to objects that exist. Reads everything, trusts nothing.

use crate::index::Index;
use crate::store::hash_file;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "{} does not exist: give the output directory of `diskless build` (or a boot server directory)",
        dir.display()
    )]
    NoDir { dir: PathBuf },
    #[error(
        "{} has no objects/ directory: is it a build output or a boot server directory?: {cause}",
        dir.display()
    )]
    NoObjects { dir: PathBuf, cause: std::io::Error },
    #[error("cannot list {}: {cause}", dir.display())]
    List { dir: PathBuf, cause: std::io::Error },
    #[error("cannot hash {}: {cause}", path.display())]
    Hash {
        path: PathBuf,
        cause: std::io::Error,
    },
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub objects: u64,
    pub bytes: u64,
    pub images: Vec<String>,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn print(&self) {
        for p in &self.problems {
            println!("problem: {p}");
        }
        println!(
            "{} objects ({} bytes), images: {}; {}",
            self.objects,
            self.bytes,
            if self.images.is_empty() {
                "none".into()
            } else {
                self.images.join(", ")
            },
            if self.ok() {
                "all verified"
            } else {
                "NOT verified"
            }
        );
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Records the check of `objects/<name>`: a leftover temporary file is a problem (and is
    /// not hashed), else `hash` gives (sha256, size), which must match the name.
    pub fn object(&mut self, name: &str, hash: impl FnOnce() -> Result<(String, u64), String>) {
        if name.starts_with(".tmp-") {
            self.problems.push(format!(
                "objects/{name}: leftover temporary file from an interrupted write"
            ));
            return;
        }
        match hash() {
            Ok((digest, size)) => {
                self.objects += 1;
                self.bytes += size;
                if digest != name {
                    self.problems
                        .push(format!("objects/{name}: content hashes to {digest}"));
                }
            }
            Err(err) => self
                .problems
                .push(format!("objects/{name}: cannot read: {err}")),
        }
    }
}

/// Hashes every object in `dir/objects`; problems for any that do not match their names.
pub fn verify_objects(dir: &Path) -> Result<VerifyReport, VerifyError> {
    let objects_dir = dir.join("objects");
    let mut report = VerifyReport {
        objects: 0,
        bytes: 0,
        images: Vec::new(),
        problems: Vec::new(),
    };
    if !dir.exists() {
        return Err(VerifyError::NoDir {
            dir: dir.to_owned(),
        });
    }
    let mut names: Vec<_> = std::fs::read_dir(&objects_dir)
        .map_err(|cause| VerifyError::NoObjects {
            dir: dir.to_owned(),
            cause,
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| VerifyError::List {
            dir: objects_dir.clone(),
            cause,
        })?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        report.object(&name, || hash_file(&e.path()).map_err(|e| e.to_string()));
    }
    Ok(report)
}

/// What is wrong with the objects `index` (read from `file` in `out`) names: each must be in
/// `objects/` with the size the index gives. `verify OUT` reports these and publish refuses an
/// output that has any, so a boot server never gets an entry whose initrd sizes lie.
pub fn index_objects(out: &Path, file: &str, index: &Index) -> Vec<String> {
    let mut problems = Vec::new();
    for crate::index::ObjectRef {
        what,
        sha256: sha,
        size,
    } in index.objects()
    {
        let p = out.join(crate::store::object_path(sha));
        match std::fs::metadata(&p) {
            Ok(m) if m.len() == size => {}
            Ok(m) => problems.push(format!(
                "{file}: {what} objects/{sha} is {} bytes, the index says {size}",
                m.len()
            )),
            Err(_) => problems.push(format!("{file}: {what} objects/{sha} is missing")),
        }
    }
    problems
}

/// `diskless verify OUT`: [`verify_objects`], then every index and iPXE entry in `out`.
pub fn verify(out: &Path) -> Result<VerifyReport, VerifyError> {
    let objects_dir = out.join("objects");
    let mut report = verify_objects(out)?;
    let list = |cause| VerifyError::List {
        dir: out.to_owned(),
        cause,
    };
    let mut entries: Vec<_> = std::fs::read_dir(out)
        .map_err(list)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(list)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let file = e.file_name().to_string_lossy().into_owned();
        if let Some(image) = file.strip_suffix(".json") {
            let index = match Index::load(&e.path()) {
                Ok(i) => i,
                Err(err) => {
                    report.problems.push(format!("{file}: {err}"));
                    continue;
                }
            };
            report.images.push(image.to_string());
            let (digest, _) = hash_file(&e.path()).map_err(|cause| VerifyError::Hash {
                path: e.path(),
                cause,
            })?;
            if !out.join(crate::store::object_path(&digest)).exists() {
                report.problems.push(format!(
                    "{file}: the index is not stored as objects/{digest}"
                ));
            }
            report.problems.extend(index_objects(out, &file, &index));
        } else if file.ends_with(".ipxe") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for sha in crate::ipxe::referenced_objects(&text) {
                if !objects_dir.join(sha).exists() {
                    report
                        .problems
                        .push(format!("{file}: refers to objects/{sha}, which is missing"));
                }
            }
        }
    }
    Ok(report)
}
