//! How a Kubernetes control plane's components are run, once for both places that run one:
//! the harness's throwaway control plane on the host's loopback and the diskless control-plane
//! image (diskless-hostplan's `control_plane.rs`, `--role control-plane`), whose services come
//! from these functions. The flags follow kubeadm's static pod manifests
//! (`cmd/kubeadm/app/phases/controlplane/manifests.go`) where a kubeadm cluster has an
//! equivalent, so a node that joins either meets what it would meet in a kubeadm cluster; the
//! differences carry their reason beside them. Also here: the RBAC that `kubeadm init` adds for
//! nodes to join with bootstrap tokens, which both apply.

use serde_json::{json, Value};

/// kubeadm's defaults: services, the `kubernetes` Service's IP (the range's first), pods.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Each node's `spec.podCIDR` is a /24 of [`CLUSTER_CIDR`].
pub const NODE_CIDR_MASK: u8 = 24;
/// The cluster DNS Service's ClusterIP (kubeadm's: the tenth address of [`SERVICE_CIDR`]) and
/// the cluster domain.
pub const CLUSTER_DNS: &str = "10.96.0.10";
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// A certificate and its key, as paths.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// The PKI files the components are started with (kubeadm's names).
#[derive(Debug, Clone)]
pub struct PkiPaths {
    pub ca: Pair,
    pub apiserver: Pair,
    pub apiserver_kubelet_client: Pair,
    pub sa_key: String,
    pub sa_pub: String,
}

/// etcd over TLS with client certificates: its own CA (the cluster CA also signs every node's
/// client certificate, and no node may read etcd), its serving pair, and the API server's
/// client pair.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: String,
    pub server: Pair,
    pub apiserver_client: Pair,
}

/// Everything the four command lines depend on.
#[derive(Debug, Clone)]
pub struct Layout {
    pub pki: PkiPaths,
    pub etcd_data: String,
    /// etcd's member name (also what a snapshot restore must be given).
    pub etcd_name: String,
    /// `--listen-client-urls`, e.g. `http://127.0.0.1:2379` or `https://0.0.0.0:2379`.
    pub etcd_listen_client: String,
    /// What the API server dials (and etcd advertises), e.g. `http://127.0.0.1:2382`; its
    /// client certificate is used only for an `https://` one.
    pub etcd_client: String,
    /// Peer URL (one member, on loopback).
    pub etcd_peer: String,
    /// None: plain HTTP (the harness's, reachable from the host's loopback only).
    pub etcd_tls: Option<EtcdTls>,
    /// Skip etcd's fsyncs: for data that dies with a temporary directory anyway.
    pub etcd_unsafe_no_fsync: bool,
    pub api_bind: String,
    pub api_port: u16,
    /// `--advertise-address`; None: the node's, which the init adds (role `api-server`).
    pub api_advertise: Option<String>,
    /// `--kubelet-preferred-address-types`.
    pub kubelet_address_types: String,
    pub egress_config: Option<String>,
    pub controller_manager_kubeconfig: String,
    pub controller_manager_port: u16,
    pub scheduler_kubeconfig: String,
    pub scheduler_port: u16,
    /// Leader election for the controller-manager and the scheduler (off for one instance).
    pub leader_elect: bool,
}

impl Layout {
    /// The PKI paths under `dir` by kubeadm's file names, as `pki.rs` of the harness writes
    /// them and the node segment carries them.
    pub fn kubeadm_pki(dir: &str) -> (PkiPaths, EtcdTls) {
        let pair = |n: &str| Pair {
            cert: format!("{dir}/{n}.crt"),
            key: format!("{dir}/{n}.key"),
        };
        (
            PkiPaths {
                ca: pair("ca"),
                apiserver: pair("apiserver"),
                apiserver_kubelet_client: pair("apiserver-kubelet-client"),
                sa_key: format!("{dir}/sa.key"),
                sa_pub: format!("{dir}/sa.pub"),
            },
            EtcdTls {
                ca: format!("{dir}/etcd/ca.crt"),
                server: pair("etcd/server"),
                apiserver_client: pair("apiserver-etcd-client"),
            },
        )
    }
}

