//! `diskless check --join` and `run --join`: the image joins a real cluster, as a lab machine
//! does. A throwaway control plane ([`crate::controlplane`]) runs on the host's loopback; the
//! image is published to a boot server directory with one inventory host in join mode (its node
//! segment carries the bootstrap kubeconfig and the cluster CA); the machine network-boots
//! through `boot.ipxe` and its host entry and reaches the API server at
//! 10.0.2.100:6443 through slirp. While it boots, [`Watch`] follows it through the API (not
//! through the check hook): when the node registers, when it is Ready, and when a Pod created
//! through the API with a preloaded image and `imagePullPolicy: Never` runs on it with a pod IP,
//! reaches the `kubernetes` Service and resolves its name through the cluster DNS, CoreDNS from
//! the image's preloaded image ([`crate::clusterdns`], applied before the machine boots).

use crate::clusterdns;
use crate::controlplane::{ControlPlane, CLUSTER_DNS, KUBERNETES_SERVICE_IP};
use anyhow::Context;
use diskless_kube::images::{COREDNS_REF, WORKLOAD_REF};
use diskless_publish::inventory::{Host, Inventory, Join, KubeletMode, MintTokens};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The node's name in the join inventory.
pub const HOSTNAME: &str = "diskless-join";
/// The API pod's name.
const POD: &str = "diskless-check";

/// A cluster and a boot server with the image published for one join host.
pub struct Lab {
    pub cluster: ControlPlane,
    /// Holds the inventory, its secrets and the boot server directory.
    pub dir: tempfile::TempDir,
    /// The boot server directory (`diskless publish` output) to boot with `--server`.
    pub server: PathBuf,
    /// What was published, to publish again (a fresh minted token).
    out: PathBuf,
    inventory: PathBuf,
    /// With minted tokens: the one the first publish made (`<id>.<secret>`, expiration).
    pub first_token: Option<(String, String)>,
}

/// Bad join material, to prove that a node which cannot join says which and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node segment's cluster CA is another CA than the one that signed the API server.
    WrongCa,
    /// A well-formed bootstrap token the cluster never issued.
    UnknownToken,
    /// The cluster's own token, expired (its TTL is a second) before the node boots.
    ExpiredToken,
}

impl Lab {
    /// Starts the control plane and publishes `out` (a build output) for a join host with `mac`.
    pub fn start(out: &Path, image: &str, mac: &str) -> anyhow::Result<Lab> {
        Lab::start_with(out, image, mac, None)
    }

    /// [`Lab::start`], with the join material spoiled by `fault`.
    pub fn start_with(
        out: &Path,
        image: &str,
        mac: &str,
        fault: Option<Fault>,
    ) -> anyhow::Result<Lab> {
        Lab::start_inner(out, image, mac, fault, None)
    }

    /// [`Lab::start`], with the node's bootstrap token minted by publish for `ttl`
    /// (`[join.mint_tokens]`) instead of the cluster's long-lived one.
    pub fn start_minting(out: &Path, image: &str, mac: &str, ttl: Duration) -> anyhow::Result<Lab> {
        Lab::start_inner(out, image, mac, None, Some(ttl))
    }

