//! The one report every scenario hands back, [`Report`]: the verdict, the image and its RAM in
//! the struct, each scenario's own numbers in its detail ([`CheckDetail`] for a checked boot:
//! `check`, with `--join`, `--lifecycle`, `--image-pressure`; [`ControlPlaneDetail`] for `check
//! --control-plane`; [`ClusterDetail`] for the cluster scenario), and its text form. `--json`
//! prints a report as it is, the detail's keys after the common ones; the memory figures' text
//! form is [`super::memory`]'s.

use super::judge::{CheckResult, Stage};
use super::memory::{print_memory, print_memory_accounting};
use crate::error::Error;
use serde::Serialize;
use std::ops::{Deref, DerefMut};

/// What a scenario proved. The detail reads through the report (`report.timeline`): it is
/// flattened into the same JSON object, so call sites need not know where a field lives.
#[derive(Debug, Clone, Serialize)]
pub struct Report<D> {
    pub ok: bool,
    pub image: String,
    pub memory_mib: u32,
    /// The accelerator QEMU ran with, where the scenario notes it (a checked boot). Absent
    /// from the JSON otherwise, so `check --control-plane --json` keeps its keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    pub failures: Vec<String>,
    #[serde(flatten)]
    pub detail: D,
}

/// `check` (with `--join`, `--lifecycle`, `--image-pressure`): one checked boot.
pub type CheckReport = Report<CheckDetail>;
/// `check --control-plane`: two boots of the control plane, the snapshot between them.
pub type ControlPlaneReport = Report<ControlPlaneDetail>;
/// The two-worker cluster on a lab network.
pub type ClusterReport = Report<ClusterDetail>;

impl<D> Deref for Report<D> {
    type Target = D;
    fn deref(&self) -> &D {
        &self.detail
    }
}

impl<D> DerefMut for Report<D> {
    fn deref_mut(&mut self) -> &mut D {
        &mut self.detail
    }
}

impl<D: Serialize> Report<D> {
    /// Prints the report (`json`: as it is, else through `words`) and turns its verdict into
    /// the result: Err lists the failures, naming the scenario as `what`.
    pub fn conclude(
        self,
        what: &'static str,
        json: bool,
        words: fn(&Self),
    ) -> crate::error::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(&self)?);
        } else {
            words(&self);
        }
        if self.ok {
            Ok(())
        } else {
            Err(Error::CheckFailed {
                what,
                failures: self.failures,
            })
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    /// Host seconds since QEMU started. iPXE's banner, if it reaches the serial console
    /// (Debian's build prints to VGA only: then its first HTTP request marks it).
    pub ipxe_start: Option<f64>,
    /// First and last byte served by the harness's HTTP server (not measured with TFTP).
    pub download_start: Option<f64>,
    pub download_done: Option<f64>,
    pub kernel_start: Option<f64>,
    pub check_done: Option<f64>,
    pub qemu_exit: Option<f64>,
    /// Guest seconds since kernel start.
    pub root_switched: Option<f64>,
    pub network_up: Option<f64>,
    pub containerd_ready: Option<f64>,
    pub images_imported: Option<f64>,
    pub kubelet_started: Option<f64>,
    /// First `/healthz` ok and static pod running, as seen by the check hook.
    pub kubelet_healthy: Option<f64>,
    pub static_pod_running: Option<f64>,
    pub boot_done: Option<f64>,
    /// With --join, as the API server showed them (polled every 0.3 s): the Node object
    /// exists, its Ready condition is True, the API-created pod is Running with a pod IP.
    pub node_registered: Option<f64>,
    pub node_ready: Option<f64>,
    pub api_pod_running: Option<f64>,
    /// From inside the API pod: the `kubernetes` Service answered through its ClusterIP, and
    /// its name resolved through the cluster DNS (CoreDNS on the node).
    pub service_reached: Option<f64>,
    pub cluster_dns: Option<f64>,
}

