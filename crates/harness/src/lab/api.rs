//! kubectl with a cluster's admin kubeconfig, each call bounded by `--request-timeout`: how the
//! scenarios look at a cluster (nodes, leases, pods) from the host.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// kubectl with the admin kubeconfig, bounded per call.
pub struct Api {
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Api {
    /// The node's Lease version: it changes each time the kubelet renews (every 10 s).
    pub fn lease_version(&self, node: &str) -> Result<Option<String>, String> {
        Ok(self
            .get(&["lease", node, "-n", "kube-node-lease"])?
            .and_then(|l| l["metadata"]["resourceVersion"].as_str().map(String::from)))
    }

    /// (boot ID, Ready) of the node as the API last heard from it.
    pub fn node_boot(&self, node: &str) -> Result<Option<(String, bool)>, String> {
        Ok(self.get(&["node", node])?.map(|n| {
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

    /// Pod `pod` in `default` is Running, ready, with a pod IP.
    pub fn pod_running(&self, pod: &str) -> Result<bool, String> {
        Ok(self.get(&["pod", pod, "-n", "default"])?.is_some_and(|p| {
            p["status"]["phase"] == "Running"
                && p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| !ip.is_empty())
                && p["status"]["containerStatuses"][0]["ready"] == true
        }))
    }

    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, String> {
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
        let mut child =
            crate::machine::process::spawn(&mut cmd).map_err(|e| format!("kubectl: {e}"))?;
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

    pub fn get(&self, what: &[&str]) -> Result<Option<Value>, String> {
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
