//! Bootstrap tokens: the form the API server's bootstrap authenticator accepts, the Secret that
//! makes one valid until its expiration, and minting one per join host at publish time.
//!
//! Why mint: a RAM-only node bootstraps again at every boot, so a token written once into its
//! node segment must outlive every reboot, which means living for ever. Minted by each publish
//! with a short TTL instead, the token a node boots with is at most one TTL old, and a publish
//! run on a timer (shorter than the TTL) keeps every node able to rejoin. The threat model is
//! in docs/boot-server.md.

use crate::tool::{self, ToolError};
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use diskless_kube::controlplane::BOOTSTRAP_GROUP;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// kubectl did not start, or the API server refused the token's Secret.
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("cannot read /dev/urandom: {0}")]
    Random(std::io::Error),
    #[error("the clock is before 1970: set the system time")]
    Clock,
}

impl TokenError {
    /// Whether this machine lacks kubectl.
    pub fn is_environment(&self) -> bool {
        matches!(self, TokenError::Tool(t) if t.is_environment())
    }
}

/// A bootstrap token, `<id>.<secret>`: `[a-z0-9]{6}` and `[a-z0-9]{16}`.
#[derive(Clone)]
pub struct Token {
    pub id: String,
    pub secret: String,
}

impl Token {
    /// A token from /dev/urandom.
    pub fn generate() -> Result<Token, TokenError> {
        let mut chars = random_chars(22)?;
        let secret = chars.split_off(6);
        Ok(Token { id: chars, secret })
    }

    /// What a kubelet's bootstrap kubeconfig carries.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The token's Secret in `kube-system`, valid for `ttl` from now.
    pub fn secret(&self, ttl: Duration, description: &str) -> Result<Value, TokenError> {
        let expires = SystemTime::now() + ttl;
        let secs = expires
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Clock)?
            .as_secs();
        Ok(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("bootstrap-token-{}", self.id),
                "namespace": "kube-system",
            },
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "description": description,
                "token-id": self.id,
                "token-secret": self.secret,
                "expiration": rfc3339(secs),
                "usage-bootstrap-authentication": "true",
                "usage-bootstrap-signing": "true",
                "auth-extra-groups": BOOTSTRAP_GROUP,
            },
        }))
    }
}

impl std::fmt::Debug for Token {
    /// Shows the public id only: the secret is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<secret>)", self.id)
    }
}

/// Creates a token valid for `ttl` for `hostname` through the API server `admin_kubeconfig`
/// names, with `kubectl`.
pub fn mint(
    kubectl: &Path,
    admin_kubeconfig: &Path,
    hostname: &str,
    ttl: Duration,
) -> Result<Token, TokenError> {
    let token = Token::generate()?;
    let secret = token.secret(ttl, &format!("diskless publish, node {hostname}"))?;
    let args: Vec<std::ffi::OsString> = vec![
        "--kubeconfig".into(),
        admin_kubeconfig.into(),
        "--request-timeout=20s".into(),
        "create".into(),
        "-f".into(),
        "-".into(),
    ];
    let stdin = serde_json::to_vec(&secret).expect("a Secret always serializes");
    let what = || {
        format!(
            "minting a bootstrap token for {hostname} through {}",
            admin_kubeconfig.display()
        )
    };
    tool::run(kubectl, args, stdin, what, |stderr| {
        stderr.trim().to_string()
    })?;
    Ok(token)
}

/// `n` characters of `[a-z0-9]`, uniformly: bytes ≥ 252 (7 × 36) are drawn again.
fn random_chars(n: usize) -> Result<String, TokenError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = std::fs::File::open("/dev/urandom").map_err(TokenError::Random)?;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        urandom.read_exact(&mut buf).map_err(TokenError::Random)?;
        for &b in buf.iter().filter(|&&b| b < 252) {
            if out.len() < n {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
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
        let secret = t.secret(Duration::from_secs(3600), "test").unwrap();
        assert_eq!(
            secret["metadata"]["name"],
            format!("bootstrap-token-{}", t.id)
        );
        assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
        assert_eq!(secret["stringData"]["token-secret"], t.secret.as_str());
        assert_eq!(secret["stringData"]["auth-extra-groups"], BOOTSTRAP_GROUP);
    }

    #[test]
    fn minting_without_a_cluster_says_so() {
        let e = mint(
            Path::new("/nonexistent/kubectl"),
            Path::new("/nonexistent/admin.kubeconfig"),
            "s2",
            Duration::from_secs(60),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot run /nonexistent/kubectl"),
            "{e:#}"
        );
    }
}
