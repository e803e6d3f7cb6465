//! The two kinds of control plane, one name each: [`host::HostControlPlane`], the throwaway one
//! made of host processes (etcd, kube-apiserver, … from the pinned stack), and
//! [`vm::VmControlPlane`], the diskless control-plane image booted as a lab machine. Both
//! implement [`side::ControlPlaneSide`] for the cluster scenario, and share the PKI ([`pki`])
//! and the addresses ([`network`]).

pub mod host;
pub mod network;
pub mod pki;
pub mod side;
pub mod vm;
