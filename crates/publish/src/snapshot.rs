//! etcd snapshots of the diskless control plane, taken by publish through etcd's client API
//! (`etcdctl snapshot save`, with the PKI's `etcd/snapshot-client` certificate) and kept in
//! the inventory's `snapshot_dir`. A snapshot is kept only once it restores: `etcdutl
//! snapshot restore` into a scratch directory, which checks the sha256 etcd appends to every
//! snapshot, exactly as the node will restore it; the newest kept one is checked again before
//! it is reused.

use crate::inventory::ControlPlane;
use crate::tool::{self, ToolError};
use std::path::{Path, PathBuf};

const PREFIX: &str = "etcd-";
const SUFFIX: &str = ".snapshot";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// etcdctl or etcdutl did not start, or refused (etcd down, a snapshot that does not restore).
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(
        "snapshot_dir {} is readable by others (mode {mode:o}); snapshots hold every Secret of \
         the cluster: chmod 700 it",
        dir.display()
    )]
    NotPrivate { dir: PathBuf, mode: u32 },
    /// Any other I/O failure in `snapshot_dir`, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl SnapshotError {
    /// Whether this machine lacks etcdctl or etcdutl.
    pub fn is_environment(&self) -> bool {
        matches!(self, SnapshotError::Tool(t) if t.is_environment())
    }
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
    let context = context.into();
    move |cause| SnapshotError::Io { context, cause }
}

/// Takes a snapshot, checks it and keeps it in `snapshot_dir` (mode 0600) under a name that
/// sorts by time; removes all but the newest [`ControlPlane::KEEP_SNAPSHOTS`].
pub fn take(cp: &ControlPlane) -> Result<PathBuf, SnapshotError> {
    let dir = &cp.snapshot_dir;
    create_private_dir(dir)?;
    let scratch = tempfile::Builder::new()
        .prefix(".snapshot-")
        .tempdir_in(dir)
        .map_err(io(format!(
            "cannot create a scratch directory in {}",
            dir.display()
        )))?;
    let saved = scratch.path().join("snapshot.db");
    // A control plane that is down (not booted yet, rebooting) refuses at once; etcdctl would
    // retry that until its command timeout, which a snapshot of a large etcd needs long.
    etcdctl(cp, &["--command-timeout=10s", "endpoint", "health"])?;
    etcdctl(
        cp,
        &[
            "--command-timeout=300s",
            "snapshot",
            "save",
            &saved.display().to_string(),
        ],
    )?;
    verify(cp, &saved)?;
    std::fs::set_permissions(&saved, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io(format!("cannot make {} private", saved.display())))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let kept = dir.join(format!("{PREFIX}{secs:024}{SUFFIX}"));
    std::fs::rename(&saved, &kept).map_err(io(format!(
        "cannot keep the snapshot as {}",
        kept.display()
    )))?;
    let all = kept_snapshots(dir)?;
    for old in all.iter().rev().skip(ControlPlane::KEEP_SNAPSHOTS) {
        let _ = std::fs::remove_file(old);
    }
    Ok(kept)
}

/// `etcdctl` against the control plane's etcd with publish's client certificate.
fn etcdctl(cp: &ControlPlane, args: &[&str]) -> Result<(), ToolError> {
    let pki = |name: &str| cp.pki_dir.join(name);
    let program = cp.etcdctl_program();
    let mut argv: Vec<std::ffi::OsString> = vec![
        format!("--endpoints={}", cp.etcd_endpoint).into(),
        "--cacert".into(),
        pki("etcd/ca.crt").into(),
        "--cert".into(),
        pki("etcd/snapshot-client.crt").into(),
        "--key".into(),
        pki("etcd/snapshot-client.key").into(),
        "--dial-timeout=5s".into(),
    ];
    argv.extend(args.iter().map(Into::into));
    let what = || {
        let words: Vec<&str> = args
            .iter()
            .filter(|a| !a.starts_with("--"))
            .copied()
            .collect();
        format!("etcdctl {}", words.join(" "))
    };
    tool::run(&program, argv, Vec::new(), what, last_line)?;
    Ok(())
}

