//! The join host's lab for `diskless check --join` and `run --join`: a throwaway control plane
//! ([`HostControlPlane`]) on the host's loopback, and the image published to a boot server
//! directory with one inventory host in join mode (its node segment carries the bootstrap
//! kubeconfig and the cluster CA, or, for [`Fault`] tests, spoiled ones). The machine
//! network-boots through `boot.ipxe` and its host entry and reaches the API server at
//! 10.0.2.100:6443 through slirp ([`Lab::forwards`]). The cluster DNS (CoreDNS from the image's
//! preloaded image, [`super::cluster_dns`]) is applied before the machine boots; what the
//! machine then does is followed by [`crate::scenario::join`].

use super::api::Api;
use super::cluster_dns;
use super::control_plane::host::HostControlPlane;
use super::control_plane::network::{CLUSTER_DNS, CLUSTER_DOMAIN, GUEST_API_PORT, KUBELET_PORT};
use crate::error::Context;
use crate::machine::qemu::Forward;
use crate::options::{BootOptions, Fault};
use diskless_publish::inventory::{Host, Inventory, Join, KubeletMode, MintTokens};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The node's name in the join inventory.
pub const HOSTNAME: &str = "diskless-join";

/// A cluster and a boot server with the image published for one join host.
pub struct Lab {
    pub cluster: HostControlPlane,
    /// Holds the inventory, its secrets and the boot server directory.
    pub dir: tempfile::TempDir,
    /// The boot server directory (`diskless publish` output) to boot with `--server`.
    pub server: PathBuf,
    /// What was published, to publish again (a fresh minted token).
    out: PathBuf,
    inventory: PathBuf,
    /// With minted tokens: the one the first publish made (`<id>.<secret>`, expiration).
    pub first_token: Option<(String, String)>,
}

impl Lab {
    /// Starts the control plane and publishes `out` (a build output) for a join host with `mac`.
    pub fn start(out: &Path, image: &str, mac: &str) -> crate::error::Result<Lab> {
        Lab::start_with(out, image, mac, None)
    }

    /// [`Lab::start`], with the join material spoiled by `fault`.
    pub fn start_with(
        out: &Path,
        image: &str,
        mac: &str,
        fault: Option<Fault>,
    ) -> crate::error::Result<Lab> {
        Lab::start_inner(out, image, mac, fault, None)
    }

    /// [`Lab::start`], with the node's bootstrap token minted by publish for `ttl`
    /// (`[join.mint_tokens]`) instead of the cluster's long-lived one.
    pub fn start_minting(
        out: &Path,
        image: &str,
        mac: &str,
        ttl: Duration,
    ) -> crate::error::Result<Lab> {
        Lab::start_inner(out, image, mac, None, Some(ttl))
    }

    fn start_inner(
        out: &Path,
        image: &str,
        mac: &str,
        fault: Option<Fault>,
        mint: Option<Duration>,
    ) -> crate::error::Result<Lab> {
        let mut opts = super::control_plane::host::Options::default();
        if fault == Some(Fault::ExpiredToken) {
            opts.token_ttl = Duration::from_secs(1);
        }
        let cluster =
            HostControlPlane::start(opts).context("cannot start the throwaway control plane")?;
        let dir = crate::machine::process::temp_dir("diskless-join-")
            .context("cannot create the join lab directory")?;
        let ca = dir.path().join("ca.crt");
        match fault {
            Some(Fault::WrongCa) => std::fs::write(&ca, other_ca()?)?,
            _ => std::fs::write(&ca, cluster.ca_pem())?,
        }
        let token = dir.path().join("token");
        let secret = match fault {
            // Same form as a real one, so only the API server can tell.
            Some(Fault::UnknownToken) => "abcdef.0123456789abcdef".to_string(),
            _ => cluster.token().to_string(),
        };
        std::fs::write(&token, format!("{secret}\n"))?;
        let inventory = Inventory {
            default_image: None,
            menu_timeout: 5,
            join: Some(Join {
                api_server: cluster.guest_api_server(),
                ca_file: ca,
                token_file: mint.is_none().then_some(token),
                mint_tokens: mint.map(|ttl| MintTokens {
                    admin_kubeconfig: cluster.admin_kubeconfig().to_owned(),
                    ttl_seconds: ttl.as_secs(),
                    kubectl: Some(cluster.kubectl_path().to_owned()),
                }),
                cluster_dns: vec![CLUSTER_DNS.to_string()],
                cluster_domain: Some(CLUSTER_DOMAIN.to_string()),
            }),
            ssh_authorized_keys_file: None,
            // Its pod range comes from the controller-manager (`--allocate-node-cidrs`).
            hosts: vec![Host::new(mac, HOSTNAME, image, KubeletMode::Join)],
            control_plane: None,
        };
        let inventory_path = dir.path().join("lab.toml");
        std::fs::write(&inventory_path, inventory.to_toml())?;
        let server = dir.path().join("server");
        let mut lab = Lab {
            cluster,
            dir,
            server,
            out: out.to_owned(),
            inventory: inventory_path,
            first_token: None,
        };
        lab.publish()
            .context("cannot publish the image for the join host")?;
        if mint.is_some() {
            lab.first_token = lab.minted_tokens()?.into_iter().next();
            if lab.first_token.is_none() {
                crate::error::bail!("publish minted no bootstrap token for {HOSTNAME}");
            }
        }
        // Applied before the node exists: the scheduler places CoreDNS as soon as it registers.
        let dns = serde_json::to_vec(&cluster_dns::objects(HOSTNAME))?;
        lab.api()
            .run(&["apply", "--server-side", "-f", "-"], Some(&dns))
            .map_err(crate::error::Error::lab)
            .context("cannot apply the cluster DNS (CoreDNS) objects")?;
        Ok(lab)
    }

