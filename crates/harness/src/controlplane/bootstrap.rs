//! What `kubeadm init` adds to a fresh cluster so that nodes can join with a bootstrap token:
//! the token's Secret and the RBAC bindings of kubeadm's `bootstrap-token` phase
//! (`cmd/kubeadm/app/phases/bootstraptoken/node/tlsbootstrap.go` at v1.36.3), as one `List`
//! for `kubectl apply`. Built with `serde_json::json!`: the token is a value, never YAML text.
//!
//! Left out on purpose: `kubeadm:get-nodes` and the `cluster-info` ConfigMap serve
//! `kubeadm join` (its discovery and its check for a duplicate node), not the kubelet's TLS
//! bootstrap, and this project joins without kubeadm.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The group kubeadm's default bootstrap tokens authenticate as (besides
/// `system:bootstrappers`); the bindings below name it.
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token, `<id>.<secret>`: `[a-z0-9]{6}` and `[a-z0-9]{16}`, the only form the API
/// server's bootstrap authenticator accepts.
#[derive(Clone)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    /// A token from /dev/urandom.
    pub fn generate() -> anyhow::Result<Token> {
        let mut chars = random_chars(22)?;
        let secret = chars.split_off(6);
        Ok(Token { id: chars, secret })
    }

    /// What a kubelet's bootstrap kubeconfig carries.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Debug for Token {
    /// Shows the public id only: the secret is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<secret>)", self.id)
    }
}

/// `n` characters of `[a-z0-9]`, uniformly: bytes ≥ 252 (7 × 36) are drawn again.
fn random_chars(n: usize) -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom").context("open /dev/urandom")?;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        urandom.read_exact(&mut buf).context("read /dev/urandom")?;
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() < n {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// The token's Secret (valid for `ttl` from now) and kubeadm's bindings, as a `v1/List`.
pub fn objects(token: &Token, ttl: Duration) -> anyhow::Result<Value> {
    let expires = SystemTime::now() + ttl;
    let secs = expires
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    if token.id.len() != 6 || token.secret.len() != 16 {
        bail!("a bootstrap token is 6 + 16 characters");
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("bootstrap-token-{}", token.id),
            "namespace": "kube-system",
        },
        "type": "bootstrap.kubernetes.io/token",
        "stringData": {
            "description": "diskless throwaway control plane",
            "token-id": token.id,
            "token-secret": token.secret,
            "expiration": rfc3339(secs),
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": BOOTSTRAP_GROUP,
        },
    });
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

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-28T12:00:00Z`), the form the bootstrap
/// token's `expiration` must have.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar: Howard
/// Hinnant's `civil_from_days`, counting in 400-year eras that start on 1 March.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn tokens_have_the_bootstrap_form() {
        let t = Token::generate().unwrap();
        let bearer = t.bearer();
        let (id, secret) = bearer.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 16));
        assert!(bearer
            .chars()
            .all(|c| c == '.' || c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(Token::generate().unwrap().bearer(), bearer);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn the_secret_names_the_token_and_its_groups() {
        let t = Token::generate().unwrap();
        let list = objects(&t, Duration::from_secs(3600)).unwrap();
        let secret = &list["items"][0];
        assert_eq!(
            secret["metadata"]["name"],
            format!("bootstrap-token-{}", t.id)
        );
        assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(secret["stringData"]["token-secret"], t.secret.as_str());
        assert_eq!(secret["stringData"]["auth-extra-groups"], BOOTSTRAP_GROUP);
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"kubeadm:node-autoapprove-bootstrap"));
    }
}
