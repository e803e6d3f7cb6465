//! Short constructors for the plan's entries, so that each step of the host plan reads as the
//! list of what it puts in the image.

use diskless_builder::plan::{BinaryEntry, DirEntry, GeneratedEntry, Mode, Service, SymlinkEntry};
use std::collections::BTreeMap;

/// A file with these contents, at the builder's default mode.
pub fn gen(dest: &str, contents: impl Into<String>) -> GeneratedEntry {
    GeneratedEntry {
        dest: dest.into(),
        contents: contents.into(),
        mode: None,
    }
}

pub fn dir(path: &str, mode: u32) -> DirEntry {
    DirEntry {
        path: path.into(),
        mode: Some(Mode(mode)),
    }
}

pub fn link(path: &str, target: &str) -> SymlinkEntry {
    SymlinkEntry {
        path: path.into(),
        target: target.into(),
    }
}

/// An executable and its ELF closure; `dest` None keeps its path.
pub fn bin(source: impl Into<std::path::PathBuf>, dest: Option<&str>) -> BinaryEntry {
    BinaryEntry {
        source: source.into(),
        dest: dest.map(String::from),
    }
}

/// A plain service: started unconditionally, restarted with backoff, no role.
pub fn service<S: Into<String>>(name: &str, command: impl IntoIterator<Item = S>) -> Service {
    Service {
        name: name.into(),
        command: command.into_iter().map(Into::into).collect(),
        env: BTreeMap::new(),
        ready_path: None,
        condition_path: None,
        restart: true,
        role: None,
    }
}

/// The environment of the Go daemons (containerd, the kubelet, kube-proxy): `GOGC=50`, the heap
/// grows to 1.5x its live data instead of 2x. On the reference worker at 512 MiB with the pod
/// running: 5.3 MB less MemTotal − MemAvailable, the pod 0.07 s later under icount
/// (docs/performance.md). The Nix modules set the same (`modules/containerd.nix`).
pub fn go_daemon_env() -> BTreeMap<String, String> {
    BTreeMap::from([("GOGC".to_string(), "50".to_string())])
}
