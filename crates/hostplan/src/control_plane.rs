//! The reference control plane (`diskless build --host --role control-plane`): etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler from the pinned stack, each a
//! service the init supervises, with the command lines of [`diskless_kube::controlplane`] over the
//! files publish puts in the control-plane host's node segment
//! (`diskless_contract::controlplane`). Everything is in RAM: the image on the tmpfs root and
//! etcd's data in `/var/lib/etcd` beside it. No container runtime, no kubelet: the
//! components run as plain processes, so the image carries no pod machinery.
//!
//! Nothing per-cluster or secret is in the image: every service waits for the node segment's
//! cluster CA (`condition_path`), and the API server's address comes from `node.json`.

use crate::entries::{bin, dir, service};
use crate::error::HostPlanError;
use crate::kernel_modules;
use crate::machine::Machine;
use crate::options::HostOptions;
use diskless_builder::plan::*;
use diskless_builder::words::Words;
use diskless_contract::controlplane as paths;
use diskless_kube::controlplane::{self as flags, Layout};
use std::collections::BTreeMap;

/// Where etcd keeps its data: on the tmpfs root, restored from the node segment's snapshot at
/// each boot (the init, role `etcd`).
pub const ETCD_DATA: &str = "/var/lib/etcd";
/// etcd's member name: one member, the same on every boot (a restore must name it).
pub const ETCD_NAME: &str = "diskless";

/// The command lines' inputs on a control-plane node.
pub fn node_layout() -> Layout {
    let (pki, etcd_tls) = Layout::kubeadm_pki(paths::PKI_DIR);
    Layout {
        pki,
        etcd_data: ETCD_DATA.into(),
        etcd_name: ETCD_NAME.into(),
        // From the network (`diskless publish`'s snapshots) only over TLS with a certificate of
        // etcd's own CA; the API server beside it over plain HTTP on loopback, which no other
        // machine reaches and nothing else on this one runs. kubeadm's API server uses TLS
        // there too, but it opens a connection per resource type, and under emulation (TCG)
        // their handshakes timed out and reconnected until the API server gave up (600 s).
        etcd_listen_client: format!(
            "https://0.0.0.0:{},http://127.0.0.1:{}",
            paths::ETCD_CLIENT_PORT,
            paths::ETCD_LOCAL_PORT
        ),
        etcd_client: format!("http://127.0.0.1:{}", paths::ETCD_LOCAL_PORT),
        // One member: its peer port never leaves the machine.
        etcd_peer: format!("http://127.0.0.1:{}", paths::ETCD_PEER_PORT),
        etcd_tls: Some(etcd_tls),
        // tmpfs: an fsync costs nothing, and a reboot loses the data either way.
        etcd_unsafe_no_fsync: false,
        api_bind: "0.0.0.0".into(),
        api_port: paths::API_PORT,
        // The init adds the node's (node.json), or the API server takes its default route's.
        api_advertise: None,
        kubelet_address_types: "InternalIP,Hostname".into(),
        egress_config: None,
        controller_manager_kubeconfig: paths::CONTROLLER_MANAGER_KUBECONFIG.into(),
        controller_manager_port: paths::CONTROLLER_MANAGER_PORT,
        scheduler_kubeconfig: paths::SCHEDULER_KUBECONFIG.into(),
        scheduler_port: paths::SCHEDULER_PORT,
        // One instance: nothing to elect against. Under emulation (TCG) on a busy host the
        // default renew deadline (10 s) was missed and each lost Lease restarted the component,
        // and after a snapshot restore a new instance waits a full lease for the old holder's.
        leader_elect: false,
    }
}

/// Each service's arguments (after its program), by service name: one file with the Nix
/// module (`modules/control-plane.nix` reads `data/control-plane-args.json`; a test checks it
/// is this).
pub fn service_args() -> BTreeMap<&'static str, Vec<String>> {
    let layout = node_layout();
    BTreeMap::from([
        ("etcd", flags::etcd(&layout)),
        ("kube-apiserver", flags::apiserver(&layout)),
        (
            "kube-controller-manager",
            flags::controller_manager(&layout),
        ),
        ("kube-scheduler", flags::scheduler(&layout)),
    ])
}

