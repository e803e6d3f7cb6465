//! etcd snapshots of the diskless control plane, taken by publish through etcd's client API
//! (`etcdctl snapshot save`, with the PKI's `etcd/snapshot-client` certificate) and kept in
//! the inventory's `snapshot_dir`. A snapshot is kept only once it restores: `etcdutl
//! snapshot restore` into a scratch directory, which checks the sha256 etcd appends to every
//! snapshot, exactly as the node will restore it; the newest kept one is checked again before
//! it is reused.

use crate::inventory::ControlPlane;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

const PREFIX: &str = "etcd-";
const SUFFIX: &str = ".snapshot";

/// Takes a snapshot, checks it and keeps it in `snapshot_dir` (mode 0600) under a name that
/// sorts by time; removes all but the newest [`ControlPlane::KEEP_SNAPSHOTS`].
pub fn take(cp: &ControlPlane) -> anyhow::Result<PathBuf> {
    let dir = &cp.snapshot_dir;
    create_private_dir(dir)?;
    let scratch = tempfile::Builder::new()
        .prefix(".snapshot-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a scratch directory in {}", dir.display()))?;
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
    std::fs::set_permissions(&saved, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let kept = dir.join(format!("{PREFIX}{secs:024}{SUFFIX}"));
    std::fs::rename(&saved, &kept)
        .with_context(|| format!("cannot keep the snapshot as {}", kept.display()))?;
    let all = kept_snapshots(dir)?;
    for old in all.iter().rev().skip(ControlPlane::KEEP_SNAPSHOTS) {
        let _ = std::fs::remove_file(old);
    }
    Ok(kept)
}

/// `etcdctl` against the control plane's etcd with publish's client certificate.
fn etcdctl(cp: &ControlPlane, args: &[&str]) -> anyhow::Result<()> {
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
    let out = duct::cmd(&program, argv)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "etcdctl {}: {}",
            args.iter()
                .filter(|a| !a.starts_with("--"))
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            last_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(())
}

/// The newest kept snapshot that still restores (an older one if the newest was damaged
/// since), or None when none is kept.
pub fn newest(cp: &ControlPlane) -> anyhow::Result<Option<PathBuf>> {
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
pub fn verify(cp: &ControlPlane, snapshot: &Path) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".verify-")
        .tempdir_in(&cp.snapshot_dir)
        .context("cannot create a scratch directory for the restore check")?;
    let etcdutl = cp.etcdutl_program();
    let out = duct::cmd!(
        &etcdutl,
        "snapshot",
        "restore",
        snapshot,
        "--data-dir",
        scratch.path().join("data"),
        "--name=verify",
        "--initial-cluster=verify=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380"
    )
    .stdout_capture()
    .stderr_capture()
    .unchecked()
    .run()
    .with_context(|| format!("cannot run {}", etcdutl.display()))?;
    if !out.status.success() {
        bail!(
            "etcdutl snapshot restore {}: {}",
            snapshot.display(),
            last_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(())
}

/// `etcd-<time>.snapshot` files, oldest first.
fn kept_snapshots(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
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

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create snapshot_dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o077;
    if mode != 0 {
        bail!(
            "snapshot_dir {} is readable by others (mode {:o}); snapshots hold every Secret of the cluster: chmod 700 it",
            dir.display(),
            std::fs::metadata(dir)?.permissions().mode() & 0o777
        );
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
