//! The control-plane host's node segment: the cluster's PKI, the controller-manager's and the
//! scheduler's kubeconfigs, and the newest verified etcd snapshot, which the init restores
//! before etcd starts. Before the snapshot, the bootstrap RBAC nodes join with is applied
//! through the API (server-side: idempotent), so it is in the snapshot too.
//!
//! A snapshot that cannot be taken (the control plane is not up yet, or rebooting) is not an
//! error: publish says so and uses the newest snapshot it kept, so a publish during the
//! control plane's reboot never replaces a good snapshot with none.

use crate::inventory::ControlPlane;
use crate::kubeconfig::{ClusterCa, Credentials, Kubeconfig};
use crate::snapshot::SnapshotError;
use crate::tool::{self, ToolError};
use diskless_contract::controlplane::{
    pki, API_PORT, CONTROLLER_MANAGER_KUBECONFIG, ETCD_SNAPSHOT, PKI_FILES, SCHEDULER_KUBECONFIG,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error(
        "inventory: control_plane.pki_dir: cannot read {} (the control plane needs every file \
         of kubeadm's layout): {cause}",
        path.display()
    )]
    Pki {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The snapshot chosen for the segment could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Snapshot {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The kept snapshots could not be listed.
    #[error(transparent)]
    Kept(#[from] SnapshotError),
}

impl ControlPlaneError {
    /// Whether this machine lacks a tool the control plane's segment needs.
    pub fn is_environment(&self) -> bool {
        matches!(self, ControlPlaneError::Kept(e) if e.is_environment())
    }
}

/// path in the node segment → (bytes, mode).
pub(crate) type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Everything of the control plane in its host's node segment.
pub(crate) fn files(cp: &ControlPlane) -> Result<Files, ControlPlaneError> {
    let mut files = Files::new();
    for (name, secret) in PKI_FILES {
        let path = cp.pki_dir.join(name);
        let bytes = diskless_builder::store::read_regular(&path)
            .map_err(|cause| ControlPlaneError::Pki { path, cause })?;
        files.insert(pki(name), (bytes, if *secret { 0o600 } else { 0o644 }));
    }
    // The components reach the API server on the node's own loopback.
    let server = format!("https://127.0.0.1:{API_PORT}");
    for (path, user, pair) in [
        (
            CONTROLLER_MANAGER_KUBECONFIG,
            "system:kube-controller-manager",
            "controller-manager",
        ),
        (SCHEDULER_KUBECONFIG, "system:kube-scheduler", "scheduler"),
    ] {
        let k = Kubeconfig::single(
            &server,
            ClusterCa::File(pki("ca.crt")),
            user,
            Credentials {
                client_certificate: Some(pki(&format!("{pair}.crt"))),
                client_key: Some(pki(&format!("{pair}.key"))),
                ..Default::default()
            },
        );
        files.insert(path.into(), (k.to_bytes(), 0o600));
    }
    if let Some(admin) = &cp.admin_kubeconfig {
        if let Err(e) = apply_rbac(cp, admin) {
            warn(&format!(
                "the bootstrap RBAC was not applied ({e:#}); the next publish tries again"
            ));
        }
    }
    let snapshot = match crate::snapshot::take(cp) {
        Ok(path) => Some(path),
        Err(e) => {
            let newest = crate::snapshot::newest(cp)?;
            warn(&format!(
                "no etcd snapshot taken from {} ({e:#}); the node segment carries {}",
                cp.etcd_endpoint,
                match &newest {
                    Some(p) => format!("the newest kept one, {}", p.display()),
                    None => "none: the control plane boots with an empty etcd".into(),
                }
            ));
            newest
        }
    };
    if let Some(path) = snapshot {
        let bytes = diskless_builder::store::read_regular(&path)
            .map_err(|cause| ControlPlaneError::Snapshot { path, cause })?;
        files.insert(ETCD_SNAPSHOT.into(), (bytes, 0o600));
    }
    Ok(files)
}

fn warn(what: &str) {
    eprintln!("diskless publish: warning: control plane: {what}");
}

/// `kubectl apply --server-side` of the bootstrap RBAC.
fn apply_rbac(cp: &ControlPlane, admin: &Path) -> Result<(), ToolError> {
    let list = diskless_kube::controlplane::list(diskless_kube::controlplane::bootstrap_rbac());
    let args: Vec<std::ffi::OsString> = vec![
        "--kubeconfig".into(),
        admin.into(),
        "--request-timeout=20s".into(),
        "apply".into(),
        "--server-side".into(),
        "--field-manager=diskless-publish".into(),
        "-f".into(),
        "-".into(),
    ];
    let stdin = serde_json::to_vec(&list).expect("a list of objects always serializes");
    tool::run(
        &cp.kubectl_program(),
        args,
        stdin,
        || "kubectl apply --server-side".into(),
        |stderr| stderr.trim().to_string(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::tests::control_plane;

    /// Secrets 0600, certificates 0644, kubeconfigs naming the segment's own paths; without
    /// an etcd to snapshot and none kept, no snapshot (and no error).
    #[test]
    fn the_segment_carries_the_pki_and_kubeconfigs() {
        let tmp = tempfile::tempdir().unwrap();
        let cp = control_plane(tmp.path());
        std::fs::create_dir_all(cp.pki_dir.join("etcd")).unwrap();
        for (name, _) in PKI_FILES {
            std::fs::write(cp.pki_dir.join(name), name.as_bytes()).unwrap();
        }
        let files = files(&cp).unwrap();
        assert_eq!(files[&pki("ca.key")], (b"ca.key".to_vec(), 0o600));
        assert_eq!(files[&pki("ca.crt")].1, 0o644);
        assert!(!files.contains_key(ETCD_SNAPSHOT));
        let k: serde_json::Value =
            serde_json::from_slice(&files[CONTROLLER_MANAGER_KUBECONFIG].0).unwrap();
        assert_eq!(
            k["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            k["users"][0]["user"]["client-key"],
            pki("controller-manager.key")
        );
        assert!(!files.keys().any(|f| f.contains("etcd/ca.key")));
    }

    #[test]
    fn a_missing_pki_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let cp = control_plane(tmp.path());
        let e = format!("{:#}", files(&cp).unwrap_err());
        assert!(
            e.contains("control_plane.pki_dir") && e.contains("ca.crt"),
            "{e}"
        );
    }
}
