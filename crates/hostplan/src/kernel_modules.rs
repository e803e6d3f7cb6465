//! The kernel modules a node loads (the Nix modules' `kernel.modules`), from one data file that
//! both front ends read.

use diskless_builder::plan::Component;
use std::collections::BTreeMap;

/// The kernel modules a worker needs, by what needs them, with the reason: one file that the
/// Nix modules read too (`modules/containerd.nix`, `modules/kubelet.nix`, the images' NIC), so
/// the two plans cannot drift. Load order is computed from the tree (`kmod.rs`).
pub const KERNEL_MODULES_JSON: &str = include_str!("../data/kernel-modules.json");

/// One group of [`KERNEL_MODULES_JSON`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleGroup {
    pub why: String,
    pub modules: Vec<String>,
}

/// Every module of [`KERNEL_MODULES_JSON`], network first, then the container runtime's, then
/// the kubelet's.
pub fn worker_modules() -> Vec<String> {
    ["network", "container-runtime", "kubelet"]
        .iter()
        .flat_map(|g| module_group(g))
        .collect()
}

/// The modules of one group of [`KERNEL_MODULES_JSON`].
pub fn module_group(name: &str) -> Vec<String> {
    let groups: BTreeMap<String, ModuleGroup> =
        serde_json::from_str(KERNEL_MODULES_JSON).expect("data/kernel-modules.json is valid");
    groups[name].modules.clone()
}

/// The `kernel-modules` segment of a worker: every group, also without a kubelet.
pub fn worker() -> Component {
    Component {
        name: "kernel-modules".into(),
        modules: worker_modules(),
        ..Default::default()
    }
}

/// The `kernel-modules` segment of the control plane: its NIC, and what mounts the
/// squashfs-packed segments (a loop device, under an overlay). No pod network, no iptables.
pub fn control_plane() -> Component {
    Component {
        name: "kernel-modules".into(),
        modules: [
            module_group("network"),
            vec!["loop".into(), "squashfs".into(), "overlay".into()],
        ]
        .concat(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_list_has_three_groups_with_reasons_and_no_repeats() {
        let groups: BTreeMap<String, ModuleGroup> =
            serde_json::from_str(KERNEL_MODULES_JSON).unwrap();
        let names: Vec<&str> = groups.keys().map(String::as_str).collect();
        assert_eq!(names, ["container-runtime", "kubelet", "network"]);
        assert!(groups
            .values()
            .all(|g| !g.why.is_empty() && !g.modules.is_empty()));
        let all = worker_modules();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "a module is listed twice: {all:?}");
        assert_eq!(&all[..2], ["virtio_pci", "virtio_net"]);
    }
}
