//! How each component of the throwaway control plane is run: the files and ports of one
//! control plane, turned into the shared command lines of `diskless_kube::controlplane`
//! (which the diskless control-plane image runs too). What differs here carries its reason.

use crate::lab::control_plane::network::GUEST_API_ADDR;
use crate::lab::control_plane::pki::{self, Pki};
use diskless_kube::controlplane as flags;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Host loopback ports, all chosen free at start.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub api: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

/// Where one control plane keeps its files, under its state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub logs: PathBuf,
    pub etcd_data: PathBuf,
    pub pki: Pki,
    pub admin_kubeconfig: PathBuf,
    pub controller_manager_kubeconfig: PathBuf,
    pub scheduler_kubeconfig: PathBuf,
    pub egress_config: PathBuf,
    /// The kubelet proxy's Unix socket.
    pub kubelet_proxy: PathBuf,
    pub ports: Ports,
    /// On a lab network (`Options::lab_address`): the address guests reach the API server at.
    pub lab_address: Option<Ipv4Addr>,
}

impl Layout {
    pub fn new(dir: &Path, pki: Pki, ports: Ports, lab_address: Option<Ipv4Addr>) -> Layout {
        Layout {
            logs: dir.join("logs"),
            etcd_data: dir.join("etcd"),
            pki,
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            controller_manager_kubeconfig: dir.join("controller-manager.kubeconfig"),
            scheduler_kubeconfig: dir.join("scheduler.kubeconfig"),
            egress_config: dir.join("egress-selector.json"),
            kubelet_proxy: dir.join("kubelet-proxy.sock"),
            ports,
            lab_address,
        }
    }

    pub fn log(&self, component: &str) -> PathBuf {
        self.logs.join(format!("{component}.log"))
    }

    /// The shared command lines' inputs for this control plane.
    fn flags(&self) -> flags::Layout {
        let pki = &self.pki;
        let pair = |p: &pki::Pair| flags::Pair {
            cert: s(&p.cert),
            key: s(&p.key),
        };
        let client = format!("http://127.0.0.1:{}", self.ports.etcd_client);
        flags::Layout {
            pki: flags::PkiPaths {
                ca: pair(&pki.ca),
                apiserver: pair(&pki.apiserver),
                apiserver_kubelet_client: pair(&pki.apiserver_kubelet_client),
                sa_key: s(&pki.sa_key),
                sa_pub: s(&pki.sa_pub),
            },
            etcd_data: s(&self.etcd_data),
            etcd_name: "default".into(),
            // One member, plain HTTP on loopback: only the API server talks to it, from the
            // same host, and it lives for one test.
            etcd_listen_client: client.clone(),
            etcd_client: client,
            etcd_peer: format!("http://127.0.0.1:{}", self.ports.etcd_peer),
            etcd_tls: None,
            // Its data dies with the tempdir anyway, and fsync on a busy CI disk made etcd's
            // writes (hence the API server's start) slow.
            etcd_unsafe_no_fsync: true,
            // Under slirp it listens on the host's loopback only; guests reach it through
            // slirp's guestfwd at GUEST_API_ADDR. That address is also what it advertises (the
            // `kubernetes` Service's endpoint): 127.0.0.1 would be refused there (an endpoint
            // may not be loopback), and GUEST_API_ADDR is where a guest finds it. On a lab
            // network (inside the network namespace the caller made) it listens everywhere
            // there and advertises the lab address.
            api_bind: match self.lab_address {
                None => "127.0.0.1".into(),
                Some(_) => "0.0.0.0".into(),
            },
            api_port: self.ports.api,
            api_advertise: Some(
                self.lab_address
                    .map_or_else(|| GUEST_API_ADDR.to_string(), |a| a.to_string()),
            ),
            // kubeadm prefers InternalIP; every slirp guest is 10.0.2.15, so the node's name
            // is what tells guests apart, and the kubelet proxy routes by it
            // (kubelet_proxy.rs).
            kubelet_address_types: "Hostname,InternalIP".into(),
            egress_config: Some(s(&self.egress_config)),
            controller_manager_kubeconfig: s(&self.controller_manager_kubeconfig),
            controller_manager_port: self.ports.controller_manager,
            scheduler_kubeconfig: s(&self.scheduler_kubeconfig),
            scheduler_port: self.ports.scheduler,
            // One instance; electing costs seconds at start.
            leader_elect: false,
        }
    }
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

pub fn etcd(l: &Layout) -> Vec<String> {
    flags::etcd(&l.flags())
}

pub fn apiserver(l: &Layout) -> Vec<String> {
    flags::apiserver(&l.flags())
}

pub fn controller_manager(l: &Layout) -> Vec<String> {
    flags::controller_manager(&l.flags())
}

pub fn scheduler(l: &Layout) -> Vec<String> {
    flags::scheduler(&l.flags())
}
