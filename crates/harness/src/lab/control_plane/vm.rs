//! The diskless control-plane image as a lab machine: a fresh cluster PKI (shared with the
//! host control plane's, [`super::pki`]) and an inventory whose one host is the control plane
//! (`[control_plane]`). `check --control-plane` ([`crate::scenario::control_plane`]) boots it
//! behind slirp ([`Placement::Slirp`]), the host reaching its API server and etcd through
//! `hostfwd`s; the cluster scenario boots it on the lab bridge at a fixed address
//! ([`VmControlPlane`], [`Placement::Network`]), network-booted from the workers' boot server.

use super::pki::{self, Pki};
use super::side::ControlPlaneSide;
use crate::error::{bail, Context};
use crate::lab::network::{CONTROL_PLANE, SERVER};
use crate::machine::logged::Logged;
use crate::machine::ports::free_ports;
use crate::machine::process;
use crate::machine::qemu::Forward;
use diskless_publish::inventory::{ControlPlane, Host, Inventory, KubeletMode};
use diskless_publish::kubeconfig::{ClusterCa, Credentials, Kubeconfig};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The control-plane host's name in the inventory.
pub const HOSTNAME: &str = "diskless-cp";
/// slirp's address for the guest: what the API server advertises.
const GUEST_ADDRESS: &str = "10.0.2.15";

/// The control plane's address on the bridge: below the DHCP range, never leased.
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 33, 0, 10);

/// The namespace `poll` proves the controller-manager and the scheduler in.
const PROBE: &str = "diskless-cluster-probe";

/// Where the control-plane machine is and how the host reaches it.
#[derive(Debug, Clone, Copy)]
pub enum Placement {
    /// Behind QEMU's slirp (`check --control-plane`): the guest is 10.0.2.15 and the host
    /// reaches its API server and etcd through forwards to free loopback ports.
    Slirp,
    /// At a fixed address on a lab network (the cluster test's bridge), outside the DHCP
    /// range: a control plane's address is in its certificates and every worker's
    /// kubeconfig, so it is set on its kernel command line (`diskless.ip=`), not leased.
    Network {
        address: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
    },
}

/// The cluster PKI and the inventory of one control-plane host; [`Lab::start`] also publishes
/// its image to a boot server directory of its own.
pub struct Lab {
    /// Holds the PKI, the inventory, the snapshots and the boot server directory.
    pub dir: tempfile::TempDir,
    pub server: PathBuf,
    pub pki: Pki,
    /// The admin's kubeconfig, for the API server at [`Lab::api_url`].
    pub admin_kubeconfig: PathBuf,
    /// Where the host reaches the API server and etcd.
    pub api_url: String,
    etcd_url: String,
    /// slirp's forwards to those ports (none on a lab network).
    forwards: Vec<Forward>,
    pub kubectl: PathBuf,
    etcdctl: PathBuf,
    out: PathBuf,
    /// The control-plane host and `[control_plane]` section, nothing else.
    pub inventory: Inventory,
}

impl Lab {
    /// Generates the PKI and publishes `out` for one control-plane host with `mac` behind slirp.
    pub fn start(out: &Path, image: &str, mac: &str) -> crate::error::Result<Lab> {
        let lab = Lab::new(out, image, mac, Placement::Slirp)?;
        lab.publish()
            .context("cannot publish the control-plane image")?;
        Ok(lab)
    }

