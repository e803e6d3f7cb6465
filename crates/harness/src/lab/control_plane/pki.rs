//! The throwaway cluster's PKI: one CA that signs everything (serving, clients, and — through
//! the controller-manager — the nodes' client certificates), and the service-account key pair.
//!
//! ECDSA P-256 throughout: every key takes milliseconds (an RSA-2048 key can take seconds
//! under load), Go's TLS and client-go's key parsers accept it, and the API server signs
//! service-account tokens with it as ES256. Certificates keep rcgen's wide validity (1975–4096):
//! the PKI lives as long as one test, and a guest whose clock is off must not find it "not yet
//! valid". The file names are kubeadm's, so its documentation describes them.

use super::network::{GUEST_API_ADDR, KUBERNETES_SERVICE_IP};
use crate::error::Context;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file the components are started with.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: Pair,
    /// The CA certificate's PEM, for kubeconfigs that carry it inline.
    pub ca_pem: String,
    /// The API server's serving certificate (see `server_names`).
    pub apiserver: Pair,
    /// The API server's client certificate towards kubelets (logs, exec).
    pub apiserver_kubelet_client: Pair,
    /// `system:masters`: everything, for the harness's kubectl.
    pub admin: Pair,
    pub controller_manager: Pair,
    pub scheduler: Pair,
    /// The service-account token signing key (PKCS#8) and its public half (SPKI): the API
    /// server verifies with `sa.pub` and signs with `sa.key`; the controller-manager signs
    /// legacy tokens with `sa.key`.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// etcd's own CA (`etcd/ca`): the cluster CA signs every node's client certificate, and
    /// no node may read etcd. It signs etcd's serving certificate (`etcd/server`, for
    /// 127.0.0.1 and `localhost`: publish reaches a control-plane VM's etcd through a
    /// forwarded loopback port), kubeadm's client for an API server that reaches etcd over
    /// TLS (`apiserver-etcd-client`; the control-plane image's uses plain HTTP on its own
    /// loopback) and the one `diskless publish` takes snapshots with (`etcd/snapshot-client`).
    /// The throwaway control plane's own etcd speaks plain HTTP on loopback and uses none.
    pub etcd_ca: Pair,
    pub etcd_server: Pair,
    pub apiserver_etcd_client: Pair,
    pub etcd_snapshot_client: Pair,
}