/// A checked boot's own numbers.
#[derive(Debug, Serialize)]
pub struct CheckDetail {
    pub timeline: Timeline,
    pub download_bytes: Option<u64>,
    pub stages: Vec<Stage>,
    pub checks: Vec<CheckResult>,
    /// From the guest with containerd idle: mem_used_kb (MemTotal − MemAvailable), by kind
    /// (`meminfo_kb`, the zones' reserves), by filesystem (`initramfs_used_bytes`,
    /// `squashfs_images`, `filesystems`) and by process (`processes`, `rss_services_kb`).
    pub memory: Option<serde_json::Value>,
    /// The same once the checks are done: the kubelet's pods (static; with --join the API pod)
    /// running.
    pub memory_after: Option<serde_json::Value>,
    pub restarts: Vec<String>,
    /// With --join --lifecycle: kubelet killed, API server away, reboot and rejoin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    /// Host seconds the step took to prove (from the event to the evidence).
    pub seconds: f64,
}

/// One boot, in guest seconds since kernel start (host observations shifted by the kernel's
/// start as the console shows it).
#[derive(Debug, Default, Clone, Serialize)]
pub struct BootTimeline {
    /// Host seconds from QEMU start to kernel start.
    pub kernel_start: Option<f64>,
    pub network_up: Option<f64>,
    /// The init's `etcd-restore` line (the restore is done).
    pub etcd_restored: Option<f64>,
    /// `etcdctl endpoint health` answered from the host.
    pub etcd_healthy: Option<f64>,
    /// The API server's `/readyz` said ok.
    pub api_healthy: Option<f64>,
    /// A namespace created after the API was healthy got its `default` ServiceAccount (the
    /// controller-manager's serviceaccount controller).
    pub controller_manager_working: Option<f64>,
    /// A pod in it got `PodScheduled=False, Unschedulable` (the scheduler ran it: no node).
    pub scheduler_working: Option<f64>,
    /// The check hook's memory once the four ports listened (MemTotal − MemAvailable etc.).
    pub memory: Option<serde_json::Value>,
    /// The init's restore line.
    pub etcd_restore: Option<String>,
}

/// The control plane's two boots.
#[derive(Debug, Serialize)]
pub struct ControlPlaneDetail {
    pub first_boot: BootTimeline,
    pub second_boot: BootTimeline,
    /// The snapshot the reboot restored, bytes.
    pub snapshot_bytes: Option<u64>,
    /// Host seconds of the publish that took it (RBAC, snapshot, restore check, node segment).
    pub publish_seconds: Option<f64>,
}

/// One worker's numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterNode {
    pub name: String,
    pub address: String,
    pub pod_cidr: String,
    /// Seconds from QEMU's start to the kernel's first line (iPXE, DHCP, downloads).
    pub kernel_start: f64,
    /// Seconds from the kernel's first line to the Node's Ready as the API showed it.
    pub kernel_to_ready: f64,
    /// MemTotal − MemAvailable, MiB, with its Deployment pod (and, on the first, CoreDNS).
    pub used_mib: u64,
    /// After the power cycle: QEMU start → kernel, kernel → Ready, kernel → its pod Running.
    pub reboot: Option<(f64, f64, f64)>,
}

/// The cluster's numbers. Its report is only handed back when every check passed (a failed
/// check is an Err naming it), so it is always ok with no failures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterDetail {
    pub nodes: Vec<ClusterNode>,
    /// Seconds from applying the Deployment to both its pods Running and ready.
    pub deployment_running: f64,
    /// What was proven, in words, in order.
    pub proven: Vec<String>,
    /// Seconds from publishing to the last check.
    pub wall: f64,
}

pub fn print_check(r: &CheckReport) {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "image {} · {} MiB · accel {}",
        r.image,
        r.memory_mib,
        r.accel.as_deref().unwrap_or("-")
    );
    let t = &r.timeline;
    println!("timeline (host s since QEMU start): iPXE {} · download {}–{} · kernel {} · check done {} · QEMU exit {}",
        f(t.ipxe_start), f(t.download_start), f(t.download_done), f(t.kernel_start), f(t.check_done), f(t.qemu_exit));
    println!("timeline (guest s since kernel start):");
    for s in &r.stages {
        println!(
            "  {:>8.3}  {:<12} {:<7} {}",
            s.guest_t, s.name, s.status, s.detail
        );
    }
    println!("checks:");
    for c in &r.checks {
        println!("  {:<20} {:<5} {}", c.name, c.status, c.detail);
    }
    for (when, m) in [
        ("containerd idle", &r.memory),
        ("checks done, pods running", &r.memory_after),
    ] {
        if let Some(m) = m {
            print_memory(when, m);
            print_memory_accounting(r.memory_mib, m);
        }
    }
    for s in &r.lifecycle {
        println!(
            "lifecycle {:<16} {:<5} {:.1} s  {}",
            s.name,
            if s.ok { "ok" } else { "FAIL" },
            s.seconds,
            s.detail
        );
    }
    for x in &r.restarts {
        println!("restart: {x}");
    }
    if r.ok {
        println!("check: ok");
    } else {
        for x in &r.failures {
            println!("FAIL: {x}");
        }
    }
}

