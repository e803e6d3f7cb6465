//! The host plan (`diskless plan --host`, `diskless build --host`): an image from this
//! machine's own packages (Debian 12) and the pinned stack, how the builder is built and
//! tested without Nix. The Nix modules make the same shape from store paths.
//!
//! Check this machine, make the `base` segment every role shares, then the role's own plan:
//! the reference worker (`worker`) or the reference control plane (`control_plane`).

use crate::error::HostPlanError;
use crate::machine::Machine;
use crate::{base, control_plane, worker};
use diskless_builder::plan::{Plan, PreloadImage};

// Where the command line and the Nix tests take them from.
pub use crate::options::{HostOptions, HostRole, Kubelet, Runtime};
pub use crate::worker::kube_proxy::KUBE_PROXY_CONFIG;

/// The plan for `opts`, and warnings (e.g. no kubelet). `images` are a worker's preloaded
/// images (the `oci` crate makes them from busybox: `PAUSE_REF`, `WORKLOAD_REF`, and
/// `COREDNS_REF` from the stack); the control plane has none.
pub fn host_plan(
    opts: &HostOptions,
    images: Vec<PreloadImage>,
) -> Result<(Plan, Vec<String>), HostPlanError> {
    let machine = Machine::find(opts)?;
    let base = base::component(&machine)?;
    match opts.role {
        HostRole::Worker => worker::plan(opts, machine, base, images),
        HostRole::ControlPlane => control_plane::plan(opts, machine, base),
    }
}

#[cfg(test)]
mod tests {
    use diskless_kube::images::COREDNS_REF;

    #[test]
    fn the_coredns_ref_names_the_pinned_version() {
        let versions = include_str!("../../../stack/versions");
        let pinned = versions
            .lines()
            .find_map(|l| l.strip_prefix("COREDNS_VERSION="))
            .expect("stack/versions has COREDNS_VERSION");
        assert_eq!(COREDNS_REF.rsplit_once(':').unwrap().1, pinned);
    }
}
