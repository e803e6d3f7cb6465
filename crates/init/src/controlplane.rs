//! What the init does around a diskless control plane's services (contract roles `etcd` and
//! `api-server`): etcd's data directory restored from the node segment's snapshot before etcd
//! starts, and the API server told the node's address. Pure where it can be, so the command
//! lines are unit-tested; the restore itself runs the image's `etcdutl`.

use crate::node::flag_value;
use diskless_contract::controlplane::ETCD_SNAPSHOT;
use diskless_contract::image::Service;
use diskless_contract::node::NodeConfig;
use std::path::Path;
use std::time::Duration;

/// Why etcd's data was not restored (etcd is then not started).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the etcd service has no {0} flag to restore with")]
    NoFlag(String),
    #[error("{0}; etcd is not started")]
    Failed(crate::run::RunError),
}

/// How long a restore may take (a few MB under TCG take seconds).
const RESTORE_LIMIT: Duration = Duration::from_secs(180);

/// Added to the restored revisions, as etcd's restore guide asks for Kubernetes: the API
/// server's watchers (controllers, kubelets) saw revisions up to the moment of the reboot,
/// later than the snapshot's; bumped past them and marked compacted, every watch lists again
/// instead of waiting for revisions that would mean something else now.
const BUMP_REVISION: u64 = 1_000_000_000;

/// The `etcdutl snapshot restore` command for the image's etcd service: `etcdutl` beside
/// `etcd` (the stack's `/usr/bin`, or a Nix package's `bin/`), the member name, peer URL and
/// data directory from etcd's own flags, so the restored member is the one etcd starts as.
pub fn restore_command(etcd: &Service, snapshot: &str) -> Result<Vec<String>, RestoreError> {
    let flag = |name: &str| {
        flag_value(&etcd.command, name).ok_or_else(|| RestoreError::NoFlag(name.to_owned()))
    };
    let etcdutl = Path::new(&etcd.command[0]).with_file_name("etcdutl");
    Ok(vec![
        etcdutl.display().to_string(),
        "snapshot".into(),
        "restore".into(),
        snapshot.into(),
        format!("--data-dir={}", flag("--data-dir")?),
        format!("--name={}", flag("--name")?),
        format!("--initial-cluster={}", flag("--initial-cluster")?),
        format!(
            "--initial-advertise-peer-urls={}",
            flag("--initial-advertise-peer-urls")?
        ),
        format!("--bump-revision={BUMP_REVISION}"),
        "--mark-compacted".into(),
    ])
}

/// Restores etcd's data from [`ETCD_SNAPSHOT`] when the node segment has one. `Ok` says what
/// happened; `Err` means etcd must not start (an empty etcd would be snapshotted by the next
/// publish and its emptiness kept).
pub fn restore_etcd(etcd: &Service) -> Result<String, RestoreError> {
    let Ok(meta) = std::fs::metadata(ETCD_SNAPSHOT) else {
        return Ok(format!(
            "no {ETCD_SNAPSHOT}: etcd starts empty (a new cluster, or no publish since it came up)"
        ));
    };
    let argv = restore_command(etcd, ETCD_SNAPSHOT)?;
    let data = flag_value(&etcd.command, "--data-dir").unwrap_or_default();
    if Path::new(&data).exists() {
        return Ok(format!("{data} exists already: kept, not restored"));
    }
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    crate::run::run(&args, Some(RESTORE_LIMIT)).map_err(|e| {
        // A partial data directory must not look like a restored one.
        let _ = std::fs::remove_dir_all(&data);
        RestoreError::Failed(e)
    })?;
    Ok(format!(
        "{} bytes restored from {ETCD_SNAPSHOT} into {data} (hash checked)",
        meta.len()
    ))
}

/// The image's API server service for this node: with `--advertise-address` from node.json's
/// `control_plane` section when it gives one.
pub fn apiserver_for(image: &Service, node: Option<&NodeConfig>) -> Service {
    let mut svc = image.clone();
    if let Some(a) = node
        .and_then(|n| n.control_plane.as_ref())
        .and_then(|c| c.advertise_address.as_ref())
    {
        if flag_value(&svc.command, "--advertise-address").is_none() {
            svc.command.push(format!("--advertise-address={a}"));
        }
    }
    svc
}

#[cfg(test)]
mod tests {
    use super::*;
    use diskless_contract::controlplane::ControlPlaneNode;
    use diskless_contract::image::Role;
    use std::collections::BTreeMap;

    fn service(command: &[&str], role: Role) -> Service {
        Service {
            name: "x".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            ready_path: None,
            condition_path: None,
            restart: true,
            role: Some(role),
        }
    }

    #[test]
    fn the_restore_makes_the_member_etcd_starts_as() {
        let etcd = service(
            &[
                "/usr/bin/etcd",
                "--name=cp",
                "--data-dir=/var/lib/etcd",
                "--initial-cluster=cp=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            ],
            Role::Etcd,
        );
        let argv = restore_command(&etcd, "/snap").unwrap();
        assert_eq!(
            argv[..4],
            ["/usr/bin/etcdutl", "snapshot", "restore", "/snap"]
        );
        assert!(argv.contains(&"--name=cp".to_string()));
        assert!(argv.contains(&"--data-dir=/var/lib/etcd".to_string()));
        assert!(argv.contains(&"--mark-compacted".to_string()));
        let bare = service(&["/usr/bin/etcd"], Role::Etcd);
        assert!(restore_command(&bare, "/snap")
            .unwrap_err()
            .to_string()
            .contains("--data-dir"));
    }

    #[test]
    fn the_api_server_advertises_the_nodes_address() {
        let image = service(
            &["/usr/bin/kube-apiserver", "--secure-port=6443"],
            Role::ApiServer,
        );
        let mut node = NodeConfig::parse(
            r#"{"hostname":"cp","mac":"52:54:00:00:00:01","kubelet_mode":"standalone"}"#,
        )
        .unwrap();
        assert_eq!(apiserver_for(&image, Some(&node)).command, image.command);
        node.control_plane = Some(ControlPlaneNode {
            advertise_address: Some("10.0.2.15".into()),
        });
        assert_eq!(
            apiserver_for(&image, Some(&node)).command.last().unwrap(),
            "--advertise-address=10.0.2.15"
        );
        assert_eq!(apiserver_for(&image, None).command, image.command);
    }
}
