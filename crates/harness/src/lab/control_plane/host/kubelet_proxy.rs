//! The API server's way back to the kubelets (`kubectl logs`, `exec`, `port-forward`): an HTTP
//! CONNECT proxy that the API server's egress selector sends all "cluster" traffic through,
//! and that maps a node's name to the host port of that guest's slirp
//! `hostfwd=tcp:127.0.0.1:<port>-:10250`.
//!
//! It listens on a Unix socket: in v1.36.3 the egress selector's TCP transport always speaks
//! TLS to the proxy (`tcpHTTPConnectConnector` dials with `tls.Dialer`), and an `http://` URL,
//! which its validation requires to come without `tlsConfig`, panics the API server at start
//! (`getTLSConfig(nil)`). The Unix socket transport is plain.
//!
//! Why not let the API server dial the node directly: under slirp every guest is 10.0.2.15,
//! an address the host cannot reach and that identifies no node. The API server therefore
//! prefers the node's `Hostname` address (`--kubelet-preferred-address-types`), asks this
//! proxy for `CONNECT <node>:10250`, and the proxy knows which forward leads to that node.
//! The proxy dials from 127.0.0.1, which slirp shows the guest as 10.0.2.2; a forward whose
//! host-side connection came from a non-loopback address reached the guest with that address
//! and the TLS handshake hung (field notes).

use crate::error::Context;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Node name → the address that leads to its kubelet (a slirp forward's host loopback port, or
/// the node itself on a lab network).
type Routes = Arc<Mutex<HashMap<String, SocketAddr>>>;

pub struct KubeletProxy {
    pub socket: PathBuf,
    routes: Routes,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl KubeletProxy {
    /// Listens on `socket` (a new Unix socket; its path must stay under 108 bytes) and logs
    /// every CONNECT to `log`.
    pub fn start(socket: &Path, log: &Path) -> crate::error::Result<KubeletProxy> {
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        let log = Arc::new(Mutex::new(
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?,
        ));
        let routes: Routes = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (routes, stop) = (routes.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (routes, log) = (routes.clone(), log.clone());
                    std::thread::spawn(move || {
                        let line = match tunnel(stream, &routes) {
                            Ok(line) | Err(line) => line,
                        };
                        let _ = writeln!(log.lock().unwrap(), "{line}");
                    });
                }
            })
        };
        Ok(KubeletProxy {
            socket: socket.to_owned(),
            routes,
            stop,
            accept: Some(accept),
        })
    }

    /// From now on, `CONNECT <node>:<any port>` reaches `to`.
    pub fn route(&self, node: &str, to: SocketAddr) {
        self.routes.lock().unwrap().insert(node.into(), to);
    }

    /// The API server's `--egress-selector-config-file`: only "cluster" traffic (to nodes,
    /// pods, services, webhooks) goes through the proxy; etcd and the API server's own
    /// loopback stay direct.
    pub fn egress_config(&self) -> Value {
        json!({
            "apiVersion": "apiserver.k8s.io/v1beta1",
            "kind": "EgressSelectorConfiguration",
            "egressSelections": [{
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": { "uds": { "udsName": self.socket } },
                },
            }],
        })
    }
}

impl Drop for KubeletProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Serves one CONNECT: Ok/Err carry the log line.
fn tunnel(client: UnixStream, routes: &Routes) -> Result<String, String> {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("client socket: {e}"))?;
    let mut reader = BufReader::new(client.try_clone().map_err(|e| e.to_string())?);
    let mut request = String::new();
    reader
        .read_line(&mut request)
        .map_err(|e| format!("reading the request: {e}"))?;
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) if header.len() > 8192 => return Err("header line too long".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("reading headers: {e}")),
        }
    }
    let mut client = client;
    let mut words = request.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let host = target
        .rsplit_once(':')
        .map_or(target, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    let to = routes.lock().unwrap().get(host).copied();
    let refuse = |client: &mut UnixStream, status: &str, why: String| {
        let _ = write!(client, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        Err(format!("{} → {status}: {why}", request.trim_end()))
    };
    let Some(to) = to.filter(|_| method == "CONNECT") else {
        return refuse(
            &mut client,
            "502 Bad Gateway",
            "no route (HostControlPlane::forward_kubelet)".into(),
        );
    };
    let upstream = match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return refuse(&mut client, "502 Bad Gateway", format!("{to}: {e}")),
    };
    let _ = client.set_read_timeout(None);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .map_err(|e| format!("answering {target}: {e}"))?;
    // Whatever the client sent after its headers (nothing, for TLS: the client speaks first
    // only after the 200) is still in the reader's buffer: it goes first.
    let early = reader.buffer().to_vec();
    let mut up_w = upstream.try_clone().map_err(|e| e.to_string())?;
    let up_r = upstream;
    let to_upstream = std::thread::spawn(move || {
        let _ = up_w.write_all(&early);
        let _ = std::io::copy(&mut reader, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut &up_r, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = to_upstream.join();
    Ok(format!("CONNECT {target} → {to}: closed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A routed CONNECT reaches the echo server and carries bytes both ways; an unknown node
    /// gets 502.
    #[test]
    fn connect_by_node_name() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("proxy.sock");
        let proxy = KubeletProxy::start(&sock, &tmp.path().join("proxy.log")).unwrap();
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        proxy.route("node-a", ([127, 0, 0, 1], echo_port).into());

        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(b"CONNECT node-a:10250 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut head = [0u8; 39];
        c.read_exact(&mut head).unwrap();
        assert!(head.starts_with(b"HTTP/1.1 200 "), "{head:?}");
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");

        let mut c = UnixStream::connect(&sock).unwrap();
        c.write_all(b"CONNECT node-b:10250 HTTP/1.1\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
        drop(proxy);
        // The line is written after the connection closes: give it a moment.
        let mut log = String::new();
        for _ in 0..100 {
            log = std::fs::read_to_string(tmp.path().join("proxy.log")).unwrap();
            if log.contains("node-b:10250") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(log.contains("node-b:10250 HTTP/1.1 → 502"), "{log}");
    }
}
