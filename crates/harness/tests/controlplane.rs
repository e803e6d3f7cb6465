//! The throwaway control plane against the real stack, no mocks: a bootstrap token gets a node
//! client certificate approved and signed (kubeadm's RBAC, the csrapprover, the signer), a
//! Node gets a pod CIDR, the API server reaches a "kubelet" through the kubelet proxy with its
//! kubelet client certificate, the API server restarts alone, and dropping the control plane
//! leaves no process and no listening port behind. Skipped (with a `skipped:` line) where the
//! Kubernetes stack is not built; CI has it.

use base64::Engine;
use diskless_harness::lab::control_plane::host::{HostControlPlane, Options, CLUSTER_CIDR};
use diskless_publish::kubeconfig::ClusterCa;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The control plane, or None (having said why) without the stack.
fn start() -> Option<HostControlPlane> {
    if let Err(e) = diskless_kube::stack::bin_dir() {
        println!("skipped: {e:#}");
        return None;
    }
    let t = Instant::now();
    let cp = HostControlPlane::start(Options::default()).expect("control plane");
    let s = cp.start_times();
    println!(
        "control plane ready in {:.2} s (since the first spawn: etcd {:.2} · API server /readyz {:.2} · token and RBAC {:.2} · controllers {:.2})",
        t.elapsed().as_secs_f64(),
        s.etcd,
        s.apiserver_ready,
        s.rbac_applied,
        s.controllers_ready,
    );
    Some(cp)
}

/// Polls `f` every 200 ms for up to `limit`; panics with the last thing seen.
fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let t = Instant::now();
    loop {
        match f() {
            Ok(v) => {
                println!("{what}: {:.2} s", t.elapsed().as_secs_f64());
                return v;
            }
            Err(e) if t.elapsed() > limit => panic!("{what}: not within {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// kubectl with another kubeconfig than the admin's.
fn kubectl_as(cp: &HostControlPlane, kubeconfig: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(cp.kubectl_path())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What a kubelet does with its bootstrap kubeconfig, then what the node controller does for
/// a new Node; then the control plane stops and leaves nothing behind.
#[test]
fn a_bootstrap_token_gets_a_node_certificate_and_a_node_a_pod_cidr() {
    let Some(cp) = start() else { return };
    assert_eq!(cp.kubectl(&["get", "--raw=/readyz"]).unwrap().trim(), "ok");
    assert_eq!(cp.token().len(), 23);
    assert_eq!(cp.guest_api_server(), "https://10.0.2.100:6443");

    // The kubelet's bootstrap: its kubeconfig carries the token, a CSR for its client
    // certificate, the csrapprover approves it, the signer issues it.
    let tmp = tempfile::tempdir().unwrap();
    let bootstrap = tmp.path().join("bootstrap.kubeconfig");
    let k = cp.bootstrap_kubeconfig(
        &cp.host_api_server(),
        ClusterCa::File(cp.ca_path().display().to_string()),
    );
    std::fs::write(&bootstrap, k.to_bytes()).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:testnode");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let request = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "name": "node-csr-testnode" },
        "spec": {
            "request": B64.encode(request),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    });
    let created = Instant::now();
    kubectl_as(
        &cp,
        &bootstrap,
        &["create", "-f", "-"],
        &serde_json::to_vec(&csr).unwrap(),
    );
    let cert = eventually("CSR approved and issued", Duration::from_secs(60), || {
        let out = cp
            .kubectl(&["get", "csr", "node-csr-testnode", "-o", "json"])
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let approved = v["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Approved"));
        match v["status"]["certificate"].as_str() {
            Some(c) if approved && !c.is_empty() => Ok(c.to_string()),
            _ => Err(format!("status: {}", v["status"])),
        }
    });
    println!(
        "  (from the CSR's creation: {:.2} s)",
        created.elapsed().as_secs_f64()
    );
    let pem = String::from_utf8(B64.decode(cert).unwrap()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let cert_file = tmp.path().join("node.crt");
    std::fs::write(&cert_file, &pem).unwrap();
    if let Ok(o) = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(cp.ca_path())
        .arg(&cert_file)
        .output()
    {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    } else {
        println!("skipped: openssl not installed, the node certificate's chain not verified");
    }

    // The node controller's CIDR allocation.
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "testnode" } });
    cp.kubectl_input(&["create", "-f", "-"], &serde_json::to_vec(&node).unwrap())
        .unwrap();
    let cidr = eventually("node podCIDR allocated", Duration::from_secs(60), || {
        let out = cp
            .kubectl(&["get", "node", "testnode", "-o", "jsonpath={.spec.podCIDR}"])
            .map_err(|e| e.to_string())?;
        if out.is_empty() {
            Err("no podCIDR yet".into())
        } else {
            Ok(out)
        }
    });
    let prefix = CLUSTER_CIDR
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    assert!(
        cidr.starts_with(&prefix) && cidr.ends_with("/24"),
        "{cidr} is not a /24 of {CLUSTER_CIDR}"
    );

    // Dropping stops everything.
    let pids = cp.pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    let port = cp.api_port();
    let dir = cp.dir().to_owned();
    let t = Instant::now();
    drop(cp);
    println!("stopped in {:.2} s", t.elapsed().as_secs_f64());
    for (name, pid) in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{name} ({pid}) still runs"
        );
    }
    TcpListener::bind(("127.0.0.1", port)).expect("the API port is free again");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

