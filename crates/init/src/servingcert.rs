//! Step 6a: the kubelet's serving certificate (its HTTPS port, 10250), made before it starts.
//!
//! A kubelet with no `tlsCertFile` makes itself a self-signed certificate as it starts, with
//! an RSA-2048 key. Under TCG that key was 5.0 s of the kubelet's start (its log went silent
//! between its flags and its version line; prime search is random, so it varies run to run),
//! while an ECDSA P-256 key takes milliseconds. The kubelet uses the pair it finds at
//! `<cert-dir>/kubelet.{crt,key}`, so writing it first is enough; a kubelet configured with
//! `tlsCertFile` or `serverTLSBootstrap` ignores it. The key is made at every boot and stays in
//! the node's RAM, like the one the kubelet would have made.
//!
//! The certificate keeps rcgen's wide validity (1975–4096) rather than the kubelet's one year:
//! a node whose clock is not set yet must not find it "not yet valid".

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use crate::sys::{self, SysError};

/// Why the kubelet has no serving certificate of ours (it then makes its own, slowly).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("serving certificate for {hostname}: {err}")]
    Generate { hostname: String, err: rcgen::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// The kubelet's `--cert-dir` default.
const DEFAULT_CERT_DIR: &str = "/var/lib/kubelet/pki";

/// Writes `<cert-dir>/kubelet.crt` and `kubelet.key` for `hostname` and the node's addresses
/// unless both exist; `<cert-dir>` comes from the kubelet's command line. Says what it did.
pub fn ensure(kubelet_cmd: &[String], hostname: &str) -> Result<String, CertError> {
    ensure_for(kubelet_cmd, hostname, &node_addresses())
}

fn ensure_for(kubelet_cmd: &[String], hostname: &str, ips: &[IpAddr]) -> Result<String, CertError> {
    let dir = crate::node::flag_value(kubelet_cmd, "--cert-dir")
        .unwrap_or_else(|| DEFAULT_CERT_DIR.into());
    let dir = Path::new(&dir);
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    if crt.exists() && key.exists() {
        return Ok(format!("{} already present", crt.display()));
    }
    let t = Instant::now();
    let (cert_pem, key_pem) = generate(hostname, ips)?;
    std::fs::create_dir_all(dir).map_err(sys::io("create", dir.display().to_string()))?;
    write(&key, key_pem.as_bytes(), 0o600)?;
    write(&crt, cert_pem.as_bytes(), 0o644)?;
    let names: Vec<String> = std::iter::once(hostname.to_string())
        .chain(ips.iter().map(IpAddr::to_string))
        .collect();
    Ok(format!(
        "{}: ECDSA P-256, self-signed for {}, in {:.2} s",
        crt.display(),
        names.join(" "),
        t.elapsed().as_secs_f64()
    ))
}

/// The node's addresses the API server and other nodes may reach the kubelet by (the
/// kubelet's own self-signed certificate carries them too): every address of an interface
/// that is up, but loopback and IPv6 link-local.
fn node_addresses() -> Vec<IpAddr> {
    let mut ips = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read, then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return ips;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as u32 == 0 {
            continue;
        }
        // SAFETY: the family says which sockaddr type the address is.
        let ip = match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::from(a.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
        if !ip.is_loopback() && !link_local_v6 && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    ips
}

/// A self-signed server certificate for `hostname` (a DNS name or an IP address) and `ips`,
/// and its key, both PEM.
fn generate(hostname: &str, ips: &[IpAddr]) -> Result<(String, String), CertError> {
    let fail = |err: rcgen::Error| CertError::Generate {
        hostname: hostname.to_owned(),
        err,
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(fail)?;
    for ip in ips {
        let san = rcgen::SanType::IpAddress(*ip);
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SysError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(sys::io("write", path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// The pair lands where `--cert-dir` says, the key private, and a second call keeps it.
    /// openssl (scripts/install-deps installs it) reads the certificate back.
    #[test]
    fn writes_a_p256_pair_once_where_the_kubelet_looks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let cmd = vec![
            "/usr/bin/kubelet".to_string(),
            format!("--cert-dir={}", dir.display()),
        ];
        let ip: IpAddr = "10.0.2.15".parse().unwrap();
        let said = ensure_for(&cmd, "node-7", &[ip]).unwrap();
        assert!(said.contains("ECDSA P-256"), "{said}");
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("kubelet.key"), 0o600);
        assert_eq!(mode("kubelet.crt"), 0o644);
        let before = std::fs::read(dir.join("kubelet.key")).unwrap();
        assert!(ensure(&cmd, "node-7").unwrap().contains("already present"));
        assert_eq!(std::fs::read(dir.join("kubelet.key")).unwrap(), before);

        if let Some(text) = openssl_text(&dir.join("kubelet.crt")) {
            assert!(text.contains("prime256v1"), "{text}");
            assert!(text.contains("DNS:node-7, IP Address:10.0.2.15"), "{text}");
            assert!(text.contains("TLS Web Server Authentication"), "{text}");
            assert!(text.contains("CN = node-7"), "{text}");
        }
    }

    /// `openssl x509 -text` of a PEM file, or None (with a `skipped:` line) without openssl.
    fn openssl_text(pem: &Path) -> Option<String> {
        match Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(pem)
            .output()
        {
            Err(_) => {
                println!("skipped: openssl not installed, certificate not read back");
                None
            }
            Ok(o) => {
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                Some(String::from_utf8_lossy(&o.stdout).into_owned())
            }
        }
    }

    #[test]
    fn this_machines_addresses_are_found() {
        // Whatever this machine has up, loopback is never among them.
        assert!(node_addresses().iter().all(|ip| !ip.is_loopback()));
    }

    #[test]
    fn an_ip_hostname_becomes_an_ip_san() {
        let tmp = tempfile::tempdir().unwrap();
        let (pem, _) = generate("10.0.2.15", &["10.0.2.15".parse().unwrap()]).unwrap();
        let path = tmp.path().join("c.pem");
        std::fs::write(&path, pem).unwrap();
        if let Some(text) = openssl_text(&path) {
            assert!(text.contains("IP Address:10.0.2.15"), "{text}");
        }
    }
}