    /// Generates the PKI and the inventory for one control-plane host with `mac` at
    /// `placement`; publishes nothing.
    pub fn new(
        out: &Path,
        image: &str,
        mac: &str,
        placement: Placement,
    ) -> crate::error::Result<Lab> {
        use diskless_contract::controlplane::{API_PORT, ETCD_CLIENT_PORT};
        // A missing stack is this machine's to fix (scripts/install-deps), not the run's.
        let bin = |name: &str| {
            diskless_kube::stack::binary(name)
                .map_err(|e| crate::error::Error::environment(format!("{e:#}")))
        };
        let (kubectl, etcdctl, etcdutl) = (bin("kubectl")?, bin("etcdctl")?, bin("etcdutl")?);
        let dir = crate::machine::process::temp_dir("diskless-cp-")
            .context("cannot create the control-plane lab directory")?;
        let (advertise, kernel_args, api_url, etcd_url, forwards) = match placement {
            Placement::Slirp => {
                let ports = free_ports(2)?;
                let (api_port, etcd_port) = (ports[0], ports[1]);
                let forwards = vec![
                    Forward::ToGuest {
                        host_port: api_port,
                        guest_port: API_PORT,
                    },
                    Forward::ToGuest {
                        host_port: etcd_port,
                        guest_port: ETCD_CLIENT_PORT,
                    },
                ];
                (
                    GUEST_ADDRESS.to_string(),
                    String::new(),
                    format!("https://127.0.0.1:{api_port}"),
                    format!("https://127.0.0.1:{etcd_port}"),
                    forwards,
                )
            }
            Placement::Network {
                address,
                prefix,
                gateway,
            } => (
                address.to_string(),
                format!("diskless.ip={address}/{prefix},{gateway}"),
                format!("https://{address}:{API_PORT}"),
                format!("https://{address}:{ETCD_CLIENT_PORT}"),
                Vec::new(),
            ),
        };
        let pki = pki::generate_with(&dir.path().join("pki"), std::slice::from_ref(&advertise))?;
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        let admin = Kubeconfig::single(
            &api_url,
            ClusterCa::File(pki.ca.cert.display().to_string()),
            "kubernetes-admin",
            Credentials {
                client_certificate: Some(pki.admin.cert.display().to_string()),
                client_key: Some(pki.admin.key.display().to_string()),
                ..Default::default()
            },
        );
        std::fs::write(&admin_kubeconfig, admin.to_bytes())?;
        let snapshots = dir.path().join("snapshots");
        let inventory = Inventory {
            hosts: vec![Host {
                kernel_args,
                ..Host::new(mac, HOSTNAME, image, KubeletMode::Standalone)
            }],
            control_plane: Some(ControlPlane {
                host: HOSTNAME.to_string(),
                pki_dir: dir.path().join("pki"),
                advertise_address: Some(advertise),
                etcd_endpoint: etcd_url.clone(),
                snapshot_dir: snapshots,
                admin_kubeconfig: Some(admin_kubeconfig.clone()),
                etcdctl: Some(etcdctl.clone()),
                etcdutl: Some(etcdutl),
                kubectl: Some(kubectl.clone()),
            }),
            ..Default::default()
        };
        Ok(Lab {
            server: dir.path().join("server"),
            dir,
            pki,
            admin_kubeconfig,
            api_url,
            etcd_url,
            forwards,
            kubectl,
            etcdctl,
            out: out.to_owned(),
            inventory,
        })
    }

    /// `diskless publish` of the image and the inventory, as a timer would run it: with the
    /// control plane up, it applies the RBAC and puts a fresh etcd snapshot in the node segment.
    pub fn publish(&self) -> crate::error::Result<()> {
        self.publish_to(&self.server, &self.out, &self.inventory)
    }

    /// `diskless publish` of build output `out` to `server` with `inventory` (this host's,
    /// perhaps with others added), the inventory file kept in the lab directory.
    pub fn publish_to(
        &self,
        server: &Path,
        out: &Path,
        inventory: &Inventory,
    ) -> crate::error::Result<()> {
        let path = self.dir.path().join("lab.toml");
        std::fs::write(&path, inventory.to_toml())?;
        diskless_publish::publish(&diskless_publish::PublishOptions {
            out: out.to_owned(),
            to: server.display().to_string(),
            inventory: Some(path),
        })
        .context("diskless publish")?;
        Ok(())
    }

    /// This control plane's own build output.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The host's ways in: its loopback ports to the guest's API server and etcd (slirp only).
    pub fn forwards(&self) -> Vec<Forward> {
        self.forwards.clone()
    }