/// The names the API server answers to: the guest-side address (where a guest reaches it
/// through slirp's guestfwd), the host's loopback, and the in-cluster names and service IP
/// that kubeadm puts in.
pub fn server_names() -> Vec<String> {
    [
        GUEST_API_ADDR,
        "127.0.0.1",
        KUBERNETES_SERVICE_IP,
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .to_vec()
}

/// Generates the PKI into `dir` (created): certificates 0644, keys 0600.
pub fn generate(dir: &Path) -> crate::error::Result<Pki> {
    generate_with(dir, &[])
}

/// [`generate`], the API server's and etcd's certificates also naming `extra_names` (a control-plane
/// machine's own addresses and names).
pub fn generate_with(dir: &Path, extra_names: &[String]) -> crate::error::Result<Pki> {
    std::fs::create_dir_all(dir.join("etcd"))
        .with_context(|| format!("create {}", dir.display()))?;
    let (ca_cert, ca_key) = new_ca("diskless throwaway CA")?;
    let ca = write_pair(dir, "ca", &ca_cert, &ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer {
        cert: &ca_cert,
        key: &ca_key,
    };
    let mut names = server_names();
    names.extend(extra_names.iter().cloned());

    let apiserver = issuer.leaf(
        dir,
        "apiserver",
        "kube-apiserver",
        None,
        names,
        vec![ExtendedKeyUsagePurpose::ServerAuth],
    )?;
    let client = |file: &str, cn: &str, org: Option<&str>| {
        issuer.leaf(
            dir,
            file,
            cn,
            org,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    };
    // kubeadm (v1.36) gives this certificate no group: RBAC's `kubeadm:apiserver-kubelet-client`
    // binding (bootstrap.rs) grants it `system:kubelet-api-admin` and nothing else, where
    // `system:masters` would make it a cluster admin.
    let apiserver_kubelet_client = client(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        None,
    )?;
    let admin = client("admin", "kubernetes-admin", Some("system:masters"))?;
    let controller_manager = client("controller-manager", "system:kube-controller-manager", None)?;
    let scheduler = client("scheduler", "system:kube-scheduler", None)?;

    let sa = new_key()?;
    let sa_key = dir.join("sa.key");
    let sa_pub = dir.join("sa.pub");
    write_file(&sa_key, sa.serialize_pem().as_bytes(), 0o600)?;
    // A PUBLIC KEY (SPKI) block: client-go's public key parser reads EC keys only as SEC1
    // private keys or as SPKI public keys, not as the PKCS#8 that rcgen writes.
    write_file(&sa_pub, sa.public_key_pem().as_bytes(), 0o644)?;

    let (etcd_ca_cert, etcd_ca_key) = new_ca("diskless etcd CA")?;
    let etcd_ca = write_pair(dir, "etcd/ca", &etcd_ca_cert, &etcd_ca_key)?;
    let etcd_issuer = Issuer {
        cert: &etcd_ca_cert,
        key: &etcd_ca_key,
    };
    let etcd_server = etcd_issuer.leaf(
        dir,
        "etcd/server",
        "etcd",
        None,
        // The machine's own names too: publish takes snapshots over the network.
        ["127.0.0.1", "localhost"]
            .map(String::from)
            .into_iter()
            .chain(extra_names.iter().cloned())
            .collect(),
        // Client too, as kubeadm's: etcd's gRPC gateway dials etcd itself with this pair.
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let etcd_client = |file: &str, cn: &str| {
        etcd_issuer.leaf(
            dir,
            file,
            cn,
            None,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    };
    let apiserver_etcd_client = etcd_client("apiserver-etcd-client", "kube-apiserver-etcd-client")?;
    let etcd_snapshot_client = etcd_client("etcd/snapshot-client", "diskless-publish")?;

    Ok(Pki {
        ca,
        ca_pem,
        apiserver,
        apiserver_kubelet_client,
        admin,
        controller_manager,
        scheduler,
        sa_key,
        sa_pub,
        etcd_ca,
        etcd_server,
        apiserver_etcd_client,
        etcd_snapshot_client,
    })
}

/// A self-signed CA named `cn`.
fn new_ca(cn: &str) -> crate::error::Result<(Certificate, KeyPair)> {
    let key = new_key()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .with_context(|| format!("self-sign {cn}"))?;
    Ok((cert, key))
}

struct Issuer<'a> {
    cert: &'a Certificate,
    key: &'a KeyPair,
}

impl Issuer<'_> {
    /// A certificate for `cn` (and group `org`) signed by the CA, written as `<file>.crt/.key`.
    fn leaf(
        &self,
        dir: &Path,
        file: &str,
        cn: &str,
        org: Option<&str>,
        sans: Vec<String>,
        usage: Vec<ExtendedKeyUsagePurpose>,
    ) -> crate::error::Result<Pair> {
        let key = new_key()?;
        let mut params =
            CertificateParams::new(sans).with_context(|| format!("parameters for {file}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = org {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usage;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, self.cert, self.key)
            .with_context(|| format!("sign the {file} certificate"))?;
        write_pair(dir, file, &cert, &key)
    }
}

fn new_key() -> crate::error::Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generate an ECDSA P-256 key")
}

fn write_pair(
    dir: &Path,
    file: &str,
    cert: &Certificate,
    key: &KeyPair,
) -> crate::error::Result<Pair> {
    let pair = Pair {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    write_file(&pair.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&pair.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(pair)
}

/// Writes a new file with `mode` from the start: a key is never readable by others, not even
/// between its creation and a chmod.
pub(super) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> crate::error::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// `openssl <args>` output, or None (with a `skipped:` line) without openssl.
    fn openssl(args: &[&str]) -> Option<String> {
        match Command::new("openssl").args(args).output() {
            Err(_) => {
                println!("skipped: openssl not installed, PKI not read back");
                None
            }
            Ok(o) => {
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                Some(String::from_utf8_lossy(&o.stdout).into_owned())
            }
        }
    }

    /// Keys private, the chain verifies, the serving certificate carries every name a client
    /// uses, the admin is in `system:masters`.
    #[test]
    fn a_chain_that_openssl_accepts() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = generate(tmp.path()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for key in [&pki.ca.key, &pki.admin.key, &pki.apiserver.key, &pki.sa_key] {
            assert_eq!(mode(key), 0o600, "{}", key.display());
        }
        assert!(pki.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let ca = s(&pki.ca.cert);
        let Some(ok) = openssl(&[
            "verify",
            "-CAfile",
            &ca,
            &s(&pki.apiserver.cert),
            &s(&pki.admin.cert),
            &s(&pki.apiserver_kubelet_client.cert),
        ]) else {
            return;
        };
        assert_eq!(ok.matches(": OK").count(), 3, "{ok}");
        let text = openssl(&["x509", "-noout", "-text", "-in", &s(&pki.apiserver.cert)]).unwrap();
        for name in [
            "IP Address:10.0.2.100",
            "IP Address:127.0.0.1",
            "IP Address:10.96.0.1",
            "DNS:kubernetes.default.svc.cluster.local",
            "TLS Web Server Authentication",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        let admin = openssl(&["x509", "-noout", "-subject", "-in", &s(&pki.admin.cert)]).unwrap();
        assert!(admin.contains("O = system:masters"), "{admin}");
        let sa = openssl(&["pkey", "-pubin", "-noout", "-text", "-in", &s(&pki.sa_pub)]).unwrap();
        assert!(sa.contains("prime256v1"), "{sa}");
    }
}
