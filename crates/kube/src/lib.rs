//! diskless-kube: what this project knows about Kubernetes itself, with no image building in it,
//! so that the host plan, publish and the harness all import it from one place:
//! `controlplane` (the components' command lines, kubeadm's defaults and bootstrap RBAC),
//! `stack` (where the pinned binaries built from Go modules are), `images` (the reference
//! images' names).

pub mod controlplane;
pub mod images;
pub mod stack;
