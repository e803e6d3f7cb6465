//! The shared-library closure of an ELF executable, found the way the dynamic loader finds it,
//! without running anything (`ldd` executes the binary's interpreter; a plan may name binaries
//! for another machine, and running them is not the builder's business).
//!
//! Search order per `ld.so(8)`: `DT_RPATH` (only when there is no `DT_RUNPATH`), `DT_RUNPATH`, then
//! the directories of `/etc/ld.so.conf` and the defaults. `$ORIGIN` expands to the directory of
//! the object that asks. Candidates of another ELF class or machine are skipped, as the loader does.

use goblin::elf::Elf;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not an ELF file ({reason}); list it under `files`, not `binaries`")]
    NotElf { path: PathBuf, reason: String },
    #[error("{binary} needs {library}, which is in none of: {searched}; install it or add its directory to DT_RUNPATH")]
    Missing {
        binary: PathBuf,
        library: String,
        searched: String,
    },
}

/// What an object needs from the loader.
struct Needs {
    interp: Option<String>,
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
    class64: bool,
    machine: u16,
}

fn read_needs(path: &Path) -> Result<Needs, ElfError> {
    let bytes = std::fs::read(path).map_err(|cause| ElfError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let elf = Elf::parse(&bytes).map_err(|e| ElfError::NotElf {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let split = |v: &[&str]| -> Vec<String> {
        v.iter()
            .flat_map(|s| s.split(':'))
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    Ok(Needs {
        interp: elf.interpreter.map(String::from),
        needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
        rpath: split(&elf.rpaths),
        runpath: split(&elf.runpaths),
        class64: elf.is_64,
        machine: elf.header.e_machine,
    })
}

/// Same class and machine as the binary: the loader ignores anything else.
fn compatible(path: &Path, class64: bool, machine: u16) -> bool {
    use std::io::Read;
    let mut bytes = [0u8; 64];
    let ok = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut bytes));
    if ok.is_err() {
        return false;
    }
    match goblin::elf::Elf::parse_header(&bytes) {
        Ok(h) => {
            (h.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64) == class64
                && h.e_machine == machine
        }
        Err(_) => false,
    }
}

/// The directories the loader searches last: `/etc/ld.so.conf` (with its `include` lines) and
/// the built-in defaults.
pub fn default_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_ld_so_conf(&root.join("etc/ld.so.conf"), root, &mut dirs, 0);
    for d in [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = BTreeSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_ld_so_conf(file: &Path, root: &Path, dirs: &mut Vec<PathBuf>, depth: u32) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line.strip_prefix("include ") {
            // Only the `dir/*.conf` form occurs in practice (Debian, Fedora, NixOS has none).
            let pattern = pattern.trim();
            if depth > 4 {
                continue;
            }
            let (dir, suffix) = match pattern.rsplit_once("/*") {
                Some((dir, suffix)) => (dir, suffix),
                None => {
                    read_ld_so_conf(
                        &root.join(pattern.trim_start_matches('/')),
                        root,
                        dirs,
                        depth + 1,
                    );
                    continue;
                }
            };
            let Ok(rd) = std::fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            files.sort();
            for f in files {
                read_ld_so_conf(&f, root, dirs, depth + 1);
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
}

fn expand_origin(dir: &str, object: &Path) -> PathBuf {
    let origin = object
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| object.parent().unwrap_or(Path::new("/")).to_path_buf());
    let o = origin.to_string_lossy();
    PathBuf::from(dir.replace("${ORIGIN}", &o).replace("$ORIGIN", &o))
}

/// Every shared library (and the interpreter) `binary` needs, transitively, as the paths where
/// they were found (possibly through symlinks: the caller reproduces those). Sorted.
pub fn closure(binary: &Path) -> Result<Vec<PathBuf>, ElfError> {
    let defaults = default_dirs(Path::new("/"));
    let top = read_needs(binary)?;
    let (class64, machine) = (top.class64, top.machine);
    let mut found: BTreeSet<PathBuf> = BTreeSet::new();
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<(PathBuf, Needs)> = VecDeque::new();
    if let Some(interp) = &top.interp {
        let p = PathBuf::from(interp);
        if !p.exists() {
            return Err(ElfError::Missing {
                binary: binary.to_owned(),
                library: interp.clone(),
                searched: "its PT_INTERP path".into(),
            });
        }
        found.insert(p);
    }
    queue.push_back((binary.to_owned(), top));
    while let Some((object, needs)) = queue.pop_front() {
        for name in &needs.needed {
            if !seen_names.insert(name.clone()) {
                continue;
            }
            let mut dirs: Vec<PathBuf> = Vec::new();
            if needs.runpath.is_empty() {
                dirs.extend(needs.rpath.iter().map(|d| expand_origin(d, &object)));
            }
            dirs.extend(needs.runpath.iter().map(|d| expand_origin(d, &object)));
            dirs.extend(defaults.iter().cloned());
            let hit = if name.contains('/') {
                Some(PathBuf::from(name)).filter(|p| p.exists())
            } else {
                dirs.iter()
                    .map(|d| d.join(name))
                    .find(|p| p.exists() && compatible(p, class64, machine))
            };
            let Some(lib) = hit else {
                return Err(ElfError::Missing {
                    binary: binary.to_owned(),
                    library: name.clone(),
                    searched: dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                });
            };
            let lib_needs = read_needs(&lib)?;
            found.insert(lib.clone());
            queue.push_back((lib, lib_needs));
        }
    }
    Ok(found.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_needs_libc_and_the_loader() {
        let exe = std::env::current_exe().unwrap();
        let libs = closure(&exe).unwrap();
        let names: Vec<String> = libs
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("libc.so")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
    }

    #[test]
    fn a_text_file_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("script");
        std::fs::write(&p, "#!/bin/sh\necho hi\n").unwrap();
        let e = closure(&p).unwrap_err().to_string();
        assert!(
            e.contains("not an ELF file") && e.contains("`files`"),
            "{e}"
        );
    }
}
