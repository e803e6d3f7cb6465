//! `diskless check --join`: while the join host boots, [`Watch`] follows it through the API
//! (not through the check hook): when the node registers, when it is Ready, and when a Pod
//! created through the API with a preloaded image and `imagePullPolicy: Never` runs on it
//! with a pod IP, answers `kubectl logs` and `exec`, reaches the `kubernetes` Service and
//! resolves its name through the cluster DNS (CoreDNS from the image's preloaded image,
//! applied by [`crate::lab::join::Lab`] before the machine boots). [`failures`] says what never
//! came.

use crate::lab::api::Api;
use crate::lab::cluster_dns;
use crate::lab::control_plane::network::{CLUSTER_DNS, KUBERNETES_SERVICE_IP};
use crate::lab::join::HOSTNAME;
use diskless_kube::images::{COREDNS_REF, WORKLOAD_REF};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The API pod's name.
pub const POD: &str = "diskless-check";

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
            cluster_dns::SERVICE_NAME,
            cluster_dns::SERVICE_ADDRESS,
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
    pub fn start(api: Api) -> Watch {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || follow(&api, &s, &st));
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
                .filter(|p| !cluster_dns::is_dns_pod(p))
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
                    cluster_dns::SERVICE_NAME,
                ],
                None,
            ) {
                Ok(out) | Err(out) => out,
            };
            if cluster_dns::answers(&answer)
                .iter()
                .any(|a| a == cluster_dns::SERVICE_ADDRESS)
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
                cluster_dns::SERVICE_NAME,
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
