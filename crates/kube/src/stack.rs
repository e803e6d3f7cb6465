//! The pinned Kubernetes stack (kubelet, containerd 2.x, runc, the control plane, crictl,
//! CoreDNS, CNI plugins) that `scripts/build-stack` builds from Go modules into a cache: where
//! its binaries are. `$DISKLESS_STACK` names a bin directory explicitly; otherwise the cache's
//! `current` link, which build-stack points at the stack this checkout pins.

use anyhow::bail;
use std::path::PathBuf;

/// The stack's bin directory; an error says how to get one.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DISKLESS_STACK") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            bail!("$DISKLESS_STACK={} is not a directory", dir.display());
        }
        return Ok(dir);
    }
    let cache = match std::env::var_os("DISKLESS_STACK_CACHE") {
        Some(c) => PathBuf::from(c),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/diskless/stack"),
            None => {
                bail!("neither $DISKLESS_STACK nor $HOME is set: cannot find the Kubernetes stack")
            }
        },
    };
    let dir = cache.join("current/bin");
    if !dir.is_dir() {
        bail!(
            "no Kubernetes stack in {}: run scripts/install-deps (or scripts/build-stack), or set $DISKLESS_STACK to a bin directory",
            dir.display()
        );
    }
    Ok(dir)
}

/// One binary of the stack, which must exist.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing from the Kubernetes stack: rebuild it with scripts/build-stack",
            path.display()
        );
    }
    Ok(path)
}