/// `check --control-plane`'s report in words: each boot's timeline and memory, the failures.
pub fn print_control_plane(report: &ControlPlaneReport) {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    println!("control plane {} · {} MiB", report.image, report.memory_mib);
    for (name, b) in [
        ("first", &report.first_boot),
        ("second", &report.second_boot),
    ] {
        let mem = b
            .memory
            .as_ref()
            .and_then(|m| m["mem_used_kb"].as_u64())
            .map_or("-".into(), |kb| format!("{} MiB", kb / 1024));
        println!(
            "{name} boot (guest s): etcd {} · API {} · controller-manager {} · scheduler {} · used {mem}",
            f(b.etcd_healthy),
            f(b.api_healthy),
            f(b.controller_manager_working),
            f(b.scheduler_working)
        );
    }
    for failure in &report.failures {
        println!("FAILED: {failure}");
    }
}

#[cfg(test)]
mod tests {
    //! `check --json` and `check --control-plane --json` print these reports as they are, and
    //! the boot tests read them by key: the JSON text, keys and their order, is pinned here.
    use super::*;
    use serde_json::json;

    fn timeline() -> Timeline {
        Timeline {
            ipxe_start: Some(0.5),
            download_start: Some(1.0),
            download_done: Some(2.0),
            kernel_start: Some(3.0),
            check_done: Some(4.0),
            qemu_exit: Some(5.0),
            root_switched: Some(6.0),
            network_up: Some(7.0),
            containerd_ready: Some(8.0),
            images_imported: Some(9.0),
            kubelet_started: Some(10.0),
            kubelet_healthy: Some(11.0),
            static_pod_running: Some(12.0),
            boot_done: Some(13.0),
            node_registered: Some(14.0),
            node_ready: Some(15.0),
            api_pod_running: Some(16.0),
            service_reached: Some(17.0),
            cluster_dns: None,
        }
    }

    fn check_report(lifecycle: Vec<Step>) -> CheckReport {
        CheckReport {
            ok: false,
            image: "worker".into(),
            memory_mib: 1024,
            accel: Some("tcg".into()),
            failures: vec!["one".into(), "two".into()],
            detail: CheckDetail {
                timeline: timeline(),
                download_bytes: Some(123),
                stages: vec![Stage {
                    name: "network".into(),
                    status: "ok".into(),
                    guest_t: 1.5,
                    host_t: 2.5,
                    detail: "eth0".into(),
                }],
                checks: vec![CheckResult {
                    name: "static-pod".into(),
                    status: "ok".into(),
                    detail: "running".into(),
                }],
                memory: Some(json!({"mem_used_kb": 1000, "processes": []})),
                memory_after: None,
                restarts: vec!["containerd".into()],
                lifecycle,
            },
        }
    }

