//! The pinned Kubernetes stack (kubelet, containerd 2.x, runc, the control plane, crictl,
//! CoreDNS, CNI plugins) that `scripts/build-stack` builds from Go modules into a cache: where
//! its binaries are. `$DISKLESS_STACK` names a bin directory explicitly; otherwise the cache's
//! `current` link, which build-stack points at the stack this checkout pins.

use std::path::PathBuf;

/// The stack, or one of its binaries, is not on this machine: an environment problem, which
/// `scripts/install-deps` (or `scripts/build-stack`) mends.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(
        "$DISKLESS_STACK={} is not a directory: point it at a stack's bin directory, or unset it to use the one scripts/install-deps builds",
        .0.display()
    )]
    NotADirectory(PathBuf),
    #[error(
        "neither $DISKLESS_STACK nor $HOME is set: cannot find the Kubernetes stack; set $DISKLESS_STACK to a stack's bin directory"
    )]
    NoHome,
    #[error(
        "no Kubernetes stack in {}: run scripts/install-deps (or scripts/build-stack), or set $DISKLESS_STACK to a bin directory",
        .0.display()
    )]
    NotBuilt(PathBuf),
    #[error(
        "{} is missing from the Kubernetes stack: rebuild it with scripts/build-stack",
        .0.display()
    )]
    MissingBinary(PathBuf),
}

impl StackError {
    /// Always true: every failure here is a missing stack, never a bad request.
    pub fn is_environment(&self) -> bool {
        true
    }
}

/// The stack's bin directory; an error says how to get one.
pub fn bin_dir() -> Result<PathBuf, StackError> {
    if let Some(dir) = std::env::var_os("DISKLESS_STACK") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            return Err(StackError::NotADirectory(dir));
        }
        return Ok(dir);
    }
    let cache = match std::env::var_os("DISKLESS_STACK_CACHE") {
        Some(c) => PathBuf::from(c),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/diskless/stack"),
            None => return Err(StackError::NoHome),
        },
    };
    let dir = cache.join("current/bin");
    if !dir.is_dir() {
        return Err(StackError::NotBuilt(dir));
    }
    Ok(dir)
}

/// One binary of the stack, which must exist.
pub fn binary(name: &str) -> Result<PathBuf, StackError> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        return Err(StackError::MissingBinary(path));
    }
    Ok(path)
}
