//! One read from the API server as the node itself: the server URL and CA that publish put in
//! the node segment (the bootstrap kubeconfig, [`CLIENT_CA`]) and the client certificate the
//! kubelet got for its bootstrap CSR (`kubelet-client-current.pem`, certificate and key in one
//! file). The Node authorizer lets `system:node:<name>` get, list and watch Nodes, which is all
//! the pod-route sync needs. TLS 1.3 through rustls with ring (already in the init for the
//! serving certificate); HTTP/1.0, so the answer is the body up to the end of the connection,
//! never chunked.

use diskless_contract::node::{BOOTSTRAP_KUBECONFIG, CLIENT_CA};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The kubelet's current client certificate and key (`--cert-dir` is the init's, node.rs).
pub const CLIENT_PEM: &str = "/var/lib/kubelet/pki/kubelet-client-current.pem";
/// Bounds each connect, read and write: a hung API server must not hang the sync.
const IO_LIMIT: Duration = Duration::from_secs(10);

/// Why the API server could not be asked; each names the file or address concerned.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A file of the node segment or the kubelet's that cannot be read or parsed.
    #[error("{path}: {err}")]
    File {
        path: &'static str,
        err: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{BOOTSTRAP_KUBECONFIG}: clusters[0].cluster.server: {0}")]
    Server(ServerError),
    #[error("{BOOTSTRAP_KUBECONFIG}: server {server:?}: {why}")]
    ServerUrl { server: String, why: UrlError },
    #[error("{CLIENT_CA}: not a CA certificate: {0}")]
    NotCa(rustls::Error),
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("server name {host:?}: {err}")]
    ServerName {
        host: String,
        err: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("{host}:{port}: {err}")]
    Resolve {
        host: String,
        port: u16,
        err: std::io::Error,
    },
    #[error("{0}: no address")]
    NoAddress(String),
    #[error("{addr}: {err}")]
    Io {
        addr: std::net::SocketAddr,
        err: std::io::Error,
    },
    #[error("no end of the HTTP header")]
    NoHeaderEnd,
    /// An answer other than 200, with its body.
    #[error("{status}: {body}")]
    Status { status: String, body: String },
}

/// The kubeconfig's server, missing or not JSON.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("missing")]
    Missing,
}

/// A server URL this client cannot use.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an https:// URL")]
    NotHttps,
    #[error("a path after the host is not supported")]
    Path,
    #[error("IPv6 literals are not supported")]
    Ipv6,
    #[error("bad port {0:?}")]
    Port(String),
    #[error("{0:?} is not a host name or IPv4 address")]
    Host(String),
}

fn file_err<E: std::error::Error + Send + Sync + 'static>(
    path: &'static str,
) -> impl Fn(E) -> ApiError {
    move |e| ApiError::File {
        path,
        err: Box::new(e),
    }
}

