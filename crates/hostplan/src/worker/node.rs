//! What the worker's kernel and init set up before any service (the Nix modules `kernel.nix`,
//! `base.nix` and `network.nix`): the kernel command line, sysctls, cgroup controllers, DHCP.

use crate::machine::Machine;
use diskless_builder::plan::{Kernel, Network, Node, Service};
use diskless_builder::words::Words;

pub fn kernel(machine: Machine) -> Kernel {
    Kernel {
        image: machine.kernel,
        modules_dir: Some(machine.modules_dir),
        // transparent_hugepage=never: with THP on, the kernel raises min_free_kbytes to keep
        // 2 MiB blocks free (≈ 66 MB at 4 GiB), and its watermarks count as used memory:
        // MemTotal − MemAvailable with the pod running fell from 494 to 305 MB at 4 GiB
        // (docs/performance.md). The node runs no workload that THP would speed up much.
        cmdline: Words::new("console=ttyS0,115200 panic=10 transparent_hugepage=never")
            .expect("a valid command line"),
    }
}

/// Forwarding and bridge netfilter for the pod network, the cgroup controllers the kubelet
/// and runc use, an address by DHCP; then `services`.
pub fn node(services: Vec<Service>) -> Node {
    Node {
        sysctls: [
            ("net.ipv4.ip_forward", "1"),
            ("net.bridge.bridge-nf-call-iptables", "1"),
            ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        cgroup_controllers: ["cpu", "memory", "pids", "io", "cpuset"]
            .into_iter()
            .map(String::from)
            .collect(),
        network: Network::Dhcp { interface: None },
        services,
    }
}