/// The newest kept snapshot that still restores (an older one if the newest was damaged
/// since), or None when none is kept.
pub fn newest(cp: &ControlPlane) -> Result<Option<PathBuf>, SnapshotError> {
    if !cp.snapshot_dir.exists() {
        return Ok(None);
    }
    for path in kept_snapshots(&cp.snapshot_dir)?.into_iter().rev() {
        match verify(cp, &path) {
            Ok(()) => return Ok(Some(path)),
            Err(e) => eprintln!(
                "diskless publish: warning: control plane: kept snapshot {} does not restore ({e:#}); trying an older one",
                path.display()
            ),
        }
    }
    Ok(None)
}

/// Restores `snapshot` into a scratch directory as the node will (`etcdutl` checks the hash
/// etcd appended), then removes it.
pub fn verify(cp: &ControlPlane, snapshot: &Path) -> Result<(), SnapshotError> {
    let scratch = tempfile::Builder::new()
        .prefix(".verify-")
        .tempdir_in(&cp.snapshot_dir)
        .map_err(io(
            "cannot create a scratch directory for the restore check",
        ))?;
    let args: Vec<std::ffi::OsString> = vec![
        "snapshot".into(),
        "restore".into(),
        snapshot.into(),
        "--data-dir".into(),
        scratch.path().join("data").into(),
        "--name=verify".into(),
        "--initial-cluster=verify=http://127.0.0.1:2380".into(),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
    ];
    let what = || format!("etcdutl snapshot restore {}", snapshot.display());
    tool::run(&cp.etcdutl_program(), args, Vec::new(), what, last_line)?;
    Ok(())
}

/// `etcd-<time>.snapshot` files, oldest first.
fn kept_snapshots(dir: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("cannot read {}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(PREFIX) && n.ends_with(SUFFIX)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

fn create_private_dir(dir: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(format!("cannot create snapshot_dir {}", dir.display())))?;
    let mode = std::fs::metadata(dir)
        .map_err(io(format!("cannot read snapshot_dir {}", dir.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SnapshotError::NotPrivate {
            dir: dir.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

/// etcd's tools log JSON lines; the last one says why.
fn last_line(text: &str) -> String {
    text.trim().lines().last().unwrap_or("").to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A control plane whose etcd and tools are unreachable (shared with controlplane.rs's tests).
    pub(crate) fn control_plane(dir: &Path) -> ControlPlane {
        ControlPlane {
            host: "cp".into(),
            pki_dir: dir.join("pki"),
            advertise_address: None,
            etcd_endpoint: "https://127.0.0.1:1".into(),
            snapshot_dir: dir.join("snapshots"),
            admin_kubeconfig: None,
            etcdctl: Some("/nonexistent/etcdctl".into()),
            etcdutl: Some("/nonexistent/etcdutl".into()),
            kubectl: None,
        }
    }

    use control_plane as cp;

    #[test]
    fn without_etcdctl_no_snapshot_is_taken_and_none_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let cp = cp(tmp.path());
        let e = take(&cp).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/etcdctl"), "{e:#}");
        assert_eq!(newest(&cp).unwrap(), None);
        // A file that does not restore is not used.
        std::fs::write(cp.snapshot_dir.join("etcd-1.snapshot"), b"not a snapshot").unwrap();
        assert_eq!(newest(&cp).unwrap(), None);
    }

    #[test]
    fn a_snapshot_dir_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let cp = cp(tmp.path());
        std::fs::create_dir(&cp.snapshot_dir).unwrap();
        std::fs::set_permissions(&cp.snapshot_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = take(&cp).unwrap_err();
        assert!(format!("{e:#}").contains("chmod 700"), "{e:#}");
    }
}