    fn start_inner(
        out: &Path,
        image: &str,
        mac: &str,
        fault: Option<Fault>,
        mint: Option<Duration>,
    ) -> anyhow::Result<Lab> {
        let mut opts = crate::controlplane::Options::default();
        if fault == Some(Fault::ExpiredToken) {
            opts.token_ttl = Duration::from_secs(1);
        }
        let cluster =
            ControlPlane::start(opts).context("cannot start the throwaway control plane")?;
        let dir = tempfile::Builder::new()
            .prefix("diskless-join-")
            .tempdir()
            .context("cannot create the join lab directory")?;
        let ca = dir.path().join("ca.crt");
        match fault {
            Some(Fault::WrongCa) => std::fs::write(&ca, other_ca()?)?,
            _ => std::fs::write(&ca, cluster.ca_pem())?,
        }
        let token = dir.path().join("token");
        let secret = match fault {
            // Same form as a real one, so only the API server can tell.
            Some(Fault::UnknownToken) => "abcdef.0123456789abcdef".to_string(),
            _ => cluster.token().to_string(),
        };
        std::fs::write(&token, format!("{secret}\n"))?;
        let inventory = Inventory {
            default_image: None,
            menu_timeout: 5,
            join: Some(Join {
                api_server: cluster.guest_api_server(),
                ca_file: ca,
                token_file: mint.is_none().then_some(token),
                mint_tokens: mint.map(|ttl| MintTokens {
                    admin_kubeconfig: cluster.admin_kubeconfig().to_owned(),
                    ttl_seconds: ttl.as_secs(),
                    kubectl: Some(cluster.kubectl_path().to_owned()),
                }),
                cluster_dns: vec![crate::controlplane::CLUSTER_DNS.to_string()],
                cluster_domain: Some(crate::controlplane::CLUSTER_DOMAIN.to_string()),
            }),
            ssh_authorized_keys_file: None,
            // Its pod range comes from the controller-manager (`--allocate-node-cidrs`).
            hosts: vec![Host::new(mac, HOSTNAME, image, KubeletMode::Join)],
            control_plane: None,
        };
        let inventory_path = dir.path().join("lab.toml");
        std::fs::write(&inventory_path, inventory.to_toml())?;
        let server = dir.path().join("server");
        let mut lab = Lab {
            cluster,
            dir,
            server,
            out: out.to_owned(),
            inventory: inventory_path,
            first_token: None,
        };
        lab.publish()
            .context("cannot publish the image for the join host")?;
        if mint.is_some() {
            lab.first_token = lab.minted_tokens()?.into_iter().next();
            if lab.first_token.is_none() {
                anyhow::bail!("publish minted no bootstrap token for {HOSTNAME}");
            }
        }
        // Applied before the node exists: the scheduler places CoreDNS as soon as it registers.
        let dns = serde_json::to_vec(&clusterdns::objects(HOSTNAME))?;
        Api::for_lab(&lab)
            .run(&["apply", "--server-side", "-f", "-"], Some(&dns))
            .map_err(anyhow::Error::msg)
            .context("cannot apply the cluster DNS (CoreDNS) objects")?;
        Ok(lab)
    }

    /// Publishes the image and the inventory to the boot server (again: with minted tokens,
    /// the join host gets a new one).
    pub fn publish(&self) -> anyhow::Result<()> {
        diskless_publish::publish(&diskless_publish::PublishOptions {
            out: self.out.clone(),
            to: self.server.display().to_string(),
            inventory: Some(self.inventory.clone()),
        })?;
        Ok(())
    }

    /// The bootstrap tokens publish minted for the join host: (`<id>.<secret>`, expiration),
    /// oldest first.
    pub fn minted_tokens(&self) -> anyhow::Result<Vec<(String, String)>> {
        let api = Api::for_lab(self);
        let list = api
            .get(&[
                "secrets",
                "-n",
                "kube-system",
                "--field-selector",
                "type=bootstrap.kubernetes.io/token",
            ])
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default();
        let description = format!("diskless publish, node {HOSTNAME}");
        let decode = |v: &Value| -> Option<String> {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            String::from_utf8(bytes).ok()
        };
        let mut tokens: Vec<(String, String)> = list["items"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|s| decode(&s["data"]["description"]).as_deref() == Some(&description))
            .filter_map(|s| {
                let d = &s["data"];
                Some((
                    format!(
                        "{}.{}",
                        decode(&d["token-id"])?,
                        decode(&d["token-secret"])?
                    ),
                    decode(&d["expiration"])?,
                ))
            })
            .collect();
        tokens.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(tokens)
    }

