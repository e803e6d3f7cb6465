//! The `kube-proxy` step (the Nix module `kube-proxy.nix`): kube-proxy from the pinned stack,
//! started only where the node joins a cluster (its condition: the bootstrap kubeconfig that
//! publish puts in the node segment).

use super::part::Part;
use crate::entries::{bin, gen, go_daemon_env, service};
use crate::options::HostOptions;
use diskless_builder::plan::{Component, Packing, Service};
use diskless_contract::node::BOOTSTRAP_KUBECONFIG;
use diskless_kube::stack::StackError;

/// Err when the stack has no kube-proxy: the worker is still useful standalone.
pub fn part(opts: &HostOptions) -> Result<Part, StackError> {
    let binary = bin(
        diskless_kube::stack::binary("kube-proxy")?,
        Some("/usr/bin/kube-proxy"),
    );
    let component = match opts.packing {
        // Its own squashfs segment with the same condition: a standalone node's init deletes
        // it unmounted (≈ 17 MB of RAM).
        Packing::Squashfs => Component {
            name: "kube-proxy".into(),
            binaries: vec![binary],
            packing: opts.packing,
            condition_path: Some(BOOTSTRAP_KUBECONFIG.into()),
            ..Default::default()
        },
        // A cpio segment is unpacked before the init could leave it out: into the kubelet's.
        Packing::Cpio => Component {
            name: "kubelet".into(),
            binaries: vec![binary],
            packing: opts.packing,
            ..Default::default()
        },
    };
    Ok(Part {
        components: vec![component],
        services: vec![Service {
            env: go_daemon_env(),
            condition_path: Some(BOOTSTRAP_KUBECONFIG.into()),
            ..service(
                "kube-proxy",
                [
                    "/usr/bin/kube-proxy",
                    "--config=/etc/kubernetes/kube-proxy.yaml",
                ],
            )
        }],
        config: vec![gen("/etc/kubernetes/kube-proxy.yaml", KUBE_PROXY_CONFIG)],
        config_dirs: Vec::new(),
    })
}

/// kube-proxy on a joined node: ClusterIP Services (the `kubernetes` one included) reachable
/// from pods, through iptables rules (legacy iptables, whose modules the kubelet group of
/// `kernel-modules.json` loads). It talks to the API server with the node's own credentials,
/// the kubeconfig the kubelet writes once its bootstrap CSR is signed (until then kube-proxy
/// exits and the init restarts it with backoff); the cluster grants nodes the
/// `system:node-proxier` role (docs/boot-server.md). `maxPerCore: 0` leaves the kernel's
/// conntrack table size alone: the node's RAM is its disk too. A constant: no value is pasted in.
pub const KUBE_PROXY_CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /var/lib/kubelet/kubeconfig
mode: iptables
conntrack:
  maxPerCore: 0
";