/// One member.
pub fn etcd(l: &Layout) -> Vec<String> {
    let mut args = vec![
        format!("--name={}", l.etcd_name),
        format!("--data-dir={}", l.etcd_data),
        format!("--listen-client-urls={}", l.etcd_listen_client),
        format!("--advertise-client-urls={}", l.etcd_client),
        format!("--listen-peer-urls={}", l.etcd_peer),
        format!("--initial-advertise-peer-urls={}", l.etcd_peer),
        format!("--initial-cluster={}={}", l.etcd_name, l.etcd_peer),
    ];
    if let Some(tls) = &l.etcd_tls {
        args.extend([
            format!("--cert-file={}", tls.server.cert),
            format!("--key-file={}", tls.server.key),
            "--client-cert-auth=true".into(),
            format!("--trusted-ca-file={}", tls.ca),
        ]);
    }
    if l.etcd_unsafe_no_fsync {
        args.push("--unsafe-no-fsync=true".into());
    }
    args.push("--log-level=warn".into());
    args
}

pub fn apiserver(l: &Layout) -> Vec<String> {
    let pki = &l.pki;
    let mut args = vec![
        format!("--bind-address={}", l.api_bind),
        format!("--secure-port={}", l.api_port),
    ];
    if let Some(a) = &l.api_advertise {
        args.push(format!("--advertise-address={a}"));
    }
    args.push(format!("--etcd-servers={}", l.etcd_client));
    if let Some(tls) = l
        .etcd_tls
        .as_ref()
        .filter(|_| l.etcd_client.starts_with("https://"))
    {
        args.extend([
            format!("--etcd-cafile={}", tls.ca),
            format!("--etcd-certfile={}", tls.apiserver_client.cert),
            format!("--etcd-keyfile={}", tls.apiserver_client.key),
        ]);
    }
    args.extend([
        format!("--client-ca-file={}", pki.ca.cert),
        format!("--tls-cert-file={}", pki.apiserver.cert),
        format!("--tls-private-key-file={}", pki.apiserver.key),
        format!("--service-account-key-file={}", pki.sa_pub),
        format!("--service-account-signing-key-file={}", pki.sa_key),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--enable-bootstrap-token-auth=true".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        format!(
            "--kubelet-client-certificate={}",
            pki.apiserver_kubelet_client.cert
        ),
        format!("--kubelet-client-key={}", pki.apiserver_kubelet_client.key),
        format!(
            "--kubelet-preferred-address-types={}",
            l.kubelet_address_types
        ),
    ]);
    if let Some(e) = &l.egress_config {
        args.push(format!("--egress-selector-config-file={e}"));
    }
    args
}

/// kubeadm's controller-manager, plus: node CIDR allocation (kubeadm's `--pod-network-cidr`)
/// and a higher client rate limit: with `--use-service-account-credentials` every controller
/// first gets its own ServiceAccount and token, and at the default 20 requests/s that alone
/// took the start of the controllers from 0.5 s to 5 s here.
pub fn controller_manager(l: &Layout) -> Vec<String> {
    let pki = &l.pki;
    let kubeconfig = &l.controller_manager_kubeconfig;
    vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", l.controller_manager_port),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--client-ca-file={}", pki.ca.cert),
        format!("--root-ca-file={}", pki.ca.cert),
        format!("--service-account-private-key-file={}", pki.sa_key),
        // The CA signs the nodes' client certificates (CSRs approved by csrapprover).
        format!("--cluster-signing-cert-file={}", pki.ca.cert),
        format!("--cluster-signing-key-file={}", pki.ca.key),
        "--use-service-account-credentials=true".into(),
        "--controllers=*,bootstrapsigner,tokencleaner".into(),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--node-cidr-mask-size={NODE_CIDR_MASK}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--leader-elect={}", l.leader_elect),
        "--kube-api-qps=200".into(),
        "--kube-api-burst=400".into(),
    ]
}

pub fn scheduler(l: &Layout) -> Vec<String> {
    let kubeconfig = &l.scheduler_kubeconfig;
    vec![
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", l.scheduler_port),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--leader-elect={}", l.leader_elect),
    ]
}

