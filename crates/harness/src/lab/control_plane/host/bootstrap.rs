//! What `kubeadm init` adds to a fresh cluster so that nodes can join with a bootstrap token:
//! the token's Secret and the RBAC bindings of kubeadm's `bootstrap-token` phase (shared with
//! `diskless publish`, which applies them to a diskless control plane:
//! `diskless_kube::controlplane::bootstrap_rbac`), as one `List` for `kubectl apply`. Built
//! with `serde_json::json!`: the token is a value, never YAML text.

use crate::error::Context;
use serde_json::Value;
use std::time::Duration;

pub use diskless_publish::token::{Token, BOOTSTRAP_GROUP};

/// The token's Secret (valid for `ttl` from now) and kubeadm's bindings, as a `v1/List`.
pub fn objects(token: &Token, ttl: Duration) -> crate::error::Result<Value> {
    let secret = token
        .secret(ttl, "diskless throwaway control plane")
        .context("cannot make the bootstrap token's Secret")?;
    let mut items = vec![secret];
    items.extend(diskless_kube::controlplane::bootstrap_rbac());
    Ok(diskless_kube::controlplane::list(items))
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