    /// Publishes the image and the inventory to the boot server (again: with minted tokens,
    /// the join host gets a new one).
    pub fn publish(&self) -> crate::error::Result<()> {
        diskless_publish::publish(&diskless_publish::PublishOptions {
            out: self.out.clone(),
            to: self.server.display().to_string(),
            inventory: Some(self.inventory.clone()),
        })
        .context("diskless publish")?;
        Ok(())
    }

    /// The bootstrap tokens publish minted for the join host: (`<id>.<secret>`, expiration),
    /// oldest first.
    pub fn minted_tokens(&self) -> crate::error::Result<Vec<(String, String)>> {
        let api = self.api();
        let list = api
            .get(&[
                "secrets",
                "-n",
                "kube-system",
                "--field-selector",
                "type=bootstrap.kubernetes.io/token",
            ])
            .map_err(crate::error::Error::lab)?
            .unwrap_or_default();
        let description = format!("diskless publish, node {HOSTNAME}");
        let decode = |v: &Value| -> Option<String> {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str()?)
                .ok()?;
            String::from_utf8(bytes).ok()
        };
        let mut tokens: Vec<(String, String)> = list["items"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|s| decode(&s["data"]["description"]).as_deref() == Some(&description))
            .filter_map(|s| {
                let d = &s["data"];
                Some((
                    format!(
                        "{}.{}",
                        decode(&d["token-id"])?,
                        decode(&d["token-secret"])?
                    ),
                    decode(&d["expiration"])?,
                ))
            })
            .collect();
        tokens.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(tokens)
    }

    /// Whether the API server still accepts `bearer` (a request with it alone, no client
    /// certificate): `Err` says how it refused.
    pub fn token_accepted(&self, bearer: &str) -> Result<(), String> {
        let out = crate::machine::process::output(
            Command::new(self.cluster.kubectl_path())
                .env("KUBECONFIG", "/dev/null")
                .arg("--server")
                .arg(self.cluster.host_api_server())
                .arg("--certificate-authority")
                .arg(self.cluster.ca_path())
                .arg("--token")
                .arg(bearer)
                .args(["--request-timeout=5s", "get", "--raw", "/api"]),
        )
        .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Lab {
    /// The guest's way to the API server (10.0.2.100:6443 → the host's loopback port), and the
    /// API server's way back to the node's kubelet for logs and exec (a loopback port the
    /// control plane routes the node's name to → the guest's 10250).
    pub fn forwards(&self) -> crate::error::Result<Vec<Forward>> {
        Ok(vec![
            Forward::ToHost {
                guest_port: GUEST_API_PORT,
                host_port: self.cluster.api_port(),
            },
            // The `kubernetes` Service's endpoint is the advertised address with the API
            // server's own port: pods reach it through kube-proxy's rules.
            Forward::ToHost {
                guest_port: self.cluster.api_port(),
                host_port: self.cluster.api_port(),
            },
            Forward::ToGuest {
                host_port: self.cluster.kubelet_port_for(HOSTNAME)?,
                guest_port: KUBELET_PORT,
            },
        ])
    }

    /// `a`, booting the lab's boot server (as the join host, whose MAC `a` names) instead of OUT.
    pub fn boot_options(&self, a: &BootOptions) -> BootOptions {
        BootOptions {
            out: self.server.clone(),
            server: true,
            ..a.clone()
        }
    }

    /// kubectl with the cluster's admin kubeconfig.
    pub fn api(&self) -> Api {
        Api {
            kubectl: self.cluster.kubectl_path().to_owned(),
            kubeconfig: self.cluster.admin_kubeconfig().to_owned(),
        }
    }
}

/// A CA certificate no one signs with.
fn other_ca() -> crate::error::Result<String> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not-the-cluster-ca");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ok(params.self_signed(&key)?.pem())
}
