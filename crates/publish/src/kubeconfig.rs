//! A kubeconfig, as a type: every string in it (server URL, token, paths) is serialized by
//! serde_json, never pasted into YAML text, so a newline or a quote in an inventory value
//! cannot add a field. JSON is YAML, and client-go reads either.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub clusters: Vec<Named<Cluster>>,
    pub contexts: Vec<Named<Context>>,
    pub current_context: String,
    pub users: Vec<Named<User>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Named<T> {
    pub name: String,
    #[serde(flatten)]
    pub item: T,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub cluster: ClusterInfo,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterInfo {
    pub server: String,
    /// A path to the CA's PEM file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// The CA's PEM, base64 (for kubeconfigs that travel alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub context: ContextInfo,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContextInfo {
    pub cluster: String,
    pub user: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub user: Credentials,
}

/// A bearer token, or a client certificate and key (paths).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Credentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

impl Kubeconfig {
    /// One cluster, one user, one context, all named `default` but the user.
    pub fn single(server: &str, ca: ClusterCa, user: &str, credentials: Credentials) -> Kubeconfig {
        let (certificate_authority, certificate_authority_data) = match ca {
            ClusterCa::File(p) => (Some(p), None),
            ClusterCa::Data(d) => (None, Some(d)),
        };
        Kubeconfig {
            api_version: "v1",
            kind: "Config",
            clusters: vec![Named {
                name: "default".into(),
                item: Cluster {
                    cluster: ClusterInfo {
                        server: server.into(),
                        certificate_authority,
                        certificate_authority_data,
                    },
                },
            }],
            contexts: vec![Named {
                name: "default".into(),
                item: Context {
                    context: ContextInfo {
                        cluster: "default".into(),
                        user: user.into(),
                    },
                },
            }],
            current_context: "default".into(),
            users: vec![Named {
                name: user.into(),
                item: User { user: credentials },
            }],
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a kubeconfig always serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Where the cluster's CA comes from: a file path on the reader's side, or the PEM as base64.
pub enum ClusterCa {
    File(String),
    Data(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_stay_values() {
        let k = Kubeconfig::single(
            "https://10.0.0.1:6443\nusers: []",
            ClusterCa::File("/ca.crt".into()),
            "kubelet-bootstrap",
            Credentials {
                token: Some("abc\"def".into()),
                ..Default::default()
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&k.to_bytes()).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443\nusers: []"
        );
        assert_eq!(v["users"][0]["name"], "kubelet-bootstrap");
        assert_eq!(v["users"][0]["user"]["token"], "abc\"def");
        assert_eq!(v["current-context"], "default");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority"],
            "/ca.crt"
        );
    }
}
