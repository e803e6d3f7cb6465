//! What `kubeadm init` adds to a fresh cluster so that nodes can join with a bootstrap token:
//! the token's Secret and the RBAC bindings of kubeadm's `bootstrap-token` phase
//! (`cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go` at v1.36.3), as one `List`
//! for `kubectl apply`. Built with `serde_json::json!`: the token is a value, never YAML text.
//!
//! Left out on purpose: `kubeadm:get-nodes` and the `cluster-info` ConfigMap serve
//! `kubeadm join` (its discovery and its check for a duplicate node), not the kubelet's TLS
//! bootstrap, and this project joins without kubeadm.

use serde_json::{json, Value};
use std::time::Duration;

pub use diskless_publish::token::{Token, BOOTSTRAP_GROUP};

/// The token's Secret (valid for `ttl` from now) and kubeadm's bindings, as a `v1/List`.
pub fn objects(token: &Token, ttl: Duration) -> anyhow::Result<Value> {
    let secret = token.secret(ttl, "diskless throwaway control plane")?;
    let items = vec![
        secret,
        // Bootstrap tokens may create CSRs (the kubelet's first client certificate).
        binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            "Group",
            BOOTSTRAP_GROUP,
        ),
        // The controller-manager's csrapprover approves those CSRs ...
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            "Group",
            BOOTSTRAP_GROUP,
        ),
        // ... and a node's renewal of its own client certificate.
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "Group",
            "system:nodes",
        ),
        // Nodes run kube-proxy with their own credentials (the host plans do): it lists
        // Services, EndpointSlices and Nodes. kubeadm binds the role to a kube-proxy
        // ServiceAccount; a RAM-only node has no place to keep that account's token.
        binding(
            "diskless:node-proxier",
            "system:node-proxier",
            "Group",
            "system:nodes",
        ),
        // The API server's client certificate may use the kubelet API (logs, exec), and only
        // that: it is not in system:masters (pki.rs).
        binding(
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            "User",
            "kube-apiserver-kubelet-client",
        ),
    ];
    Ok(json!({ "apiVersion": "v1", "kind": "List", "items": items }))
}

fn binding(name: &str, role: &str, kind: &str, subject: &str) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": { "name": name },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role,
        },
        "subjects": [{
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": subject,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_the_secret_and_kubeadms_bindings() {
        let t = Token::generate().unwrap();
        let list = objects(&t, Duration::from_secs(3600)).unwrap();
        let secret = &list["items"][0];
        assert_eq!(
            secret["metadata"]["name"],
            format!("bootstrap-token-{}", t.id)
        );
        assert_eq!(secret["stringData"]["auth-extra-groups"], BOOTSTRAP_GROUP);
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"kubeadm:node-autoapprove-bootstrap"));
        assert!(names.contains(&"diskless:node-proxier"));
    }
}