    /// Whether the API server still accepts `bearer` (a request with it alone, no client
    /// certificate): `Err` says how it refused.
    pub fn token_accepted(&self, bearer: &str) -> Result<(), String> {
        let out = Command::new(self.cluster.kubectl_path())
            .env("KUBECONFIG", "/dev/null")
            .arg("--server")
            .arg(self.cluster.host_api_server())
            .arg("--certificate-authority")
            .arg(self.cluster.ca_path())
            .arg("--token")
            .arg(bearer)
            .args(["--request-timeout=5s", "get", "--raw", "/api"])
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Lab {
    /// The guest's way to the API server (10.0.2.100:6443 → the host's loopback port), and the
    /// API server's way back to the node's kubelet for logs and exec (a loopback port the
    /// control plane routes the node's name to → the guest's 10250).
    pub fn forwards(&self) -> anyhow::Result<Vec<crate::qemu::Forward>> {
        Ok(vec![
            crate::qemu::Forward::ToHost {
                guest_port: crate::controlplane::GUEST_API_PORT,
                host_port: self.cluster.api_port(),
            },
            // The `kubernetes` Service's endpoint is the advertised address with the API
            // server's own port: pods reach it through kube-proxy's rules.
            crate::qemu::Forward::ToHost {
                guest_port: self.cluster.api_port(),
                host_port: self.cluster.api_port(),
            },
            crate::qemu::Forward::ToGuest {
                host_port: self.cluster.kubelet_port_for(HOSTNAME)?,
                guest_port: crate::controlplane::KUBELET_PORT,
            },
        ])
    }

    /// `a`, booting the lab's boot server (as the join host, whose MAC `a` names) instead of OUT.
    pub fn boot_options(&self, a: &crate::BootOptions) -> crate::BootOptions {
        crate::BootOptions {
            out: self.server.clone(),
            server: true,
            ..a.clone()
        }
    }

    /// Starts following the join host through the API.
    pub fn watch(&self) -> Watch {
        Watch::start(
            self.cluster.kubectl_path().to_owned(),
            self.cluster.admin_kubeconfig().to_owned(),
        )
    }
}

/// What is wrong, in words, once the boot is over.
pub fn failures(seen: &Seen) -> Vec<String> {
    let why = || {
        seen.last_error
            .as_ref()
            .map(|e| format!(" (last API error: {e})"))
            .unwrap_or_default()
    };
    let mut f = Vec::new();
    if seen.node_registered.is_none() {
        f.push(format!(
            "node {HOSTNAME} never registered with the API server{}",
            why()
        ));
    } else if seen.node_ready.is_none() {
        f.push(format!(
            "node {HOSTNAME} registered but never became Ready{}",
            why()
        ));
    } else if seen.api_pod_running.is_none() {
        f.push(format!(
            "the API-created pod {POD} never ran on {HOSTNAME}{}",
            why()
        ));
    } else if seen.pod_ip.is_some() && seen.pod_ip == seen.node_ip {
        f.push(format!(
            "the API pod runs with the node's own IP {:?}, not a pod IP",
            seen.pod_ip
        ));
    } else if seen.logs_and_exec.is_none() {
        f.push(format!(
            "kubectl logs and exec never reached the pod {POD}{}",
            why()
        ));
    } else if seen.service_reached.is_none() {
        f.push(format!(
            "the kubernetes Service ({KUBERNETES_SERVICE_IP}:443) never answered from the pod \
             (kube-proxy's rules){}",
            why()
        ));
    } else if seen.cluster_dns.is_none() {
        f.push(format!(
            "{} never resolved to {} from the pod through the cluster DNS {CLUSTER_DNS} \
             (CoreDNS from the preloaded {COREDNS_REF}){}",
            clusterdns::SERVICE_NAME,
            clusterdns::SERVICE_ADDRESS,
            why()
        ));
    }
    if let (Some(ip), Some(cidr)) = (&seen.pod_ip, &seen.node_pod_cidr) {
        if !ipv4_in(ip, cidr) {
            f.push(format!(
                "the API pod's IP {ip} is outside the node's pod range {cidr}: the CNI \
                 configuration did not come from the node's podCIDR"
            ));
        }
    } else if seen.node_registered.is_some() && seen.node_pod_cidr.is_none() {
        f.push(format!("node {HOSTNAME} has no spec.podCIDR"));
    }
    if !seen.other_pods.is_empty() {
        f.push(format!(
            "pods besides {POD} run on the joined node {HOSTNAME}: {:?} (a standalone \
             image's static pods must stay off once it joined)",
            seen.other_pods
        ));
    }
    f
}

/// `10.244.0.7` in `10.244.0.0/24`.
fn ipv4_in(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, prefix)) = cidr.split_once('/') else {
        return false;
    };
    match (parse(ip), parse(net), prefix.parse::<u32>()) {
        (Some(ip), Some(net), Ok(p)) if p <= 32 => {
            let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
            ip & mask == net & mask
        }
        _ => false,
    }
}

/// A CA certificate no one signs with.
fn other_ca() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not-the-cluster-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}

/// What the API showed, as host instants.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub node_registered: Option<Instant>,
    pub node_ready: Option<Instant>,
    pub api_pod_running: Option<Instant>,
    /// `kubectl logs` and `kubectl exec` reached the pod: the API server → kubelet path works.
    pub logs_and_exec: Option<Instant>,
    /// From inside the API pod, the `kubernetes` Service's ClusterIP answered (kube-proxy's
    /// rules on the node, the API server behind them).
    pub service_reached: Option<Instant>,
    /// From inside the API pod, busybox `nslookup` resolved the `kubernetes` Service's name to
    /// its ClusterIP: the kubelet's clusterDNS in the pod's resolv.conf, kube-proxy's rules to
    /// the `kube-dns` Service, CoreDNS answering from the API.
    pub cluster_dns: Option<Instant>,
    pub pod_ip: Option<String>,
    pub node_ip: Option<String>,
    /// The range the controller-manager allocated to the node (`spec.podCIDR`).
    pub node_pod_cidr: Option<String>,
    /// Pods on the node other than the API pod and the cluster DNS (a standalone image's static
    /// pods must not run once it joined: their mirror pods would show here).
    pub other_pods: Vec<String>,
    /// The last error talking to the API server (for the report when something never came).
    pub last_error: Option<String>,
}

