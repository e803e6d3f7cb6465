//! The whole cluster on one lab network: a control plane and two worker VMs on a bridge in a
//! network namespace ([`crate::lab::network`]), the workers network-booted by `diskless serve`
//! (dnsmasq + nginx) from one published boot server, no slirp. It proves what a cluster
//! member must do beyond joining: both nodes Ready; a 2-replica Deployment spread across
//! them (required pod anti-affinity); pod to pod across nodes with the sender's pod IP seen
//! by the receiver (routes between pod ranges, no masquerading, the init's `pod-routes`); a
//! ClusterIP Service resolved through CoreDNS and answering from pods on both workers; and,
//! with [`Options::reboot`], one worker power-cycled and back Ready with its pod running and
//! reachable again.
//!
//! The control plane is a parameter ([`ControlPlaneSide`]): the diskless control-plane image
//! as a third VM on the same bridge, network-booted from the same boot server
//! ([`crate::lab::control_plane::vm::VmControlPlane`]), or the host-process one
//! ([`crate::lab::control_plane::host::HostControlPlane`] started inside the namespace on the
//! bridge's address, [`crate::lab::network::host_control_plane`]).

use super::report::{ClusterDetail, ClusterNode, ClusterReport};
use crate::error::{bail, Context};
use crate::lab::api::Api;
use crate::lab::cluster_dns;
use crate::lab::control_plane::network::{CLUSTER_DNS, CLUSTER_DOMAIN};
use crate::lab::control_plane::side::ControlPlaneSide;
use crate::lab::network::{LabMachine, DHCP_RANGE, HTTP_PORT, WORKERS};
use crate::machine::logged::Logged;
use diskless_kube::images::WORKLOAD_REF;
use diskless_publish::inventory::{Host, Join, KubeletMode, MintTokens};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Deployment, its Service and the port its pods serve on.
const APP: &str = "web";
const APP_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;

#[derive(Debug, Clone)]
pub struct Options {
    /// A `diskless build` output with a joinable image (stack kubelet, kube-proxy, CoreDNS).
    pub out: PathBuf,
    /// The image's name in OUT.
    pub image: String,
    /// The `diskless` binary, for `diskless serve`.
    pub diskless: PathBuf,
    /// Each worker's RAM, MiB.
    pub memory: u32,
    /// Also power-cycle the second worker and require it back (the full run).
    pub reboot: bool,
    /// Bound on each wait (boot to Ready, pods Running, the reboot).
    pub timeout: Duration,
}

/// Publishes, serves, boots both workers and runs every check. Err says which check failed,
/// with the consoles' last lines.
pub fn run(
    opts: &Options,
    cp: &mut dyn ControlPlaneSide,
) -> Result<ClusterReport, crate::error::Error> {
    run_checks(opts, cp)
}