    #[test]
    fn check_report_json_is_pinned() {
        let with = check_report(vec![Step {
            name: "kubelet-killed".into(),
            ok: true,
            detail: "back".into(),
            seconds: 3.25,
        }]);
        assert_eq!(
            serde_json::to_string(&with).unwrap(),
            r#"{"ok":false,"image":"worker","memory_mib":1024,"accel":"tcg","failures":["one","two"],"timeline":{"ipxe_start":0.5,"download_start":1.0,"download_done":2.0,"kernel_start":3.0,"check_done":4.0,"qemu_exit":5.0,"root_switched":6.0,"network_up":7.0,"containerd_ready":8.0,"images_imported":9.0,"kubelet_started":10.0,"kubelet_healthy":11.0,"static_pod_running":12.0,"boot_done":13.0,"node_registered":14.0,"node_ready":15.0,"api_pod_running":16.0,"service_reached":17.0,"cluster_dns":null},"download_bytes":123,"stages":[{"name":"network","status":"ok","guest_t":1.5,"host_t":2.5,"detail":"eth0"}],"checks":[{"name":"static-pod","status":"ok","detail":"running"}],"memory":{"mem_used_kb":1000,"processes":[]},"memory_after":null,"restarts":["containerd"],"lifecycle":[{"name":"kubelet-killed","ok":true,"detail":"back","seconds":3.25}]}"#
        );
        assert_eq!(
            serde_json::to_string(&check_report(Vec::new())).unwrap(),
            r#"{"ok":false,"image":"worker","memory_mib":1024,"accel":"tcg","failures":["one","two"],"timeline":{"ipxe_start":0.5,"download_start":1.0,"download_done":2.0,"kernel_start":3.0,"check_done":4.0,"qemu_exit":5.0,"root_switched":6.0,"network_up":7.0,"containerd_ready":8.0,"images_imported":9.0,"kubelet_started":10.0,"kubelet_healthy":11.0,"static_pod_running":12.0,"boot_done":13.0,"node_registered":14.0,"node_ready":15.0,"api_pod_running":16.0,"service_reached":17.0,"cluster_dns":null},"download_bytes":123,"stages":[{"name":"network","status":"ok","guest_t":1.5,"host_t":2.5,"detail":"eth0"}],"checks":[{"name":"static-pod","status":"ok","detail":"running"}],"memory":{"mem_used_kb":1000,"processes":[]},"memory_after":null,"restarts":["containerd"]}"#
        );
    }

    #[test]
    fn control_plane_report_json_is_pinned() {
        let boot = BootTimeline {
            kernel_start: Some(1.0),
            network_up: Some(2.0),
            etcd_restored: Some(3.0),
            etcd_healthy: Some(4.0),
            api_healthy: Some(5.0),
            controller_manager_working: Some(6.0),
            scheduler_working: Some(7.0),
            memory: Some(json!({"mem_used_kb": 2048})),
            etcd_restore: Some("restored 1 keys".into()),
        };
        let report = ControlPlaneReport {
            ok: true,
            image: "control-plane".into(),
            memory_mib: 2048,
            accel: None,
            failures: vec!["second boot: x".into()],
            detail: ControlPlaneDetail {
                first_boot: boot.clone(),
                second_boot: BootTimeline::default(),
                snapshot_bytes: Some(4096),
                publish_seconds: Some(1.5),
            },
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"ok":true,"image":"control-plane","memory_mib":2048,"failures":["second boot: x"],"first_boot":{"kernel_start":1.0,"network_up":2.0,"etcd_restored":3.0,"etcd_healthy":4.0,"api_healthy":5.0,"controller_manager_working":6.0,"scheduler_working":7.0,"memory":{"mem_used_kb":2048},"etcd_restore":"restored 1 keys"},"second_boot":{"kernel_start":null,"network_up":null,"etcd_restored":null,"etcd_healthy":null,"api_healthy":null,"controller_manager_working":null,"scheduler_working":null,"memory":null,"etcd_restore":null},"snapshot_bytes":4096,"publish_seconds":1.5}"#
        );
    }

    /// The cluster's report had no JSON form before it became a [`Report`]: this pins the one
    /// it has now, the common keys first.
    #[test]
    fn cluster_report_json_is_pinned() {
        let report = ClusterReport {
            ok: true,
            image: "worker".into(),
            memory_mib: 1024,
            accel: None,
            failures: Vec::new(),
            detail: ClusterDetail {
                nodes: vec![ClusterNode {
                    name: "worker-1".into(),
                    address: "10.0.0.11".into(),
                    pod_cidr: "10.244.0.0/24".into(),
                    kernel_start: 1.5,
                    kernel_to_ready: 20.0,
                    used_mib: 300,
                    reboot: Some((1.0, 2.0, 3.0)),
                }],
                deployment_running: 4.5,
                proven: vec!["both workers Ready".into()],
                wall: 99.0,
            },
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"ok":true,"image":"worker","memory_mib":1024,"failures":[],"nodes":[{"name":"worker-1","address":"10.0.0.11","pod_cidr":"10.244.0.0/24","kernel_start":1.5,"kernel_to_ready":20.0,"used_mib":300,"reboot":[1.0,2.0,3.0]}],"deployment_running":4.5,"proven":["both workers Ready"],"wall":99.0}"#
        );
    }
}
