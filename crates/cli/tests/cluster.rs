//! The whole cluster in QEMU (issue #17): a control plane and two worker VMs on one virtual
//! L2 network (a bridge in a network namespace this test makes), both workers network-booted
//! by `diskless serve` from one published boot server. See `diskless_harness::cluster` for
//! what is checked. Needs root (namespaces, taps) and the pinned stack; TCG only.
//!
//! `DISKLESS_CLUSTER_REBOOT=1` adds the power cycle of one worker (the full run, documented
//! as a benchmark in docs/boot-server.md); without it the test stops after the Service checks.

use diskless_harness::cluster::{self, LabNetwork, Options};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");

fn why_skip() -> Option<String> {
    if let Some(why) = diskless_harness::netns::why_skip() {
        return Some(why);
    }
    for b in ["kubelet", "kube-apiserver", "etcd", "kube-proxy", "coredns"] {
        if let Err(e) = diskless_build::stack::binary(b) {
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
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cluster-worker");
    let _ = std::fs::remove_dir_all(&out);
    let kubelet = diskless_build::stack::binary("kubelet").unwrap();
    let o = Command::new(DISKLESS)
        .args(["build", "--host", "--out"])
        .arg(&out)
        .env("KUBELET", &kubelet)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diskless build --host: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let built = t0.elapsed().as_secs_f64();

    let reboot = std::env::var_os("DISKLESS_CLUSTER_REBOOT").is_some_and(|v| v == "1");
    let memory = std::env::var("DISKLESS_CLUSTER_MEMORY")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(1024);
    // This thread (and all it starts) moves into the lab namespace.
    let _net = LabNetwork::enter().unwrap();
    let t_cp = Instant::now();
    let cp = cluster::host_control_plane().unwrap();
    let cp_start = t_cp.elapsed().as_secs_f64();
    let opts = Options {
        out: out.clone(),
        image: "worker".into(),
        diskless: DISKLESS.into(),
        memory,
        reboot,
        timeout: Duration::from_secs(420),
    };
    let result = cluster::run(&opts, &cp);
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            for c in ["kube-apiserver", "kube-controller-manager", "kubelet-proxy"] {
                eprintln!("--- {c} ---\n{}", cp.log_tail(c, 30));
            }
            panic!("cluster: {e:#}");
        }
    };
    for p in &report.proven {
        eprintln!("cluster: ok: {p}");
    }
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
        "cluster: image built in {built:.1} s, control plane started in {cp_start:.1} s, Deployment Running {:.1} s after apply, published → last check {:.1} s, whole test {:.1} s ({} MiB per worker, reboot {})",
        report.deployment_running,
        report.wall,
        t0.elapsed().as_secs_f64(),
        memory,
        if reboot { "included" } else { "not run" }
    );
    assert_eq!(report.nodes.len(), 2);
}