/// Polls the API server from a thread until the API pod runs (or the watch is dropped).
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    pub fn start(kubectl: PathBuf, kubeconfig: PathBuf) -> Watch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let api = Api {
                kubectl,
                kubeconfig,
            };
            follow(&api, &s, &st)
        });
        Watch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// The API pod runs, answered logs and exec, reached the `kubernetes` Service and resolved
    /// its name: nothing more to watch.
    pub fn done(&self) -> bool {
        self.seen.lock().unwrap().cluster_dns.is_some()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// kubectl with the admin kubeconfig, bounded per call.
pub(crate) struct Api {
    pub(crate) kubectl: PathBuf,
    pub(crate) kubeconfig: PathBuf,
}

impl Api {
    pub(crate) fn for_lab(lab: &Lab) -> Api {
        Api {
            kubectl: lab.cluster.kubectl_path().to_owned(),
            kubeconfig: lab.cluster.admin_kubeconfig().to_owned(),
        }
    }

    /// The node's Lease version: it changes each time the kubelet renews (every 10 s).
    pub(crate) fn lease_version(&self) -> Result<Option<String>, String> {
        Ok(self
            .get(&["lease", HOSTNAME, "-n", "kube-node-lease"])?
            .and_then(|l| l["metadata"]["resourceVersion"].as_str().map(String::from)))
    }

    /// (boot ID, Ready) of the node as the API last heard from it.
    pub(crate) fn node_boot(&self) -> Result<Option<(String, bool)>, String> {
        Ok(self.get(&["node", HOSTNAME])?.map(|n| {
            let ready = n["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            });
            let boot = n["status"]["nodeInfo"]["bootID"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (boot, ready)
        }))
    }

    /// The API pod is Running, ready, with a pod IP.
    pub(crate) fn pod_running(&self) -> Result<bool, String> {
        Ok(self.get(&["pod", POD, "-n", "default"])?.is_some_and(|p| {
            p["status"]["phase"] == "Running"
                && p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| !ip.is_empty())
                && p["status"]["containerStatuses"][0]["ready"] == true
        }))
    }

    pub(crate) fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
        use std::io::Write;
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=5s")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| format!("kubectl: {e}"))?;
        if let Some(bytes) = stdin {
            let _ = child.stdin.take().expect("piped").write_all(bytes);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub(crate) fn get(&self, what: &[&str]) -> Result<Option<Value>, String> {
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend(["-o", "json", "--ignore-not-found"]);
        let text = self.run(&args, None)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("kubectl get {}: not JSON: {e}", what.join(" ")))
    }
}

/// The API pod: the reference worker's preloaded busybox, never pulled, on this node (the
/// scheduler places it: a nodeSelector, not nodeName), tolerating whatever taints it has.
pub fn api_pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": HOSTNAME},
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "main",
                "image": WORKLOAD_REF,
                "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", "echo diskless api pod running; while true; do sleep 3600; done"],
            }],
        },
    })
}