/// The group kubeadm's default bootstrap tokens authenticate as (besides
/// `system:bootstrappers`): a kubeadm cluster already lets it create and auto-approve node CSRs.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The RBAC bindings of kubeadm's `bootstrap-token` phase
/// (`cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go` at v1.36.3) and the node
/// proxier's, as values for one `v1/List`. Left out on purpose: `kubeadm:get-nodes` and the
/// `cluster-info` ConfigMap serve `kubeadm join` (its discovery and its check for a duplicate
/// node), not the kubelet's TLS bootstrap, and this project joins without kubeadm.
pub fn bootstrap_rbac() -> Vec<Value> {
    vec![
        // Bootstrap tokens may create CSRs (the kubelet's first client certificate).
        binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "Group",
            BOOTSTRAP_GROUP,
        ),
        // The controller-manager's csrapprover approves those CSRs ...
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            BOOTSTRAP_GROUP,
        ),
        // ... and a node's renewal of its own client certificate.
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            "system:nodes",
        ),
        // Nodes run kube-proxy with their own credentials (the host plans do): it lists
        // Services, EndpointSlices and Nodes. kubeadm binds the role to a kube-proxy
        // ServiceAccount; a RAM-only node has no place to keep that account's token.
        binding(
            "diskless:node-proxier",
            "system:node-proxier",
            "Group",
            "system:nodes",
        ),
        // The API server's client certificate may use the kubelet API (logs, exec), and only
        // that: it is not in system:masters.
        binding(
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            "User",
            "kube-apiserver-kubelet-client",
        ),
    ]
}

/// `items` as one `v1/List` for `kubectl apply -f -`.
pub fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

fn binding(name: &str, role: &str, kind: &str, subject: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role,
        },
        "subjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": subject,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(tls: bool) -> Layout {
        let (pki, etcd) = Layout::kubeadm_pki("/pki");
        Layout {
            pki,
            etcd_data: "/var/lib/etcd".into(),
            etcd_name: "m".into(),
            etcd_listen_client: "https://0.0.0.0:2379".into(),
            etcd_client: "https://127.0.0.1:2379".into(),
            etcd_peer: "http://127.0.0.1:2380".into(),
            etcd_tls: tls.then_some(etcd),
            etcd_unsafe_no_fsync: false,
            api_bind: "0.0.0.0".into(),
            api_port: 6443,
            api_advertise: None,
            kubelet_address_types: "InternalIP,Hostname".into(),
            egress_config: None,
            controller_manager_kubeconfig: "/cm.kubeconfig".into(),
            controller_manager_port: 10257,
            scheduler_kubeconfig: "/s.kubeconfig".into(),
            scheduler_port: 10259,
            leader_elect: true,
        }
    }

    #[test]
    fn etcd_over_tls_checks_client_certificates_and_the_api_server_presents_one() {
        let l = layout(true);
        let e = etcd(&l);
        assert!(e.contains(&"--client-cert-auth=true".to_string()));
        assert!(e.contains(&"--trusted-ca-file=/pki/etcd/ca.crt".to_string()));
        assert!(e.contains(&"--initial-cluster=m=http://127.0.0.1:2380".to_string()));
        let a = apiserver(&l);
        assert!(a.contains(&"--etcd-certfile=/pki/apiserver-etcd-client.crt".to_string()));
        assert!(!a.iter().any(|f| f.starts_with("--advertise-address")));
        let plain = etcd(&layout(false));
        assert!(!plain.iter().any(|f| f.starts_with("--cert-file")));
        assert!(controller_manager(&l).contains(&"--allocate-node-cidrs=true".to_string()));
        assert!(scheduler(&l).contains(&"--leader-elect=true".to_string()));
    }

    #[test]
    fn the_rbac_holds_kubeadms_bindings_and_the_node_proxier() {
        let names: Vec<String> = bootstrap_rbac()
            .iter()
            .map(|b| b["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert!(names.contains(&"kubeadm:node-autoapprove-bootstrap".to_string()));
        assert!(names.contains(&"diskless:node-proxier".to_string()));
    }
}
