//! The addresses and ports both kinds of control plane and the scenarios agree on: a leaf, so
//! the PKI, the control planes and the scenarios can all name them.

/// Where a guest finds the API server: slirp's guestfwd answers there (the boot server's HTTP
/// uses the same address, port 80).
pub const GUEST_API_ADDR: &str = "10.0.2.100";
pub const GUEST_API_PORT: u16 = 6443;
/// kubeadm's defaults (shared with the diskless control-plane image).
pub use diskless_kube::controlplane::{
    CLUSTER_CIDR, CLUSTER_DNS, CLUSTER_DOMAIN, KUBERNETES_SERVICE_IP, NODE_CIDR_MASK, SERVICE_CIDR,
};
/// The kubelet's HTTPS port in the guest.
pub const KUBELET_PORT: u16 = 10250;