/// Where and how to reach the API server.
pub struct Client {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// From the node segment and the kubelet's certificate. Err names the file and what is
    /// wrong; before the kubelet's CSR is signed the certificate is simply not there yet.
    pub fn from_node() -> Result<Client, ApiError> {
        let kubeconfig = std::fs::read_to_string(BOOTSTRAP_KUBECONFIG)
            .map_err(file_err(BOOTSTRAP_KUBECONFIG))?;
        let server = server_of(&kubeconfig).map_err(ApiError::Server)?;
        let (host, port) = host_port(&server).map_err(|why| ApiError::ServerUrl {
            server: server.clone(),
            why,
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(CLIENT_CA).map_err(file_err(CLIENT_CA))? {
            let c = c.map_err(file_err(CLIENT_CA))?;
            roots.add(c).map_err(ApiError::NotCa)?;
        }
        let chain = CertificateDer::pem_file_iter(CLIENT_PEM)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(file_err(CLIENT_PEM))?;
        let key = PrivateKeyDer::from_pem_file(CLIENT_PEM).map_err(file_err(CLIENT_PEM))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(ApiError::Tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(file_err(CLIENT_PEM))?;
        Ok(Client {
            host,
            port,
            tls: Arc::new(tls),
        })
    }

    /// `GET path` (a constant of the caller's, e.g. `/api/v1/nodes`): the body of a 200
    /// answer, else Err with the status line.
    pub fn get(&self, path: &'static str) -> Result<Vec<u8>, ApiError> {
        let name = ServerName::try_from(self.host.clone()).map_err(|err| ApiError::ServerName {
            host: self.host.clone(),
            err,
        })?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name).map_err(ApiError::Tls)?;
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(self.host.as_str(), self.port))
            .map_err(|err| ApiError::Resolve {
                host: self.host.clone(),
                port: self.port,
                err,
            })?
            .next()
            .ok_or_else(|| ApiError::NoAddress(self.host.clone()))?;
        let io = |err| ApiError::Io { addr, err };
        let tcp = TcpStream::connect_timeout(&addr, IO_LIMIT).map_err(io)?;
        tcp.set_read_timeout(Some(IO_LIMIT)).ok();
        tcp.set_write_timeout(Some(IO_LIMIT)).ok();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: diskless-pod-routes\r\n\r\n",
            self.host
        );
        tls.write_all(request.as_bytes()).map_err(io)?;
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer) {
            Ok(_) => {}
            // Go closes without close_notify at times; the body is complete by then.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(io(e)),
        }
        body_of(&answer)
    }
}

/// The first cluster's server URL of a kubeconfig as publish writes it (JSON).
fn server_of(kubeconfig: &str) -> Result<String, ServerError> {
    let v: serde_json::Value = serde_json::from_str(kubeconfig)?;
    v["clusters"][0]["cluster"]["server"]
        .as_str()
        .map(String::from)
        .ok_or(ServerError::Missing)
}

/// `https://10.33.0.1:6443` → (`10.33.0.1`, 6443); the port defaults to 443.
fn host_port(url: &str) -> Result<(String, u16), UrlError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or(UrlError::NotHttps)?
        .trim_end_matches('/');
    if rest.contains('/') || rest.is_empty() {
        return Err(UrlError::Path);
    }
    if rest.starts_with('[') {
        return Err(UrlError::Ipv6);
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| UrlError::Port(p.to_owned()))?),
        None => (rest, 443),
    };
    // It goes into the request's Host header: a name or an address, nothing else.
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(UrlError::Host(host.to_owned()));
    }
    Ok((host.to_string(), port))
}

/// The body of an HTTP/1.x answer whose status is 200.
fn body_of(answer: &[u8]) -> Result<Vec<u8>, ApiError> {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ApiError::NoHeaderEnd)?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        let body = String::from_utf8_lossy(&answer[split + 4..]);
        return Err(ApiError::Status {
            status: status.to_owned(),
            body: body.trim().to_owned(),
        });
    }
    Ok(answer[split + 4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers() {
        assert_eq!(
            host_port("https://10.33.0.1:6443").unwrap(),
            ("10.33.0.1".into(), 6443)
        );
        assert_eq!(
            host_port("https://api.lab/").unwrap(),
            ("api.lab".into(), 443)
        );
        assert!(host_port("http://10.0.0.1").is_err());
        assert!(host_port("https://x:y").is_err());
        assert!(host_port("https://x/api").is_err());
        assert!(host_port("https://a\r\nb:1").is_err());
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body_of(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n{}").unwrap(),
            b"{}".to_vec()
        );
        let e = body_of(b"HTTP/1.0 403 Forbidden\r\n\r\nno")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "HTTP/1.0 403 Forbidden: no");
        assert!(body_of(b"HTTP/1.0 200 OK\r\n").is_err());
    }

    #[test]
    fn kubeconfig_server() {
        let k = r#"{"clusters":[{"name":"c","cluster":{"server":"https://10.0.2.100:6443"}}]}"#;
        assert_eq!(server_of(k).unwrap(), "https://10.0.2.100:6443");
        assert!(server_of("{}").is_err());
    }
}
