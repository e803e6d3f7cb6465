//! The reference worker, from this machine's packages and the pinned stack: one step per
//! component, in image order, each the counterpart of a Nix module (`modules/*.nix`), which
//! make the same shape from store paths.
//!
//! Segments: `base` (made by the caller, shared with the control plane), `kernel-modules`,
//! `containerd`, then with a kubelet `kubelet` and `kube-proxy`, with `--ssh` `ssh`, and
//! `config` last: the generated configuration of every step is its own small segment, so that
//! changing it recompresses nothing else. The preloaded images (a busybox-made `pause` under
//! containerd's sandbox reference, a busybox workload, CoreDNS) follow.

pub mod containerd;
pub mod kube_proxy;
pub mod kubelet;
pub mod node;
pub mod part;
pub mod preload;
pub mod ssh;

use crate::error::HostPlanError;
use crate::kernel_modules;
use crate::machine::Machine;
use crate::options::{HostOptions, Runtime};
use diskless_builder::plan::{Component, Compression, Plan, PreloadImage, PLAN_VERSION};
use diskless_builder::words::Words;
use part::Part;

/// The worker's plan over `base`, and warnings (no kubelet, no kube-proxy).
pub fn plan(
    opts: &HostOptions,
    machine: Machine,
    base: Component,
    images: Vec<PreloadImage>,
) -> Result<(Plan, Vec<String>), HostPlanError> {
    let mut warnings = Vec::new();
    let mut parts = vec![
        Part::from(base),
        Part::from(kernel_modules::worker()),
        containerd::part(opts)?,
    ];
    match kubelet::binary(&opts.kubelet)? {
        Some(binary) => {
            parts.push(kubelet::part(opts, binary));
            match kube_proxy::part(opts) {
                Ok(part) => parts.push(part),
                Err(e) => warnings.push(format!(
                    "no kube-proxy ({e}): joined nodes will not reach ClusterIP Services"
                )),
            }
            parts.push(kubelet::pod_routes());
        }
        None => warnings.push("no kubelet (--no-kubelet): a containerd-only worker".into()),
    }
    if opts.ssh {
        parts.push(ssh::part());
    }
    let (components, services) = part::assemble(parts);
    let plan = Plan {
        version: PLAN_VERSION,
        name: opts.name.clone(),
        description: description(opts.runtime),
        kernel: node::kernel(machine),
        compression: Compression::default(),
        squashfs: opts.squashfs,
        components,
        images: preload::images(opts.runtime, images),
        node: node::node(services),
    };
    Ok((plan, warnings))
}

fn description(runtime: Runtime) -> Words {
    Words::new(match runtime {
        Runtime::Stack => "reference worker: host kernel and busybox, pinned Kubernetes stack",
        Runtime::Debian => "reference worker: host kernel, busybox and Debian containerd",
    })
    .expect("a valid description")
}