/// A stand-in kubelet: openssl's test server, which answers any GET with a page describing
/// the TLS session, the client's certificate included. Killed on drop.
struct FakeKubelet(std::process::Child);

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubectl logs` goes API server → egress proxy → the node's forward → a TLS server that
/// demands a client certificate from the control plane's CA; then the API server alone is
/// stopped and started again.
#[test]
fn the_api_server_reaches_a_kubelet_by_node_name_and_restarts() {
    if Command::new("openssl").arg("version").output().is_err() {
        println!("skipped: openssl not installed (it plays the kubelet)");
        return;
    }
    let Some(mut cp) = start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["kubelet-node".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(tmp.path().join("k.crt"), cert.pem()).unwrap();
    std::fs::write(tmp.path().join("k.key"), key.serialize_pem()).unwrap();
    let port = cp.kubelet_port_for("kubelet-node").unwrap();
    let server_log = tmp.path().join("s_server.log");
    let log_file = std::fs::File::create(&server_log).unwrap();
    let _kubelet = FakeKubelet(
        Command::new("openssl")
            .args(["s_server", "-www", "-Verify", "1", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(tmp.path().join("k.crt"))
            .arg("-key")
            .arg(tmp.path().join("k.key"))
            .arg("-CAfile")
            .arg(cp.ca_path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            // Where it says whose client certificate it verified.
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );

    // What a registered kubelet's Node says about itself (every guest is 10.0.2.15).
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": "kubelet-node" },
        "status": {
            "addresses": [
                { "type": "InternalIP", "address": "10.0.2.15" },
                { "type": "Hostname", "address": "kubelet-node" },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
        },
    });
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "p", "namespace": "default" },
        "spec": {
            "nodeName": "kubelet-node",
            "containers": [{ "name": "c", "image": "busybox" }],
        },
    });
    for object in [node, pod] {
        cp.kubectl_input(
            &["create", "-f", "-"],
            &serde_json::to_vec(&object).unwrap(),
        )
        .unwrap();
    }
    let page = eventually(
        "kubectl logs through the proxy",
        Duration::from_secs(30),
        || {
            cp.kubectl(&["logs", "p", "--namespace=default"])
                .map_err(|e| e.to_string())
        },
    );
    assert!(page.contains("s_server -www"), "{page}");
    let said = std::fs::read_to_string(&server_log).unwrap();
    assert!(
        said.contains("CN = kube-apiserver-kubelet-client"),
        "the fake kubelet saw no client certificate:\n{said}"
    );
    assert!(
        cp.log_tail("kubelet-proxy", 5)
            .contains("CONNECT kubelet-node:10250"),
        "{}",
        cp.log_tail("kubelet-proxy", 5)
    );

    let t = Instant::now();
    cp.stop_apiserver();
    assert!(cp.kubectl(&["get", "--raw=/readyz"]).is_err());
    cp.start_apiserver().unwrap();
    println!(
        "API server stopped and ready again in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let name = cp
        .kubectl(&["get", "node", "kubelet-node", "-o", "name"])
        .unwrap();
    assert_eq!(name.trim(), "node/kubelet-node", "etcd kept the objects");
}
