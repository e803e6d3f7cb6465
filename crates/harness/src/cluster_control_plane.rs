//! The cluster's control plane as a lab machine: the diskless control-plane image
//! (`build --host --role control-plane`) network-booted from the cluster's boot server onto
//! the bridge, like the workers, at a fixed address ([`ADDRESS`], set on its kernel command
//! line through its inventory host). Its PKI and inventory are [`crate::controlplane_vm::Lab`]'s,
//! the same as `check --control-plane` uses; only the placement differs (bridge, not slirp).

use crate::cluster::{console_tail, qemu, ControlPlaneSide, SERVER};
use crate::controlplane_vm::{poll, Lab, Placement};
use crate::logged::Logged;
use anyhow::{bail, Context};
use diskless_publish::inventory::Inventory;
use std::path::Path;
use std::time::{Duration, Instant};

/// The control plane's address on the bridge: below the DHCP range, never leased.
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 33, 0, 10);

/// The namespace `poll` proves the controller-manager and the scheduler in.
const PROBE: &str = "diskless-cluster-probe";

/// Its NIC: the tap [`crate::cluster::LabNetwork`] makes for it, and its MAC.
pub struct Nic {
    pub tap: &'static str,
    pub mac: &'static str,
}

pub const MACHINE: Nic = Nic {
    tap: "tap2",
    mac: "52:54:00:c1:00:10",
};

/// When the control plane came up, host seconds since its QEMU started (the kernel's first
/// line, etcd healthy, API `/readyz`, controller-manager and scheduler working).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub kernel_start: Option<f64>,
    pub etcd_healthy: f64,
    pub api_healthy: f64,
    pub controller_manager_working: f64,
    pub scheduler_working: f64,
}

pub struct MachineControlPlane {
    lab: Lab,
    ca: Vec<u8>,
    memory: u32,
    console: Option<Logged>,
    pub timeline: Option<Timeline>,
}

impl MachineControlPlane {
    /// The PKI and inventory for the control-plane image `image` in build output `out`, run
    /// with `memory` MiB.
    pub fn new(out: &Path, image: &str, memory: u32) -> anyhow::Result<MachineControlPlane> {
        let lab = Lab::new(
            out,
            image,
            MACHINE.mac,
            Placement::Network {
                address: ADDRESS,
                prefix: 24,
                gateway: SERVER,
            },
        )?;
        let ca = std::fs::read(&lab.pki.ca.cert)
            .with_context(|| format!("cannot read {}", lab.pki.ca.cert.display()))?;
        Ok(MachineControlPlane {
            lab,
            ca,
            memory,
            console: None,
            timeline: None,
        })
    }

    /// Seconds since its QEMU started, if it did.
    fn since_start(&self, at: Instant) -> f64 {
        self.console
            .as_ref()
            .map_or(0.0, |c| at.duration_since(c.start).as_secs_f64())
    }
}

impl ControlPlaneSide for MachineControlPlane {
    fn api_server(&self) -> String {
        self.lab.api_url.clone()
    }
    fn admin_kubeconfig(&self) -> &Path {
        &self.lab.admin_kubeconfig
    }
    fn ca_pem(&self) -> &[u8] {
        &self.ca
    }
    fn kubectl(&self) -> &Path {
        &self.lab.kubectl
    }
    fn inventory(&self) -> Inventory {
        self.lab.inventory.clone()
    }
    fn publish_alone(&self, server: &Path) -> anyhow::Result<bool> {
        self.lab
            .publish_to(server, self.lab.out(), &self.lab.inventory)
            .context("cannot publish the control-plane machine")?;
        Ok(true)
    }

    fn boot(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let console = Logged::spawn(&mut qemu(MACHINE.tap, MACHINE.mac, self.memory))?;
        let deadline = console.start + timeout;
        self.console = Some(console);
        let mut seen: [Option<Instant>; 4] = [None; 4];
        let mut last = String::new();
        while seen.iter().any(Option::is_none) {
            if let Some(status) = self
                .console
                .as_mut()
                .and_then(|c| c.child.try_wait().ok().flatten())
            {
                bail!(
                    "the control-plane machine stopped ({status})\n{}",
                    self.console_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the control plane was not up within {} s (etcd, API, controller-manager, scheduler: {:?}; last: {last})\n{}",
                    timeout.as_secs(),
                    seen.map(|s| s.is_some()),
                    self.console_tail()
                );
            }
            // Every probe is a TLS handshake the emulated guest pays for.
            std::thread::sleep(Duration::from_secs(2));
            if let Err(e) = poll(&self.lab, &mut seen, PROBE) {
                last = e;
            }
        }
        // The probe's pod would be scheduled on the first worker and never start.
        let _ = self
            .lab
            .kubectl(&["delete", "namespace", PROBE, "--wait=false"], None);
        let [etcd, api, cm, sched] = seen.map(|s| self.since_start(s.expect("all seen")));
        self.timeline = Some(Timeline {
            kernel_start: self.console.as_ref().and_then(|c| c.when("Linux version")),
            etcd_healthy: etcd,
            api_healthy: api,
            controller_manager_working: cm,
            scheduler_working: sched,
        });
        Ok(())
    }

    fn console_tail(&self) -> String {
        self.console
            .as_ref()
            .map(|c| console_tail("control plane", c))
            .unwrap_or_default()
    }
}
