//! How each component is run: the files and ports of one control plane, and the command line
//! of etcd, kube-apiserver, kube-controller-manager and kube-scheduler over them. The flags
//! follow kubeadm's static pod manifests (`cmd/kubeadm/app/phases/controlplane/manifests.go`)
//! where a kubeadm cluster has an equivalent, so a guest that joins this control plane meets
//! what it would meet in a kubeadm cluster; the differences carry their reason beside them.

use super::pki::Pki;
use super::{CLUSTER_CIDR, GUEST_API_ADDR, NODE_CIDR_MASK, SERVICE_CIDR};
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
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// One member, plain HTTP on loopback: only the API server talks to it, from the same host,
/// and it lives for one test. No fsync: its data dies with the tempdir anyway, and fsync on a
/// busy CI disk made etcd's writes (hence the API server's start) slow.
pub fn etcd(l: &Layout) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", l.ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", l.ports.etcd_peer);
    vec![
        "--name=default".into(),
        format!("--data-dir={}", p(&l.etcd_data)),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

pub fn apiserver(l: &Layout) -> Vec<String> {
    let pki = &l.pki;
    // Under slirp it listens on the host's loopback only; guests reach it through slirp's
    // guestfwd at GUEST_API_ADDR. That address is also what it advertises (the `kubernetes`
    // Service's endpoint): 127.0.0.1 would be refused there (an endpoint may not be loopback),
    // and GUEST_API_ADDR is where a guest finds it. On a lab network (inside the network
    // namespace the caller made) it listens everywhere there and advertises the lab address.
    let (bind, advertise) = match l.lab_address {
        None => ("127.0.0.1".to_string(), GUEST_API_ADDR.to_string()),
        Some(a) => ("0.0.0.0".to_string(), a.to_string()),
    };
    vec![
        format!("--bind-address={bind}"),
        format!("--secure-port={}", l.ports.api),
        format!("--advertise-address={advertise}"),
        format!("--etcd-servers=http://127.0.0.1:{}", l.ports.etcd_client),
        format!("--client-ca-file={}", p(&pki.ca.cert)),
        format!("--tls-cert-file={}", p(&pki.apiserver.cert)),
        format!("--tls-private-key-file={}", p(&pki.apiserver.key)),
        format!("--service-account-key-file={}", p(&pki.sa_pub)),
        format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--enable-bootstrap-token-auth=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        format!(
            "--kubelet-client-certificate={}",
            p(&pki.apiserver_kubelet_client.cert)
        ),
        format!(
            "--kubelet-client-key={}",
            p(&pki.apiserver_kubelet_client.key)
        ),
        // kubeadm prefers InternalIP; every slirp guest is 10.0.2.15, so the node's name is
        // what tells guests apart, and the kubelet proxy routes by it (kubelet_proxy.rs).
        "--kubelet-preferred-address-types=Hostname,InternalIP".into(),
        format!("--egress-selector-config-file={}", p(&l.egress_config)),
    ]
}

/// kubeadm's controller-manager, plus: node CIDR allocation (kubeadm's `--pod-network-cidr`),
/// no leader election (one instance; electing costs seconds at start), and a higher client
/// rate limit: with `--use-service-account-credentials` every controller first gets its own
/// ServiceAccount and token, and at the default 20 requests/s that alone took the start of the
/// controllers from 0.5 s to 5 s here.
pub fn controller_manager(l: &Layout) -> Vec<String> {
    let pki = &l.pki;
    let kubeconfig = p(&l.controller_manager_kubeconfig);
    vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", l.ports.controller_manager),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--client-ca-file={}", p(&pki.ca.cert)),
        format!("--root-ca-file={}", p(&pki.ca.cert)),
        format!("--service-account-private-key-file={}", p(&pki.sa_key)),
        // The CA signs the nodes' client certificates (CSRs approved by csrapprover).
        format!("--cluster-signing-cert-file={}", p(&pki.ca.cert)),
        format!("--cluster-signing-key-file={}", p(&pki.ca.key)),
        "--use-service-account-credentials=true".into(),
        "--controllers=*,bootstrapsigner,tokencleaner".into(),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--node-cidr-mask-size={NODE_CIDR_MASK}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--leader-elect=false".into(),
        "--kube-api-qps=200".into(),
        "--kube-api-burst=400".into(),
    ]
}

pub fn scheduler(l: &Layout) -> Vec<String> {
    let kubeconfig = p(&l.scheduler_kubeconfig);
    vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", l.ports.scheduler),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--leader-elect=false".into(),
    ]
}