    /// `kubectl --kubeconfig=<admin> <args>`, bounded: its output, or Err with its error.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .arg("--request-timeout=5s")
            .args(args);
        output(cmd, stdin)
    }

    /// etcd answers its health check through the forwarded port, with publish's client.
    pub fn etcd_healthy(&self) -> Result<String, String> {
        let p = |n: &str| self.dir.path().join("pki").join(n);
        let mut cmd = Command::new(&self.etcdctl);
        cmd.arg(format!("--endpoints={}", self.etcd_url))
            .arg("--cacert")
            .arg(p("etcd/ca.crt"))
            .arg("--cert")
            .arg(p("etcd/snapshot-client.crt"))
            .arg("--key")
            .arg(p("etcd/snapshot-client.key"))
            .args([
                "--dial-timeout=2s",
                "--command-timeout=3s",
                "endpoint",
                "health",
            ]);
        output(cmd, None)
    }
}

fn output(mut cmd: Command, stdin: Option<&[u8]>) -> Result<String, String> {
    use std::io::Write;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        });
    let mut child = process::spawn(&mut cmd).map_err(|e| format!("{cmd:?}: {e}"))?;
    if let Some(bytes) = stdin {
        let _ = child.stdin.take().expect("piped").write_all(bytes);
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(err.trim().lines().last().unwrap_or("").to_string())
    }
}

/// One look from the host, in order: etcd, the API server, the controller-manager (namespace
/// `probe` has its `default` ServiceAccount), the scheduler (a pod there is unschedulable).
pub fn poll(lab: &Lab, seen: &mut [Option<Instant>; 4], probe: &str) -> Result<(), String> {
    if seen[0].is_none() {
        lab.etcd_healthy()?;
        seen[0] = Some(Instant::now());
    }
    if seen[1].is_none() {
        let out = lab.kubectl(&["get", "--raw=/readyz"], None)?;
        if out.trim() != "ok" {
            return Err(format!("/readyz said {out:?}"));
        }
        seen[1] = Some(Instant::now());
    }
    if seen[2].is_none() {
        // Server-side apply: the same again at every look until the account exists.
        let objects = serde_json::json!({
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": probe}},
                {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "probe", "namespace": probe},
                 "spec": {"automountServiceAccountToken": false,
                          "containers": [{"name": "c", "image": "diskless.local/none:0"}]}},
            ],
        });
        let bytes = serde_json::to_vec(&objects).expect("serializes");
        lab.kubectl(&["apply", "--server-side", "-f", "-"], Some(&bytes))?;
        lab.kubectl(&["get", "serviceaccount", "default", "-n", probe], None)?;
        seen[2] = Some(Instant::now());
    }
    if seen[3].is_none() {
        let reason = lab.kubectl(
            &[
                "get",
                "pod",
                "probe",
                "-n",
                probe,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
            ],
            None,
        )?;
        if reason.trim() != "Unschedulable" {
            return Err(format!("the probe pod's PodScheduled reason is {reason:?}"));
        }
        seen[3] = Some(Instant::now());
    }
    Ok(())
}

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

pub struct VmControlPlane {
    lab: Lab,
    ca: Vec<u8>,
    memory: u32,
    console: Option<Logged>,
    pub timeline: Option<Timeline>,
}

impl VmControlPlane {
    /// The PKI and inventory for the control-plane image `image` in build output `out`, run
    /// with `memory` MiB.
    pub fn new(out: &Path, image: &str, memory: u32) -> crate::error::Result<VmControlPlane> {
        let lab = Lab::new(
            out,
            image,
            CONTROL_PLANE.mac,
            Placement::Network {
                address: ADDRESS,
                prefix: 24,
                gateway: SERVER,
            },
        )?;
        let ca = std::fs::read(&lab.pki.ca.cert)
            .with_context(|| format!("cannot read {}", lab.pki.ca.cert.display()))?;
        Ok(VmControlPlane {
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

impl ControlPlaneSide for VmControlPlane {
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
    fn publish_alone(&self, server: &Path) -> crate::error::Result<bool> {
        self.lab
            .publish_to(server, self.lab.out(), &self.lab.inventory)
            .context("cannot publish the control-plane machine")?;
        Ok(true)
    }

    fn boot(&mut self, timeout: Duration) -> crate::error::Result<()> {
        let console = Logged::spawn(&mut CONTROL_PLANE.machine(self.memory).command()?)?;
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
            .map(|c| c.tail("control plane"))
            .unwrap_or_default()
    }
}
