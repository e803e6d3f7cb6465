//! The `containerd` step (the Nix module `containerd.nix`): containerd, its shim, ctr, runc,
//! legacy iptables and the CNI plugins in one segment, containerd as the first service, and its
//! configuration (config.toml, the pod network's template, crictl's endpoints, registry
//! mirrors) in the `config` segment.

use super::part::Part;
use crate::entries::{bin, dir, gen, go_daemon_env, link, service};
use crate::error::HostPlanError;
use crate::mirror;
use crate::options::{HostOptions, Runtime};
use diskless_builder::plan::{BinaryEntry, Component, Role, TreeEntry};
use diskless_kube::images::PAUSE_REF;
use std::path::PathBuf;

/// CNI plugins the generated bridge network uses.
const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

pub fn part(opts: &HostOptions) -> Result<Part, HostPlanError> {
    let mut config = vec![
        gen("/etc/containerd/config.toml", containerd_config(opts.runtime)),
        gen(CNI_TEMPLATE_PATH, CNI_TEMPLATE),
        gen(
            "/etc/crictl.yaml",
            "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n",
        ),
    ];
    for (path, text) in mirror::hosts_files(&opts.registry_mirrors) {
        config.push(gen(&path, text));
    }
    Ok(Part {
        components: vec![component(opts)?],
        services: vec![diskless_builder::plan::Service {
            env: go_daemon_env(),
            ready_path: Some("/run/containerd/containerd.sock".into()),
            role: Some(Role::ContainerRuntime),
            ..service(
                "containerd",
                [
                    "/usr/bin/containerd",
                    "--config",
                    "/etc/containerd/config.toml",
                ],
            )
        }],
        config,
        config_dirs: vec![dir(mirror::CERTS_DIR, 0o755)],
    })
}

fn component(opts: &HostOptions) -> Result<Component, HostPlanError> {
    let mut binaries: Vec<BinaryEntry> = runtime_binaries(opts.runtime)?
        .into_iter()
        .map(|(source, dest)| bin(source, Some(dest.as_str())))
        .collect();
    binaries.push(bin("/usr/sbin/xtables-legacy-multi", None));
    // kube-proxy balances a Service over several endpoints with the `statistic` match, whose
    // extension needs libm: as a binary entry (it is in the xtables tree below too) its ELF
    // closure comes along. Without it every kube-proxy sync of a two-endpoint Service failed.
    binaries.push(bin(
        "/usr/lib/x86_64-linux-gnu/xtables/libxt_statistic.so",
        None,
    ));
    // The plugins stay in /usr/lib/cni, inside the squashfs with the rest of /usr, and the
    // CNI bin_dir, /opt/cni/bin, holds links to them: it stays writable for the plugins a
    // cluster's CNI DaemonSet installs there, and 10 MB less is unpacked into the tmpfs.
    let mut links = Vec::new();
    for p in CNI_PLUGINS {
        links.push(link(
            &format!("/opt/cni/bin/{p}"),
            &format!("/usr/lib/cni/{p}"),
        ));
    }
    for family in ["iptables", "ip6tables"] {
        for suffix in ["", "-save", "-restore"] {
            links.push(link(
                &format!("/usr/sbin/{family}{suffix}"),
                "xtables-legacy-multi",
            ));
            links.push(link(
                &format!("/usr/sbin/{family}-legacy{suffix}"),
                "xtables-legacy-multi",
            ));
        }
    }
    Ok(Component {
        name: "containerd".into(),
        binaries,
        // iptables loads its match/target extensions with dlopen, so no ELF closure finds them.
        trees: vec![TreeEntry {
            source: "/usr/lib/x86_64-linux-gnu/xtables".into(),
            dest: None,
        }],
        symlinks: links,
        packing: opts.packing,
        ..Default::default()
    })
}

/// The runtime's binaries as (source on this machine, path in the image): the stack's go where
/// Debian's would, so the generated configuration is the same for both but the TOML version.
fn runtime_binaries(runtime: Runtime) -> Result<Vec<(PathBuf, String)>, HostPlanError> {
    let mut bins: Vec<(&str, String)> = vec![
        ("containerd", "/usr/bin/containerd".into()),
        (
            "containerd-shim-runc-v2",
            "/usr/bin/containerd-shim-runc-v2".into(),
        ),
        ("ctr", "/usr/bin/ctr".into()),
        ("runc", "/usr/sbin/runc".into()),
    ];
    bins.extend(
        CNI_PLUGINS
            .iter()
            .map(|p| (*p, format!("/usr/lib/cni/{p}"))),
    );
    match runtime {
        Runtime::Debian => Ok(bins
            .into_iter()
            .map(|(_, dest)| (PathBuf::from(&dest), dest))
            .collect()),
        Runtime::Stack => {
            bins.push(("crictl", "/usr/bin/crictl".into()));
            bins.into_iter()
                .map(|(name, dest)| Ok((diskless_kube::stack::binary(name)?, dest)))
                .collect()
        }
    }
}

/// containerd's configuration: everything on the tmpfs root, the preloaded pause image as the
/// sandbox, cgroupfs (no systemd on the node), CNI from /opt/cni/bin. containerd 2.x reads the
/// version 4 layout that 2.3 writes (its CRI plugin split into images and runtime: no
/// migration at boot); Debian's 1.6 reads version 2.
pub fn containerd_config(runtime: Runtime) -> String {
    match runtime {
        Runtime::Stack => format!(
            r#"# Generated by diskless: containerd 2.x, everything on the tmpfs root.
version = 4
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_REF}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "/etc/containerd/certs.d"

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    conf_template = "{CNI_TEMPLATE_PATH}"
"#
        ),
        Runtime::Debian => format!(
            r#"# Generated by diskless: containerd 1.6, everything on the tmpfs root.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    conf_template = "{CNI_TEMPLATE_PATH}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#
        ),
    }
}

/// Where containerd finds [`CNI_TEMPLATE`] (outside `/etc/cni/net.d`, which CNI reads).
pub const CNI_TEMPLATE_PATH: &str = "/etc/cni/diskless-bridge.conflist.tmpl";

/// The pod network, as a template containerd fills in with the node's pod range once the
/// kubelet passes it (`UpdateRuntimeConfig`): the range the controller-manager allocated to
/// the Node (or the inventory's `pod_cidr`), or on a standalone node the init's default
/// (`STANDALONE_POD_CIDR`, through the kubelet's `podCIDR`). Nodes of one cluster so get
/// ranges that do not collide; containerd writes `/etc/cni/net.d/10-containerd-net.conflist`.
/// Go template syntax (containerd's `conf_template`), a constant: no value is pasted in here.
/// One file with the Nix modules' (`modules/kubelet.nix` reads it too).
pub const CNI_TEMPLATE: &str = include_str!("../../data/cni-bridge.conflist.tmpl");
