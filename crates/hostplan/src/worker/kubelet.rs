//! The `kubelet` step (the Nix module `kubelet.nix`): the kubelet in its own segment, its
//! configuration and the test workload's static pod in `config`; and `pod-routes`, the init's
//! routes to the other nodes' pod ranges.

use super::part::Part;
use crate::entries::{bin, dir, gen, go_daemon_env, service};
use crate::error::HostPlanError;
use crate::options::{HostOptions, Kubelet, Runtime};
use diskless_builder::plan::{Component, Role, Service};
use diskless_kube::images::WORKLOAD_REF;
use std::path::PathBuf;

/// The kubelet binary `--kubelet`, `--no-kubelet` or the default (the stack's) names; None for
/// a containerd-only worker.
pub fn binary(kubelet: &Kubelet) -> Result<Option<PathBuf>, HostPlanError> {
    let path = match kubelet {
        Kubelet::Stack => {
            diskless_kube::stack::binary("kubelet").map_err(HostPlanError::StackKubelet)?
        }
        Kubelet::Path(p) => p.clone(),
        Kubelet::None => return Ok(None),
    };
    if !path.is_file() {
        return Err(HostPlanError::KubeletNotAFile(path));
    }
    Ok(Some(path))
}

pub fn part(opts: &HostOptions, kubelet: PathBuf) -> Part {
    Part {
        components: vec![Component {
            name: "kubelet".into(),
            binaries: vec![bin(kubelet, Some("/usr/bin/kubelet"))],
            directories: vec![dir("/var/lib/kubelet", 0o700)],
            packing: opts.packing,
            ..Default::default()
        }],
        services: vec![Service {
            env: go_daemon_env(),
            role: Some(Role::Kubelet),
            ..service(
                "kubelet",
                [
                    "/usr/bin/kubelet",
                    "--config=/etc/kubernetes/kubelet.yaml",
                    "--v=1",
                ],
            )
        }],
        config: vec![
            gen("/etc/kubernetes/kubelet.yaml", kubelet_config(opts.runtime)),
            gen("/etc/kubernetes/manifests/hello.yaml", static_pod()),
        ],
        config_dirs: Vec::new(),
    }
}

/// Routes to the other nodes' pod ranges (host-gw, the init's `pod-routes`), only where the
/// node joins: a standalone node has no other nodes.
pub fn pod_routes() -> Part {
    Part {
        services: vec![Service {
            condition_path: Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG.into()),
            ..service("pod-routes", ["/init", "pod-routes"])
        }],
        ..Default::default()
    }
}

/// Standalone kubelet: static pods only. On a RAM-only node the image and node filesystems are
/// both the tmpfs root. Preloaded images cannot be pulled again: with containerd 2.x they are
/// pinned, so image GC and disk eviction keep the kubelet's defaults (GC at 85/80 % used,
/// images reclaimed below 15 % free, pods evicted below 10 %; `diskless check --image-pressure`
/// proves the pinned images survive). Debian's containerd 1.6 cannot pin, so there image GC
/// is off (high threshold 100 %) and disk eviction waits until 1 % is free. The memory
/// threshold is half the kubelet's 100Mi: a 512 MiB machine has no RAM to spare. FlexVolume
/// plugins live under /var: the image's /usr is read-only.
pub fn kubelet_config(runtime: Runtime) -> String {
    let (gc_high, gc_low, imagefs, nodefs) = match runtime {
        Runtime::Stack => (85, 80, 15, 10),
        Runtime::Debian => (100, 99, 1, 1),
    };
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
staticPodPath: /etc/kubernetes/manifests
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
failSwapOn: false
resolvConf: /etc/resolv.conf
volumePluginDir: /var/lib/kubelet/volumeplugins
imageGCHighThresholdPercent: {gc_high}
imageGCLowThresholdPercent: {gc_low}
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "{nodefs}%"
  imagefs.available: "{imagefs}%"
"#
    )
}

/// The test workload, as a static pod: the preloaded busybox image, never pulled.
pub fn static_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: default
spec:
  containers:
    - name: hello
      image: {WORKLOAD_REF}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "echo diskless static pod running; while true; do sleep 3600; done"]
"#
    )
}
