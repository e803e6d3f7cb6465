//! `diskless check --control-plane`: the diskless control plane, proved in QEMU. A fresh
//! cluster PKI (the throwaway control plane's `pki.rs`) and an inventory whose one host is the
//! control plane (`[control_plane]`); the image is published to a boot server directory and
//! the machine network-boots through `boot.ipxe` and its host entry, as a lab machine does.
//! The host reaches its API server and its etcd through slirp `hostfwd`s on loopback ports.
//!
//! Then what a reboot must not lose: once the API is healthy and the controller-manager and
//! the scheduler work, a ConfigMap is created through the API, `diskless publish` runs (it
//! applies the bootstrap RBAC and takes an etcd snapshot into the node segment), the machine
//! is power-cycled (everything in its RAM is gone) and boots again from the boot server: the
//! init restores the snapshot before etcd starts, and the ConfigMap and the RBAC are back.
//! Each boot's timeline (kernel start → etcd healthy → API healthy → controller-manager and
//! scheduler working, from the host: a new namespace gets its `default` ServiceAccount, and a
//! pod in it is marked unschedulable, as no node exists) and memory (from the check hook) are reported.

use crate::console::Console;
use crate::controlplane::pki::{self, Pki};
use crate::{hook, prepare, qemu, start, BootOptions, Guest};
use anyhow::{bail, Context};
use diskless_builder::ipxe::words::{Word, Words};
use diskless_contract::console::CheckMode;
use diskless_publish::inventory::{ControlPlane, Host, Inventory, KubeletMode};
use diskless_publish::kubeconfig::{ClusterCa, Credentials, Kubeconfig};
use diskless_publish::Additions;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The control-plane host's name in the inventory.
pub const HOSTNAME: &str = "diskless-cp";
/// slirp's address for the guest: what the API server advertises.
const GUEST_ADDRESS: &str = "10.0.2.15";
/// The object that must survive the reboot.
const SURVIVOR: &str = "diskless-survivor";

#[derive(Debug, Clone)]
pub struct Options {
    /// OUT is the build output holding the control-plane image `name`; `mac` is the host's.
    pub boot: BootOptions,
    pub json: bool,
    pub verbose: bool,
    pub hook: Option<PathBuf>,
}

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
    forwards: Vec<qemu::Forward>,
    pub kubectl: PathBuf,
    etcdctl: PathBuf,
    out: PathBuf,
    /// The control-plane host and `[control_plane]` section, nothing else.
    pub inventory: Inventory,
}

impl Lab {
    /// Generates the PKI and publishes `out` for one control-plane host with `mac` behind slirp.
    pub fn start(out: &Path, image: &str, mac: &str) -> anyhow::Result<Lab> {
        let lab = Lab::new(out, image, mac, Placement::Slirp)?;
        lab.publish()
            .context("cannot publish the control-plane image")?;
        Ok(lab)
    }