/// What `modules/control-plane.nix` runs.
pub const ARGS_JSON: &str = include_str!("../data/control-plane-args.json");

/// The control-plane plan over `base` (init, busybox, /etc) with this machine's kernel.
pub fn plan(
    opts: &HostOptions,
    machine: Machine,
    base: Component,
) -> Result<(Plan, Vec<String>), HostPlanError> {
    let mut all = service_args();
    let mut binaries = Vec::new();
    let mut services = Vec::new();
    // In start order: etcd first, the API server on it, then its clients.
    for (name, role) in [
        ("etcd", Some(Role::Etcd)),
        ("kube-apiserver", Some(Role::ApiServer)),
        ("kube-controller-manager", None),
        ("kube-scheduler", None),
    ] {
        let args = all.remove(name).expect("every service has arguments");
        binaries.push(stack_binary(name)?);
        services.push(Service {
            // A control-plane image booted without its node segment starts nothing.
            condition_path: Some(paths::pki("ca.crt")),
            role,
            ..service(
                name,
                std::iter::once(format!("/usr/bin/{name}")).chain(args),
            )
        });
    }
    // The init restores etcd's snapshot with it (beside etcd, as in a Nix package's bin/).
    binaries.push(stack_binary("etcdutl")?);
    let control_plane = Component {
        name: "control-plane".into(),
        binaries,
        directories: vec![dir("/var/lib", 0o755)],
        packing: opts.packing,
        ..Default::default()
    };
    let plan = Plan {
        version: PLAN_VERSION,
        name: opts.name.clone(),
        description: Words::new(
            "reference control plane: host kernel and busybox, pinned etcd and Kubernetes control plane",
        )
        .expect("a valid description"),
        kernel: Kernel {
            image: machine.kernel,
            modules_dir: Some(machine.modules_dir),
            cmdline: Words::new("console=ttyS0,115200 panic=10").expect("a valid command line"),
        },
        compression: Compression::default(),
        squashfs: opts.squashfs,
        components: vec![base, kernel_modules::control_plane(), control_plane],
        images: Vec::new(),
        node: Node {
            sysctls: BTreeMap::new(),
            cgroup_controllers: Vec::new(),
            network: Network::Dhcp { interface: None },
            services,
        },
    };
    Ok((plan, Vec::new()))
}

fn stack_binary(name: &str) -> Result<BinaryEntry, HostPlanError> {
    let source =
        diskless_kube::stack::binary(name).map_err(|source| HostPlanError::StackControlPlane {
            name: name.into(),
            source,
        })?;
    Ok(bin(source, Some(&format!("/usr/bin/{name}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nix_module_runs_the_same_arguments() {
        let want = serde_json::to_string_pretty(&service_args()).unwrap() + "\n";
        assert!(
            ARGS_JSON == want,
            "crates/hostplan/data/control-plane-args.json is stale; write this into it:\n{want}"
        );
    }

    #[test]
    fn the_services_read_the_node_segment_and_keep_data_in_ram() {
        let l = node_layout();
        let etcd = flags::etcd(&l);
        assert!(etcd.contains(&format!("--data-dir={ETCD_DATA}")));
        assert!(etcd.contains(&format!("--cert-file={}", paths::pki("etcd/server.crt"))));
        let api = flags::apiserver(&l);
        assert!(api.contains(&format!("--client-ca-file={}", paths::pki("ca.crt"))));
        // Every PKI file a command line names is one publish puts in the node segment.
        let published: Vec<String> = paths::PKI_FILES
            .iter()
            .map(|(n, _)| paths::pki(n))
            .collect();
        for arg in etcd
            .iter()
            .chain(&api)
            .chain(&flags::controller_manager(&l))
            .chain(&flags::scheduler(&l))
        {
            if let Some((_, value)) = arg.split_once('=') {
                if value.starts_with(paths::PKI_DIR) {
                    assert!(published.contains(&value.to_string()), "{arg}");
                }
            }
        }
    }
}