fn run_checks(
    opts: &Options,
    cp: &mut dyn ControlPlaneSide,
) -> crate::error::Result<ClusterReport> {
    let t0 = Instant::now();
    let lab = crate::machine::process::temp_dir("diskless-cluster-")
        .context("cannot create the cluster lab directory")?;
    // nginx's workers run as nobody: the tree must be world-readable.
    std::fs::set_permissions(
        lab.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let server = lab.path().join("srv");
    let machine = cp.publish_alone(&server)?;
    if !machine {
        publish(opts, cp, lab.path(), &server)?;
    }

    let mut serve_cmd = Command::new(&opts.diskless);
    serve_cmd
        .arg("serve")
        .arg(&server)
        .args(["--interface", "br0", "--dhcp-range", DHCP_RANGE])
        .args(["--http-port", HTTP_PORT, "--ipv6-ra"]);
    let serve = Logged::spawn(&mut serve_cmd)?;
    if serve
        .wait_for("diskless serve: ready", Duration::from_secs(15))
        .is_none()
    {
        bail!("diskless serve did not start:\n{}", serve.text());
    }
    if machine {
        cp.boot(opts.timeout)?;
        // With its API up, publish mints each worker's token and snapshots etcd.
        publish(opts, cp, lab.path(), &server)?;
    }

    let api = Api {
        kubectl: cp.kubectl().to_owned(),
        kubeconfig: cp.admin_kubeconfig().to_owned(),
    };
    // CoreDNS on the first worker: the second resolves across nodes.
    let dns = serde_json::to_vec(&cluster_dns::objects(WORKERS[0].name))?;
    apply(&api, &["--server-side"], &dns, opts.timeout)
        .context("cannot apply the cluster DNS objects")?;

    let mut consoles: Vec<Logged> = WORKERS
        .iter()
        .map(|w| Logged::spawn(&mut w.machine(opts.memory).command()?))
        .collect::<crate::error::Result<_>>()?;
    // Handed back only if every check passed: a failed one is the Err.
    let mut report = ClusterReport {
        ok: true,
        image: opts.image.clone(),
        memory_mib: opts.memory,
        accel: None,
        failures: Vec::new(),
        detail: ClusterDetail::default(),
    };
    let mut lab_run = LabRun {
        api,
        cp,
        opts,
        consoles: &mut consoles,
        told: Default::default(),
    };
    let result = lab_run.checks(&mut report);
    drop(serve);
    result?;
    report.wall = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// The inventory (the control plane's, if it is a machine, and both workers in join mode,
/// tokens minted per host by publish through the admin kubeconfig), published to `server`.
fn publish(
    opts: &Options,
    cp: &dyn ControlPlaneSide,
    lab: &Path,
    server: &Path,
) -> crate::error::Result<()> {
    let ca = lab.join("ca.crt");
    std::fs::write(&ca, cp.ca_pem())?;
    let mut inventory = cp.inventory();
    inventory.menu_timeout = 5;
    inventory.join = Some(Join {
        api_server: cp.api_server(),
        ca_file: ca,
        token_file: None,
        mint_tokens: Some(MintTokens {
            admin_kubeconfig: cp.admin_kubeconfig().to_owned(),
            ttl_seconds: 3600,
            kubectl: Some(cp.kubectl().to_owned()),
        }),
        cluster_dns: vec![CLUSTER_DNS.to_string()],
        cluster_domain: Some(CLUSTER_DOMAIN.to_string()),
    });
    // Their pod ranges come from the controller-manager (`--allocate-node-cidrs`).
    inventory.hosts.extend(
        WORKERS
            .iter()
            .map(|w| Host::new(w.mac, w.name, &opts.image, KubeletMode::Join)),
    );
    let path = lab.join("lab.toml");
    std::fs::write(&path, inventory.to_toml())?;
    diskless_publish::publish(&diskless_publish::PublishOptions {
        out: opts.out.clone(),
        to: server.display().to_string(),
        inventory: Some(path),
    })
    .context("cannot publish the workers")?;
    Ok(())
}

/// `kubectl apply EXTRA -f -` of `objects`, again every 2 s while it fails (an emulated API
/// server under load misses kubectl's request timeout now and then), for at most `timeout`.
fn apply(api: &Api, extra: &[&str], objects: &[u8], timeout: Duration) -> crate::error::Result<()> {
    let deadline = Instant::now() + timeout;
    let args: Vec<&str> = ["apply"]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(["-f", "-"])
        .collect();
    loop {
        match api.run(&args, Some(objects)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => bail!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

struct LabRun<'a> {
    api: Api,
    cp: &'a dyn ControlPlaneSide,
    opts: &'a Options,
    consoles: &'a mut Vec<Logged>,
    /// The nodes whose address the control plane was told (again after a reboot).
    told: std::collections::BTreeMap<&'static str, Ipv4Addr>,
}

/// A Node as the checks need it.
#[derive(Debug, Clone)]
struct NodeState {
    ready: bool,
    boot_id: String,
    address: Option<Ipv4Addr>,
    pod_cidr: Option<String>,
}

/// A pod of the Deployment.
#[derive(Debug, Clone)]
struct PodState {
    name: String,
    node: String,
    ip: String,
    ready: bool,
    container_id: String,
}

impl LabRun<'_> {
    fn checks(&mut self, report: &mut ClusterReport) -> crate::error::Result<()> {
        // 1. Both workers Ready, each noted when first seen so.
        let mut seen: Vec<Option<(Instant, NodeState)>> = vec![None; WORKERS.len()];
        let ready_at = self.wait("both workers Ready", |s| {
            for (i, w) in WORKERS.iter().enumerate() {
                if seen[i].is_none() {
                    if let Some(n) = s.node(w.name)?.filter(|n| n.ready) {
                        seen[i] = Some((Instant::now(), n));
                    }
                }
            }
            Ok(seen.iter().all(Option::is_some).then(|| seen.clone()))
        })?;
        let ready_at: Vec<(Instant, NodeState)> = ready_at.into_iter().flatten().collect();
        for (i, w) in WORKERS.iter().enumerate() {
            let (at, state) = &ready_at[i];
            let c = &self.consoles[i];
            let kernel = c.when("Linux version").unwrap_or(f64::NAN);
            let ready = at.duration_since(c.start).as_secs_f64();
            report.nodes.push(ClusterNode {
                name: w.name.to_string(),
                address: state.address.map(|a| a.to_string()).unwrap_or_default(),
                pod_cidr: state.pod_cidr.clone().unwrap_or_default(),
                kernel_start: kernel,
                kernel_to_ready: ready - kernel,
                ..Default::default()
            });
        }
        if report.nodes[0].pod_cidr == report.nodes[1].pod_cidr {
            bail!(
                "both nodes have the pod range {:?}: ranges must differ",
                report.nodes[0].pod_cidr
            );
        }
        report
            .proven
            .push("both workers Ready, each with its own podCIDR".into());

        // 2. The Deployment across both workers, and its Service.
        let t_apply = Instant::now();
        let objects = serde_json::to_vec(&app_objects())?;
        apply(&self.api, &[], &objects, self.opts.timeout)
            .context("cannot apply the Deployment and Service")?;
        let pods = self.wait("both Deployment pods Running on different nodes", |s| {
            let pods = s.pods()?;
            let running: Vec<PodState> = pods.into_iter().filter(|p| p.ready).collect();
            let spread = running.len() == 2 && running[0].node != running[1].node;
            Ok(spread.then_some(running))
        })?;
        report.deployment_running = t_apply.elapsed().as_secs_f64();
        report
            .proven
            .push("a 2-replica Deployment Running on both workers (pod anti-affinity)".into());

        // 3. Pod to pod across nodes, the sender's pod IP seen by the receiver.
        self.cross_node(&pods)?;
        report.proven.push(
            "pod to pod across nodes both ways; the receiver sees the sender's pod IP".into(),
        );

        // 4. The Service by its DNS name, from pods on both workers.
        self.service_by_name(&pods)?;
        report.proven.push(format!(
            "{APP}.default.svc.{CLUSTER_DOMAIN} resolved through CoreDNS and answered from pods on both workers"
        ));

        // 5. Memory per node, with its pods running (a container's /proc/meminfo is the node's).
        for p in &pods {
            let used = self.wait(&format!("{}'s /proc/meminfo", p.name), |s| {
                s.used_mib(&p.name).map(Some).map_err(|e| format!("{e:#}"))
            })?;
            if let Some(n) = report.nodes.iter_mut().find(|n| n.name == p.node) {
                n.used_mib = used;
            }
        }

        // 6. One worker power-cycled and back.
        if self.opts.reboot {
            self.reboot(1, &pods, report)?;
            report.proven.push(format!(
                "{} power-cycled: Ready again, its pod Running, pod to pod and the Service again",
                WORKERS[1].name
            ));
        }
        Ok(())
    }

    /// Polls `probe` every 500 ms until it gives a value, for at most `Options::timeout`.
    /// Meanwhile tells the control plane every node's address as it appears.
    fn wait<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&Self) -> Result<Option<T>, String>,
    ) -> crate::error::Result<T> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last = String::new();
        loop {
            let untold: Vec<&LabMachine> = WORKERS
                .iter()
                .filter(|w| !self.told.contains_key(w.name))
                .collect();
            for w in untold {
                if let Ok(Some(NodeState {
                    address: Some(a), ..
                })) = self.node(w.name)
                {
                    self.cp.node_address(w.name, a);
                    self.told.insert(w.name, a);
                }
            }
            match probe(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {} s (last: {last})\n{}",
                    self.opts.timeout.as_secs(),
                    self.console_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn console_tails(&self) -> String {
        let mut tails: Vec<String> = WORKERS
            .iter()
            .zip(self.consoles.iter())
            .map(|(w, c)| c.tail(w.name))
            .collect();
        tails.push(self.cp.console_tail());
        tails.join("\n")
    }

    fn node(&self, name: &str) -> Result<Option<NodeState>, String> {
        Ok(self.api.get(&["node", name])?.map(|n| NodeState {
            ready: n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            }),
            boot_id: n["status"]["nodeInfo"]["bootID"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            address: n["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .and_then(|a| a.parse().ok()),
            pod_cidr: n["spec"]["podCIDR"].as_str().map(String::from),
        }))
    }

    fn pods(&self) -> Result<Vec<PodState>, String> {
        let selector = format!("app={APP}");
        let list = self
            .api
            .get(&["pods", "-n", "default", "-l", &selector])?
            .unwrap_or_default();
        Ok(list["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| PodState {
                name: p["metadata"]["name"].as_str().unwrap_or("").into(),
                node: p["spec"]["nodeName"].as_str().unwrap_or("").into(),
                ip: p["status"]["podIP"].as_str().unwrap_or("").into(),
                ready: p["status"]["phase"] == "Running"
                    && p["status"]["containerStatuses"][0]["ready"] == true
                    && p["status"]["podIP"].as_str().is_some_and(|s| !s.is_empty()),
                container_id: p["status"]["containerStatuses"][0]["containerID"]
                    .as_str()
                    .unwrap_or("")
                    .into(),
            })
            .collect())
    }

    /// `sh -c script` in `pod`: its output (or the error's).
    fn exec(&self, pod: &str, script: &str) -> Result<String, String> {
        self.api.run(
            &["exec", pod, "-n", "default", "--", "sh", "-c", script],
            None,
        )
    }

    /// Each pod asks the other directly (pod IP to pod IP, across nodes); the answer names the
    /// pod that answered and the address it saw the request come from.
    fn cross_node(&mut self, pods: &[PodState]) -> crate::error::Result<()> {
        for (from, to) in [(&pods[0], &pods[1]), (&pods[1], &pods[0])] {
            // busybox httpd listens on IPv6 and shows IPv4 peers mapped: `[::ffff:10.244.1.3]`.
            let want_peer = [
                format!("peer={} ", from.ip),
                format!("peer=[::ffff:{}] ", from.ip),
            ];
            let want_pod = format!("pod={}", to.name);
            let script = ask(&to.ip, APP_PORT);
            self.wait(
                &format!(
                    "{} ({}, {}) → {} ({}, {}) with its pod IP as the source",
                    from.name, from.node, from.ip, to.name, to.node, to.ip
                ),
                |s| {
                    let answer = s.exec(&from.name, &script).unwrap_or_else(|e| e);
                    if want_peer.iter().any(|w| answer.contains(w)) && answer.contains(&want_pod) {
                        Ok(Some(()))
                    } else {
                        Err(format!("answer: {:?}", answer.trim()))
                    }
                },
            )?;
        }
        Ok(())
    }

    /// From each pod: the Service's name resolves (busybox nslookup, the pod's resolv.conf,
    /// CoreDNS) to its ClusterIP, and a request to that address gets a Deployment pod's answer.
    fn service_by_name(&mut self, pods: &[PodState]) -> crate::error::Result<()> {
        let svc = self
            .api
            .get(&["service", APP, "-n", "default"])
            .map_err(crate::error::Error::lab)?
            .context("the Service is gone")?;
        let cluster_ip = svc["spec"]["clusterIP"]
            .as_str()
            .context("the Service has no clusterIP")?
            .to_string();
        let name = format!("{APP}.default.svc.{CLUSTER_DOMAIN}");
        for p in pods {
            self.wait(
                &format!("{name} → {cluster_ip} from {} on {}", p.name, p.node),
                |s| {
                    let answer = s
                        .exec(&p.name, &format!("nslookup {name}"))
                        .unwrap_or_else(|e| e);
                    if cluster_dns::answers(&answer).contains(&cluster_ip) {
                        Ok(Some(()))
                    } else {
                        Err(format!("nslookup said {:?}", answer.trim()))
                    }
                },
            )?;
            let script = ask(&cluster_ip, SERVICE_PORT);
            self.wait(
                &format!("the Service {cluster_ip}:{SERVICE_PORT} from {}", p.name),
                |s| {
                    let answer = s.exec(&p.name, &script).unwrap_or_else(|e| e);
                    if answer.contains(&format!("pod={APP}-")) {
                        Ok(Some(()))
                    } else {
                        Err(format!("answer: {:?}", answer.trim()))
                    }
                },
            )?;
        }
        Ok(())
    }

    fn used_mib(&self, pod: &str) -> crate::error::Result<u64> {
        let meminfo = self
            .exec(pod, "cat /proc/meminfo")
            .map_err(crate::error::Error::lab)?;
        let kb = |key: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        match (kb("MemTotal:"), kb("MemAvailable:")) {
            (Some(t), Some(a)) => Ok((t - a) / 1024),
            _ => bail!("{pod}: no MemTotal/MemAvailable in {meminfo:?}"),
        }
    }

    /// Power-cycles worker `i` (QEMU killed and started again: a RAM-only node loses
    /// everything either way) and waits for a new boot ID, Ready, and its Deployment pod
    /// running again in a new container; then pod to pod across nodes again.
    fn reboot(
        &mut self,
        i: usize,
        before: &[PodState],
        report: &mut ClusterReport,
    ) -> crate::error::Result<()> {
        let w = WORKERS[i];
        let old_boot = self
            .node(w.name)
            .map_err(crate::error::Error::lab)?
            .map(|n| n.boot_id)
            .unwrap_or_default();
        let old_pod = before
            .iter()
            .find(|p| p.node == w.name)
            .context("no pod on the rebooted worker")?
            .clone();
        self.consoles[i].stop();
        // DHCP may hand it another address.
        self.told.remove(w.name);
        self.consoles[i] = Logged::spawn(&mut w.machine(self.opts.memory).command()?)?;
        self.wait(&format!("{} Ready after its reboot", w.name), |s| {
            Ok(s.node(w.name)?
                .filter(|n| n.ready && !n.boot_id.is_empty() && n.boot_id != old_boot))
        })?;
        let ready = self.consoles[i].start.elapsed().as_secs_f64();
        let pods = self.wait(
            &format!("the Deployment's pod on {} running again", w.name),
            |s| {
                let pods = s.pods()?;
                let again = pods
                    .iter()
                    .any(|p| p.node == w.name && p.ready && p.container_id != old_pod.container_id);
                let ready = pods.iter().filter(|p| p.ready).count() == 2;
                Ok((again && ready).then_some(pods))
            },
        )?;
        let running = self.consoles[i].start.elapsed().as_secs_f64();
        let kernel = self.consoles[i].when("Linux version").unwrap_or(f64::NAN);
        if let Some(n) = report.nodes.get_mut(i) {
            n.reboot = Some((kernel, ready - kernel, running - kernel));
        }
        self.cross_node(&pods)?;
        self.service_by_name(&pods)
    }
}

/// A shell line for a Deployment pod: one HTTP request to `ip:port`, the answer on stdout
/// (busybox nc; the static busybox's wget crashes resolving).
fn ask(ip: &str, port: u16) -> String {
    format!("printf 'GET /cgi-bin/who HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}")
}

/// The Deployment's pods run busybox httpd with one CGI script that answers with the
/// request's source address (`REMOTE_ADDR`) and the pod's name.
const SERVER_SCRIPT: &str = r#"mkdir -p /www/cgi-bin
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "peer=$REMOTE_ADDR pod=$(hostname)"\n' > /www/cgi-bin/who
chmod +x /www/cgi-bin/who
exec httpd -f -p 8080 -h /www"#;

/// The Deployment (2 replicas, at most one per node, the preloaded busybox, never pulled) and
/// its ClusterIP Service.
pub fn app_objects() -> Value {
    let labels = json!({ "app": APP });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": labels},
                        "topologyKey": "kubernetes.io/hostname",
                    }]}},
                    "terminationGracePeriodSeconds": 0,
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "name": APP,
                        "image": WORKLOAD_REF,
                        "imagePullPolicy": "Never",
                        "command": ["/bin/sh", "-c", SERVER_SCRIPT],
                        "ports": [{"containerPort": APP_PORT}],
                    }],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": APP, "namespace": "default"},
        "spec": {
            "selector": labels,
            "ports": [{"port": SERVICE_PORT, "targetPort": APP_PORT}],
        },
    });
    json!({"apiVersion": "v1", "kind": "List", "items": [deployment, service]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_spreads_and_never_pulls() {
        let o = app_objects();
        let d = &o["items"][0]["spec"];
        assert_eq!(d["replicas"], 2);
        let t = &d["template"]["spec"];
        assert_eq!(
            t["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
                ["topologyKey"],
            "kubernetes.io/hostname"
        );
        assert_eq!(t["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(o["items"][1]["spec"]["ports"][0]["targetPort"], APP_PORT);
    }
}
