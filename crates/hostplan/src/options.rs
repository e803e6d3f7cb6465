//! What the caller asks of the host plan (`diskless plan --host`'s flags, as plain types): the
//! one input that the worker's steps and the control plane's both read.

use crate::mirror::RegistryMirror;
use diskless_builder::plan::{Packing, SquashfsCompression};
use std::path::PathBuf;

/// What the host plan's machine is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostRole {
    /// containerd and a kubelet (`images/worker`).
    #[default]
    Worker,
    /// etcd and the Kubernetes control plane (`control_plane.rs`, `images/control-plane`).
    ControlPlane,
}

/// Where the container runtime (containerd, its shim, ctr, runc, CNI plugins) comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Runtime {
    /// The pinned stack (`scripts/build-stack`): containerd 2.x, runc 1.5, CNI plugins 1.10.
    #[default]
    Stack,
    /// Debian 12's packages: containerd 1.6.20 (end of life), runc 1.1.5.
    Debian,
}

/// The kubelet the worker runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Kubelet {
    /// The pinned stack's.
    #[default]
    Stack,
    /// This binary (`--kubelet`, `$KUBELET`).
    Path(PathBuf),
    /// None: a containerd-only worker.
    None,
}

#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    pub role: HostRole,
    pub kubelet: Kubelet,
    pub runtime: Runtime,
    /// The node's init binary (default: `diskless-init` beside this executable).
    pub init: Option<PathBuf>,
    /// Kernel image (default: the newest /boot/vmlinuz-* with a matching /lib/modules tree).
    pub kernel: Option<PathBuf>,
    /// Image name.
    pub name: String,
    /// How the large components (containerd, kubelet) travel: `squashfs` (mounted read-only by
    /// the init; less RAM, faster boot) or `cpio` (unpacked by the kernel).
    pub packing: Packing,
    /// The block codec of the squashfs-packed components.
    pub squashfs: SquashfsCompression,
    /// An SSH server (dropbear, Debian's `dropbear-bin`): root, key login only, with the keys
    /// a node's inventory entry gives it (`/root/.ssh/authorized_keys` in its node segment).
    pub ssh: bool,
    /// Pull-through mirrors for images that are not preloaded (containerd's `hosts.toml`).
    pub registry_mirrors: Vec<RegistryMirror>,
}
