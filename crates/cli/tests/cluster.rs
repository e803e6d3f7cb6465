//! The whole cluster in QEMU (issue #17): one control-plane VM (the diskless control-plane
//! image) and two worker VMs on one virtual L2 network (a bridge in a network namespace this
//! test makes), all three network-booted by `diskless serve` from one published boot server.
//! See `diskless_harness::scenario::cluster` for what is checked. Needs root (namespaces, taps) and the
//! pinned stack; TCG only.
//!
//! `DISKLESS_CLUSTER_CONTROL_PLANE=host` runs the control plane as host processes on the
//! bridge instead of the VM (quicker, for work on the workers).
//! The run ends with one worker power-cycled and back (Ready, its pod running again, pod to
//! pod and the Service again); `DISKLESS_CLUSTER_REBOOT=0` stops after the Service checks.

use diskless_harness::lab::control_plane::side::ControlPlaneSide;
use diskless_harness::lab::control_plane::vm::VmControlPlane;
use diskless_harness::lab::network::{host_control_plane, LabNetwork};
use diskless_harness::scenario::cluster::{self, Options};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");

fn why_skip() -> Option<String> {
    if let Some(why) = diskless_harness::machine::netns::why_skip() {
        return Some(why);
    }
    for b in [
        "kubelet",
        "kube-apiserver",
        "etcd",
        "kube-proxy",
        "coredns",
        "etcdctl",
        "etcdutl",
    ] {
        if let Err(e) = diskless_kube::stack::binary(b) {
            return Some(format!("no pinned stack ({e:#}): scripts/build-stack"));
        }
    }
    None
}

#[test]
fn two_workers_make_a_cluster() {
    if let Some(why) = why_skip() {
        eprintln!("skipped: {why}");
        return;
    }
    let t0 = Instant::now();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = tmp.join("cluster-worker");
    build(&out, &[]);
    let on_host = std::env::var_os("DISKLESS_CLUSTER_CONTROL_PLANE").is_some_and(|v| v == "host");
    let cp_out = tmp.join("cluster-control-plane");
    if !on_host {
        build(
            &cp_out,
            &["--role", "control-plane", "--name", "control-plane"],
        );
    }
    let built = t0.elapsed().as_secs_f64();

    let reboot = std::env::var_os("DISKLESS_CLUSTER_REBOOT").is_none_or(|v| v != "0");
    let memory = std::env::var("DISKLESS_CLUSTER_MEMORY")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1024);
    let opts = Options {
        out: out.clone(),
        image: "worker".into(),
        diskless: DISKLESS.into(),
        memory,
        reboot,
        timeout: Duration::from_secs(420),
    };
    // This thread (and all it starts) moves into the lab namespace.
    let _net = LabNetwork::enter().unwrap();
    let t_cp = Instant::now();
    let (report, cp_line) = if on_host {
        let mut cp = host_control_plane().unwrap();
        let cp_start = t_cp.elapsed().as_secs_f64();
        let report = cluster::run(&opts, &mut cp).unwrap_or_else(|e| {
            for c in ["kube-apiserver", "kube-controller-manager", "kubelet-proxy"] {
                eprintln!("--- {c} ---\n{}", cp.log_tail(c, 30));
            }
            panic!("cluster: {e:#}");
        });
        (
            report,
            format!("host-process control plane started in {cp_start:.1} s"),
        )
    } else {
        let mut cp = VmControlPlane::new(&cp_out, "control-plane", 2048).unwrap();
        let report = cluster::run(&opts, &mut cp).unwrap_or_else(|e| panic!("cluster: {e:#}"));
        let t = cp.timeline.clone().expect("booted");
        let k = t.kernel_start.unwrap_or(f64::NAN);
        (
            report,
            format!(
                "control-plane VM {} (2048 MiB): QEMU → kernel {k:.1} s; kernel → etcd healthy {:.1} s, API ready {:.1} s, controller-manager working {:.1} s, scheduler working {:.1} s",
                cp.api_server(),
                t.etcd_healthy - k,
                t.api_healthy - k,
                t.controller_manager_working - k,
                t.scheduler_working - k
            ),
        )
    };
    for p in &report.proven {
        eprintln!("cluster: ok: {p}");
    }
    eprintln!("cluster: {cp_line}");
    for n in &report.nodes {
        let reboot = n
            .reboot
            .map(|(k, r, p)| {
                format!(" | after power cycle: kernel {k:.1} s, kernel → Ready {r:.1} s, kernel → pod Running {p:.1} s")
            })
            .unwrap_or_default();
        eprintln!(
            "cluster {}: {} podCIDR {} | QEMU → kernel {:.1} s | kernel → Ready {:.1} s | MemTotal−MemAvailable {} MiB{reboot}",
            n.name, n.address, n.pod_cidr, n.kernel_start, n.kernel_to_ready, n.used_mib
        );
    }
    eprintln!(
        "cluster: images built in {built:.1} s, Deployment Running {:.1} s after apply, published → last check {:.1} s, whole test {:.1} s ({} MiB per worker, reboot {})",
        report.deployment_running,
        report.wall,
        t0.elapsed().as_secs_f64(),
        memory,
        if reboot { "included" } else { "not run" }
    );
    assert_eq!(report.nodes.len(), 2);
}

/// `diskless build --host EXTRA --out OUT` (the pinned kubelet), from scratch.
fn build(out: &Path, extra: &[&str]) {
    let _ = std::fs::remove_dir_all(out);
    let kubelet = diskless_kube::stack::binary("kubelet").unwrap();
    let o = Command::new(DISKLESS)
        .args(["build", "--host"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .env("KUBELET", &kubelet)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diskless build --host {extra:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