fn follow(api: &Api, seen: &Mutex<Seen>, stop: &std::sync::atomic::AtomicBool) {
    let mut pod_created = false;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut step = || -> Result<bool, String> {
            let now = Instant::now();
            let Some(node) = api.get(&["node", HOSTNAME])? else {
                return Ok(false);
            };
            let mut s = seen.lock().unwrap();
            s.node_registered.get_or_insert(now);
            s.node_pod_cidr = node["spec"]["podCIDR"].as_str().map(String::from);
            s.node_ip = node["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .map(String::from);
            let ready = node["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|x| x["type"] == "Ready" && x["status"] == "True")
            });
            if ready {
                s.node_ready.get_or_insert(now);
            }
            drop(s);
            if !ready {
                return Ok(false);
            }
            if !pod_created {
                let bytes = serde_json::to_vec(&api_pod()).expect("serializes");
                api.run(&["apply", "-f", "-"], Some(&bytes))?;
                pod_created = true;
            }
            let Some(pod) = api.get(&["pod", POD, "-n", "default"])? else {
                return Ok(false);
            };
            let ip = pod["status"]["podIP"].as_str().unwrap_or("");
            if pod["status"]["phase"] != "Running" || ip.is_empty() {
                return Ok(false);
            }
            let selector = format!("spec.nodeName={HOSTNAME}");
            let others: Vec<String> = api
                .get(&["pods", "-A", "--field-selector", &selector])?
                .and_then(|l| l["items"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter(|p| !clusterdns::is_dns_pod(p))
                .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
                .filter(|n| n != POD)
                .collect();
            {
                let mut s = seen.lock().unwrap();
                s.api_pod_running.get_or_insert(now);
                s.pod_ip = Some(ip.to_string());
                s.other_pods = others;
            }
            let done = |f: fn(&Seen) -> Option<Instant>| f(&seen.lock().unwrap()).is_some();
            if !done(|s| s.logs_and_exec) {
                // The way back: the API server streams from the node's kubelet.
                let logs = api.run(&["logs", POD, "-n", "default"], None)?;
                let exec = api.run(
                    &["exec", POD, "-n", "default", "--", "echo", "exec-ok"],
                    None,
                )?;
                if !(logs.contains("diskless api pod running") && exec.trim() == "exec-ok") {
                    return Err(format!(
                        "kubectl logs said {logs:?}, kubectl exec said {exec:?}"
                    ));
                }
                seen.lock()
                    .unwrap()
                    .logs_and_exec
                    .get_or_insert_with(Instant::now);
            }
            if !done(|s| s.service_reached) {
                // A ClusterIP Service from the pod: plain HTTP to the API server's TLS port gets
                // Go's "400 Bad Request", which only the API server, reached through
                // kube-proxy's rules, can say. (busybox nc: the static busybox's wget crashes
                // resolving.)
                let request = format!(
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {KUBERNETES_SERVICE_IP} 443"
                );
                let answer = match api.run(
                    &["exec", POD, "-n", "default", "--", "sh", "-c", &request],
                    None,
                ) {
                    Ok(out) | Err(out) => out,
                };
                if !answer.contains("400") {
                    return Err(format!(
                        "the kubernetes Service ({KUBERNETES_SERVICE_IP}:443) from the pod: {answer}"
                    ));
                }
                seen.lock().unwrap().service_reached = Some(Instant::now());
            }
            // The cluster DNS, through the pod's resolv.conf (busybox nslookup has its own
            // resolver, unlike the static busybox's wget).
            let answer = match api.run(
                &[
                    "exec",
                    POD,
                    "-n",
                    "default",
                    "--",
                    "nslookup",
                    clusterdns::SERVICE_NAME,
                ],
                None,
            ) {
                Ok(out) | Err(out) => out,
            };
            if clusterdns::answers(&answer)
                .iter()
                .any(|a| a == clusterdns::SERVICE_ADDRESS)
            {
                seen.lock().unwrap().cluster_dns = Some(Instant::now());
                return Ok(true);
            }
            let dns_pod = api
                .get(&["pods", "-n", "kube-system", "-l", "k8s-app=kube-dns"])?
                .and_then(|l| l["items"].get(0).cloned())
                .map(|p| {
                    format!(
                        "phase {}, ready {}, waiting {}",
                        p["status"]["phase"],
                        p["status"]["containerStatuses"][0]["ready"],
                        p["status"]["containerStatuses"][0]["state"]["waiting"]
                    )
                })
                .unwrap_or_else(|| "no pod".into());
            Err(format!(
                "nslookup {} from the pod said {:?} (CoreDNS pod: {dns_pod})",
                clusterdns::SERVICE_NAME,
                answer.trim()
            ))
        };
        match step() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => seen.lock().unwrap().last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_ips_in_ranges() {
        assert!(ipv4_in("10.244.0.7", "10.244.0.0/24"));
        assert!(!ipv4_in("10.88.0.7", "10.244.0.0/24"));
        assert!(ipv4_in("1.2.3.4", "0.0.0.0/0"));
        assert!(!ipv4_in("10.244.0.7", "10.244.0.0"));
    }

    #[test]
    fn the_api_pod_uses_the_preloaded_image_and_never_pulls() {
        let p = api_pod();
        assert_eq!(p["spec"]["containers"][0]["image"], WORKLOAD_REF);
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(
            p["spec"]["nodeSelector"]["kubernetes.io/hostname"],
            HOSTNAME
        );
    }
}