    /// Generates the PKI and the inventory for one control-plane host with `mac` at
    /// `placement`; publishes nothing.
    pub fn new(out: &Path, image: &str, mac: &str, placement: Placement) -> anyhow::Result<Lab> {
        use diskless_contract::controlplane::{API_PORT, ETCD_CLIENT_PORT};
        let bin = diskless_kube::stack::binary;
        let (kubectl, etcdctl, etcdutl) = (bin("kubectl")?, bin("etcdctl")?, bin("etcdutl")?);
        let dir = tempfile::Builder::new()
            .prefix("diskless-cp-")
            .tempdir()
            .context("cannot create the control-plane lab directory")?;
        let (advertise, kernel_args, api_url, etcd_url, forwards) = match placement {
            Placement::Slirp => {
                let ports = free_ports(2)?;
                let (api_port, etcd_port) = (ports[0], ports[1]);
                let forwards = vec![
                    qemu::Forward::ToGuest {
                        host_port: api_port,
                        guest_port: API_PORT,
                    },
                    qemu::Forward::ToGuest {
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
    pub fn publish(&self) -> anyhow::Result<()> {
        self.publish_to(&self.server, &self.out, &self.inventory)
    }

    /// `diskless publish` of build output `out` to `server` with `inventory` (this host's,
    /// perhaps with others added), the inventory file kept in the lab directory.
    pub fn publish_to(
        &self,
        server: &Path,
        out: &Path,
        inventory: &Inventory,
    ) -> anyhow::Result<()> {
        let path = self.dir.path().join("lab.toml");
        std::fs::write(&path, inventory.to_toml())?;
        diskless_publish::publish(&diskless_publish::PublishOptions {
            out: out.to_owned(),
            to: server.display().to_string(),
            inventory: Some(path),
        })?;
        Ok(())
    }

    /// This control plane's own build output.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The host's ways in: its loopback ports to the guest's API server and etcd (slirp only).
    pub fn forwards(&self) -> Vec<qemu::Forward> {
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
    pub(crate) fn etcd_healthy(&self) -> Result<String, String> {
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
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub image: String,
    pub memory_mib: u32,
    pub failures: Vec<String>,
    pub first_boot: BootTimeline,
    pub second_boot: BootTimeline,
    /// The snapshot the reboot restored, bytes.
    pub snapshot_bytes: Option<u64>,
    /// Host seconds of the publish that took it (RBAC, snapshot, restore check, node segment).
    pub publish_seconds: Option<f64>,
}

/// `diskless check --control-plane`: Err on any failure, after printing the report.
pub fn check(opts: &Options) -> anyhow::Result<()> {
    let report = check_report(opts)?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
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
    if report.ok {
        Ok(())
    } else {
        bail!("control-plane check failed: {}", report.failures.join("; "))
    }
}

pub fn check_report(opts: &Options) -> anyhow::Result<Report> {
    let lab = Lab::start(&opts.boot.out, &opts.boot.name, &opts.boot.mac)?;
    let a = BootOptions {
        out: lab.server.clone(),
        server: true,
        ..opts.boot.clone()
    };
    let add = Additions {
        cmdline: std::iter::once(
            Words::new(format!(
                "diskless.check={}",
                CheckMode::ControlPlane.as_str()
            ))
            .expect("a check mode word"),
        )
        .chain(a.append.iter().cloned())
        .collect(),
        initrds: vec![Word::new(hook::SEGMENT).expect("the hook segment's path")],
    };
    let binary = match &opts.hook {
        Some(p) => p.clone(),
        None => hook::default_binary()?,
    };
    let hook_segment = hook::segment(&binary)?;
    let mut failures = Vec::new();
    let limit = Duration::from_secs(a.timeout);

    let prepared = prepare(&a, &add, Some(hook_segment.clone()))?;
    let first = boot(&lab, &a, &prepared, opts.verbose, limit, "diskless-probe-1")?;
    failures.extend(first.failures.iter().map(|f| format!("first boot: {f}")));
    let mut second = Booted::default();
    let mut snapshot_bytes = None;
    let mut publish_seconds = None;
    if first.failures.is_empty() {
        // What the reboot must bring back: an object created through the API, its nonce
        // unguessable so an old snapshot cannot pass.
        let nonce = diskless_publish::token::Token::generate()?.id;
        let cm = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": SURVIVOR, "namespace": "default"},
            "data": {"nonce": nonce},
        });
        lab.kubectl(&["create", "-f", "-"], Some(&serde_json::to_vec(&cm)?))
            .map_err(anyhow::Error::msg)
            .context("cannot create the ConfigMap")?;
        let t = Instant::now();
        lab.publish()
            .context("publish with the control plane up (RBAC, snapshot)")?;
        publish_seconds = Some(t.elapsed().as_secs_f64());
        if let Err(e) = lab.kubectl(
            &["get", "clusterrolebinding", "diskless:node-proxier"],
            None,
        ) {
            failures.push(format!("publish did not apply the bootstrap RBAC: {e}"));
        }
        snapshot_bytes = newest_snapshot(&lab.dir.path().join("snapshots"));
        if snapshot_bytes.is_none() {
            failures.push("publish kept no etcd snapshot".into());
        }
        // The power cycle: the first machine is gone with everything in its RAM.
        drop(first.guest);
        let again = prepare(&a, &add, Some(hook_segment))?;
        second = boot(&lab, &a, &again, opts.verbose, limit, "diskless-probe-2")?;
        failures.extend(second.failures.iter().map(|f| format!("second boot: {f}")));
        if second.failures.is_empty() {
            let got = lab
                .kubectl(
                    &[
                        "get",
                        "configmap",
                        SURVIVOR,
                        "-n",
                        "default",
                        "-o",
                        "jsonpath={.data.nonce}",
                    ],
                    None,
                )
                .unwrap_or_else(|e| format!("<{e}>"));
            if got.trim() != nonce {
                failures.push(format!(
                    "after the reboot ConfigMap {SURVIVOR} has nonce {got:?}, not {nonce:?}: the snapshot was not restored"
                ));
            }
            if let Err(e) = lab.kubectl(
                &["get", "clusterrolebinding", "diskless:node-proxier"],
                None,
            ) {
                failures.push(format!("after the reboot the RBAC is gone: {e}"));
            }
            match &second.timeline.etcd_restore {
                Some(d) if d.contains("restored") => {}
                other => failures.push(format!(
                    "the second boot's init did not restore the snapshot: {other:?}"
                )),
            }
        }
    }
    Ok(Report {
        ok: failures.is_empty(),
        image: a.name.clone(),
        memory_mib: a.memory,
        failures,
        first_boot: first.timeline,
        second_boot: second.timeline,
        snapshot_bytes,
        publish_seconds,
    })
}

fn newest_snapshot(dir: &Path) -> Option<u64> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snapshot"))
        .collect();
    files.sort();
    Some(std::fs::metadata(files.last()?).ok()?.len())
}

#[derive(Default)]
struct Booted {
    guest: Option<Running>,
    timeline: BootTimeline,
    failures: Vec<String>,
}

/// A guest kept running (the hook stays up) with its boot server; dropping it kills QEMU.
struct Running {
    child: std::process::Child,
    _boot: crate::serve::BootDir,
    _http: Option<crate::serve::HttpServer>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boots once and follows the control plane up from the host until the controller-manager and
/// the scheduler work on namespace `probe` (new on each boot) and the hook reported memory.
fn boot(
    lab: &Lab,
    a: &BootOptions,
    prepared: &crate::Prepared,
    verbose: bool,
    limit: Duration,
    probe: &str,
) -> anyhow::Result<Booted> {
    let Guest {
        child,
        _boot,
        http,
        started,
        ..
    } = start(a, prepared, false, &lab.forwards())?;
    let (lines, child) = qemu::console_lines(child);
    let running = Running {
        child,
        _boot,
        _http: http,
    };
    let mut console = Console::default();
    let deadline = started + limit;
    let mut seen: [Option<Instant>; 4] = [None; 4];
    let mut last_error = String::new();
    let mut next_poll = Instant::now();
    let mut failures = Vec::new();
    loop {
        while let Ok((t, line)) = lines.try_recv() {
            if verbose {
                eprintln!("{line}");
            }
            console.feed(t.duration_since(started).as_secs_f64(), &line);
        }
        if let Some(why) = &console.stopped {
            failures.push(format!("the boot stopped: {why}"));
            break;
        }
        if seen.iter().all(Option::is_some) && console.memory_after.is_some() {
            break;
        }
        if Instant::now() > deadline {
            failures.push(format!(
                "not up within {} s (etcd {:?}, API {:?}, controller-manager {:?}, scheduler {:?}, hook memory {}); last: {last_error}",
                limit.as_secs(),
                seen[0].is_some(),
                seen[1].is_some(),
                seen[2].is_some(),
                seen[3].is_some(),
                console.memory_after.is_some()
            ));
            break;
        }
        if Instant::now() >= next_poll {
            // Every probe is a TLS handshake the emulated guest pays for.
            next_poll = Instant::now() + Duration::from_secs(2);
            if let Err(e) = poll(lab, &mut seen, probe) {
                last_error = e;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    failures.extend(console.failures());
    if !failures.is_empty() && !verbose {
        eprintln!("--- last console lines ---");
        let n = console.lines.len();
        for l in &console.lines[n.saturating_sub(60)..] {
            eprintln!("{l}");
        }
        eprintln!("---");
    }
    let kernel = console.kernel_start();
    let guest_t =
        |i: Option<Instant>| Some(i?.saturating_duration_since(started).as_secs_f64() - kernel?);
    let stage = |n: &str| console.stage(n).map(|s| s.guest_t);
    let timeline = BootTimeline {
        kernel_start: kernel,
        network_up: stage("network"),
        etcd_restored: stage("etcd-restore"),
        etcd_healthy: guest_t(seen[0]),
        api_healthy: guest_t(seen[1]),
        controller_manager_working: guest_t(seen[2]),
        scheduler_working: guest_t(seen[3]),
        memory: console.memory_after.clone(),
        etcd_restore: console.stage("etcd-restore").map(|s| s.detail.clone()),
    };
    Ok(Booted {
        guest: Some(running),
        timeline,
        failures,
    })
}

/// One look from the host, in order: etcd, the API server, the controller-manager (namespace
/// `probe` has its `default` ServiceAccount), the scheduler (a pod there is unschedulable).
pub(crate) fn poll(lab: &Lab, seen: &mut [Option<Instant>; 4], probe: &str) -> Result<(), String> {
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

/// `n` distinct ports that were free on 127.0.0.1 a moment ago.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find a free port on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}
