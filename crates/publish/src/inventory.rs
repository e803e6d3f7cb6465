//! The lab inventory (TOML): which machine boots which image, with what identity. Like matchbox's
//! groups, matched by MAC, with a default for machines not listed. Documented in
//! `docs/boot-server.md`. Secrets are referenced by file path, never written inline, so the
//! inventory itself can live in version control. It serializes too, so tools (the harness's
//! join check) write inventories through the type, not as TOML text.

use crate::authorized_keys::AuthorizedKeys;
use diskless_builder::words::Words;
use diskless_contract::{cluster, identity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Image booted by machines without a host entry; without it they get the menu.
    #[serde(default)]
    pub default_image: Option<String>,
    /// Seconds the menu waits before booting its default.
    #[serde(default = "default_timeout")]
    pub menu_timeout: u32,
    /// Cluster-wide join material for hosts in `join` mode.
    #[serde(default)]
    pub join: Option<Join>,
    /// SSH public keys for every host (file with one key per line).
    #[serde(default)]
    pub ssh_authorized_keys_file: Option<PathBuf>,
    #[serde(default)]
    pub hosts: Vec<Host>,
    /// The host that runs the diskless control plane, and its secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<ControlPlane>,
}

/// `[control_plane]`: one inventory host boots the control-plane image (`diskless build --host
/// --role control-plane`); its node segment carries the cluster's PKI, the components'
/// kubeconfigs and the newest etcd snapshot. Each publish first applies the bootstrap RBAC
/// (with `admin_kubeconfig`) and takes a snapshot through etcd's client API, so a reboot of
/// the control plane loses at most what changed since the last publish (docs/boot-server.md,
/// "Diskless control plane").
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlane {
    /// The `hostname` of the inventory host that runs it (one: a single etcd member).
    pub host: String,
    /// The PKI, by kubeadm's file names (`ca.crt`, `apiserver.key`, `etcd/ca.crt`, ...; the
    /// files of `diskless_contract::controlplane::PKI_FILES`, and `etcd/snapshot-client.*`
    /// for publish's own etcd client).
    pub pki_dir: PathBuf,
    /// The address the API server advertises; default: its default route's interface's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_address: Option<String>,
    /// Where publish reaches etcd's client API: `https://<control plane>:2379`.
    pub etcd_endpoint: String,
    /// Where publish keeps the verified snapshots (mode 0600: they hold every Secret of the
    /// cluster); the newest goes into the node segment.
    pub snapshot_dir: PathBuf,
    /// A kubeconfig with the right to create ClusterRoleBindings (the admin's), to apply the
    /// bootstrap RBAC nodes join with; without it, the RBAC is left to the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_kubeconfig: Option<PathBuf>,
    /// The programs to run; default `etcdctl`, `etcdutl` and `kubectl` on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcdctl: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcdutl: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl: Option<PathBuf>,
}

impl ControlPlane {
    /// How many verified snapshots publish keeps in `snapshot_dir`.
    pub const KEEP_SNAPSHOTS: usize = 8;

    /// Whether `host` is the control-plane host.
    pub fn runs_on(&self, host: &Host) -> bool {
        self.host == host.hostname
    }

    /// The `etcdctl` to run: the configured one, else the name on PATH.
    pub fn etcdctl_program(&self) -> PathBuf {
        program(&self.etcdctl, "etcdctl")
    }

    /// The `etcdutl` to run: the configured one, else the name on PATH.
    pub fn etcdutl_program(&self) -> PathBuf {
        program(&self.etcdutl, "etcdutl")
    }

    /// The `kubectl` to run: the configured one, else the name on PATH.
    pub fn kubectl_program(&self) -> PathBuf {
        program(&self.kubectl, "kubectl")
    }
}

/// The configured program, else its name on PATH.
fn program(configured: &Option<PathBuf>, name: &str) -> PathBuf {
    configured.clone().unwrap_or_else(|| PathBuf::from(name))
}

fn default_timeout() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// `https://<address>:6443`
    pub api_server: String,
    /// PEM file of the cluster CA.
    pub ca_file: PathBuf,
    /// File holding a bootstrap token (`abcdef.0123456789abcdef`) every join host boots with;
    /// it must outlive every reboot. Or, instead, `mint_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Mint a short-lived token per join host at each publish (docs/boot-server.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint_tokens: Option<MintTokens>,
    /// The cluster DNS Service's address(es), for pods' resolv.conf (`10.96.0.10`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    /// The cluster domain (`cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
}

/// `[join.mint_tokens]`: each publish creates one bootstrap token per join host through the
/// API server, valid for `ttl_seconds`; run publish again (from a timer) well within that.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MintTokens {
    /// A kubeconfig allowed to create Secrets in `kube-system`.
    pub admin_kubeconfig: PathBuf,
    pub ttl_seconds: u64,
    /// The kubectl to run; default `kubectl` on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubectl: Option<PathBuf>,
}

impl MintTokens {
    /// The shortest TTL accepted: a node must have time to boot with its token.
    pub const MIN_TTL_SECONDS: u64 = 30;
}

pub use diskless_contract::node::KubeletMode;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// `52:54:00:12:34:56` (colons or dashes, any case).
    pub mac: String,
    pub hostname: String,
    pub image: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<String>,
    /// Appended to the image's kernel command line.
    #[serde(default)]
    pub kernel_args: String,
    #[serde(default)]
    pub kubelet_mode: KubeletMode,
    /// Directory of SSH host keys (`ssh_host_*_key` and `.pub`) for this machine.
    #[serde(default)]
    pub ssh_host_keys_dir: Option<PathBuf>,
    /// This machine's pod range (`10.244.3.0/24`), for clusters whose controller-manager does
    /// not allocate them (`--allocate-node-cidrs`); unique per host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
}

impl Host {
    /// A host with what a file that names only these four gets: no labels, taints, kernel
    /// arguments or SSH host keys, and a pod range from the controller-manager.
    pub fn new(mac: &str, hostname: &str, image: &str, kubelet_mode: KubeletMode) -> Host {
        Host {
            mac: mac.to_string(),
            hostname: hostname.to_string(),
            image: image.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            kernel_args: String::new(),
            kubelet_mode,
            ssh_host_keys_dir: None,
            pod_cidr: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {cause}")]
    Read {
        path: PathBuf,
        /// Not `source`: the message already holds it, and `{:#}` would print it twice.
        cause: std::io::Error,
    },
    #[error("invalid inventory {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("inventory {path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

impl Inventory {
    /// The TOML an inventory file holds.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an inventory always serializes")
    }

    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = diskless_builder::store::read_regular_text(path).map_err(|cause| {
            InventoryError::Read {
                path: path.to_owned(),
                cause,
            }
        })?;
        Inventory::parse(&text, path)
    }

    /// Parses and checks inventory text as if read from `path` (secret files are named relative
    /// to it; messages name it): `load` without the read, for tests and the fuzzer.
    pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let mut inv: Inventory = toml::from_str(text).map_err(|e| InventoryError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        // Secret files are named relative to the inventory.
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(j) = &mut inv.join {
            rebase(&mut j.ca_file);
            if let Some(t) = &mut j.token_file {
                rebase(t);
            }
            if let Some(m) = &mut j.mint_tokens {
                rebase(&mut m.admin_kubeconfig);
            }
        }
        if let Some(k) = &mut inv.ssh_authorized_keys_file {
            rebase(k);
        }
        if let Some(c) = &mut inv.control_plane {
            rebase(&mut c.pki_dir);
            rebase(&mut c.snapshot_dir);
            if let Some(a) = &mut c.admin_kubeconfig {
                rebase(a);
            }
        }
        for h in &mut inv.hosts {
            if let Some(d) = &mut h.ssh_host_keys_dir {
                rebase(d);
            }
        }
        inv.check(path)?;
        Ok(inv)
    }

    /// Checks everything that does not need the published images.
    pub fn check(&mut self, path: &Path) -> Result<(), InventoryError> {
        let invalid = |(field, message): Broken| InventoryError::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        menu_timeout(self.menu_timeout).map_err(invalid)?;
        if let Some(j) = &self.join {
            check_join(j).map_err(invalid)?;
        }
        let has_join = self.join.is_some();
        let mut seen = Seen::default();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            check_host(i, h, has_join, &mut seen).map_err(invalid)?;
        }
        if let Some(c) = &self.control_plane {
            check_control_plane(c, &self.hosts).map_err(invalid)?;
        }
        Ok(())
    }

    /// The checked keys of `ssh_authorized_keys_file`, if the inventory (read from `path`)
    /// names one: read and checked before anything is published.
    pub fn authorized_keys(&self, path: &Path) -> Result<Option<AuthorizedKeys>, InventoryError> {
        let Some(file) = &self.ssh_authorized_keys_file else {
            return Ok(None);
        };
        let invalid = |message: String| InventoryError::Invalid {
            path: path.to_owned(),
            field: "ssh_authorized_keys_file".into(),
            message,
        };
        let text = diskless_builder::store::read_regular_text(file)
            .map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))?;
        AuthorizedKeys::parse(&text)
            .map(Some)
            .map_err(|why| invalid(format!("{}: {why}", file.display())))
    }

    /// Checks that every host (and the default) names an image that will be published.
    pub fn check_images(
        &self,
        path: &Path,
        images: &BTreeSet<String>,
    ) -> Result<(), InventoryError> {
        let known = || images.iter().cloned().collect::<Vec<_>>().join(", ");
        for (i, h) in self.hosts.iter().enumerate() {
            if !images.contains(&h.image) {
                return Err(InventoryError::Invalid {
                    path: path.to_owned(),
                    field: format!("hosts[{i}].image"),
                    message: format!(
                        "host {} boots image {:?}, which is neither being published nor already published (known: {})",
                        h.hostname,
                        h.image,
                        known()
                    ),
                });
            }
        }
        if let Some(d) = &self.default_image {
            if !images.contains(d) {
                return Err(InventoryError::Invalid {
                    path: path.to_owned(),
                    field: "default_image".into(),
                    message: format!("{d:?} is not published (known: {})", known()),
                });
            }
        }
        Ok(())
    }
}

/// A broken rule of `Inventory::check`: the field, and what is wrong with it.
type Broken = (String, String);

/// iPXE's `choose --timeout` takes milliseconds in a 32-bit `unsigned long` on BIOS.
fn menu_timeout(seconds: u32) -> Result<(), Broken> {
    if seconds > 86_400 {
        return Err((
            "menu_timeout".into(),
            format!("{seconds} s is over a day (86400 s); iPXE cannot wait that long"),
        ));
    }
    Ok(())
}

/// `[join]`: each field by its rule; the first broken one is reported.
fn check_join(j: &Join) -> Result<(), Broken> {
    identity::api_server(&j.api_server)
        .map_err(|why| ("join.api_server".into(), String::from(why)))?;
    join_token(j)?;
    for (i, d) in j.cluster_dns.iter().enumerate() {
        cluster::dns_server(d)
            .map_err(|why| (format!("join.cluster_dns[{i}]"), String::from(why)))?;
    }
    if let Some(d) = &j.cluster_domain {
        cluster::domain(d).map_err(|why| ("join.cluster_domain".into(), String::from(why)))?;
    }
    Ok(())
}

/// Join hosts get their token one way, and a minted one lives long enough to boot with.
fn join_token(j: &Join) -> Result<(), Broken> {
    match (&j.token_file, &j.mint_tokens) {
        (Some(_), None) => Ok(()),
        (None, Some(m)) if m.ttl_seconds < MintTokens::MIN_TTL_SECONDS => Err((
            "join.mint_tokens.ttl_seconds".into(),
            format!(
                "{} s is too short for a node to boot with its token (at least {})",
                m.ttl_seconds,
                MintTokens::MIN_TTL_SECONDS
            ),
        )),
        (None, Some(_)) => Ok(()),
        (Some(_), Some(_)) | (None, None) => Err((
            "join".into(),
            "give either token_file (one token every host boots with) or \
             [join.mint_tokens] (a short-lived token per host and publish)"
                .into(),
        )),
    }
}

/// What the hosts checked so far use, where no two hosts may share a value.
#[derive(Default)]
struct Seen {
    macs: BTreeSet<String>,
    hostnames: BTreeSet<String>,
    pod_cidrs: BTreeSet<String>,
}

/// `hosts[i]`: each field by its rule, the first broken one reported; the MAC normalized in place.
fn check_host(i: usize, h: &mut Host, has_join: bool, seen: &mut Seen) -> Result<(), Broken> {
    h.mac = host_mac(i, &h.mac, &mut seen.macs)?;
    host_hostname(i, &h.hostname, &mut seen.hostnames)?;
    host_kubelet_mode(i, h, has_join)?;
    for (k, v) in &h.labels {
        identity::label(k, v)
            .map_err(|why| (format!("hosts[{i}].labels.{k:?}"), String::from(why)))?;
    }
    for (j, t) in h.taints.iter().enumerate() {
        identity::taint(t).map_err(|why| (format!("hosts[{i}].taints[{j}]"), String::from(why)))?;
    }
    if let Some(c) = &h.pod_cidr {
        host_pod_cidr(i, c, &mut seen.pod_cidrs)?;
    }
    // Written into the host's iPXE entry: the iPXE rule (`diskless_builder::words`).
    Words::new(h.kernel_args.clone()).map_err(|why| (format!("hosts[{i}].kernel_args"), why))?;
    Ok(())
}

/// A valid MAC, one entry per machine; returns it normalized (the form entries are named by).
fn host_mac(i: usize, mac: &str, macs: &mut BTreeSet<String>) -> Result<String, Broken> {
    let field = format!("hosts[{i}].mac");
    let normal = identity::mac(mac).map_err(|why| (field.clone(), String::from(why)))?;
    if !macs.insert(normal.clone()) {
        return Err((
            field,
            format!("{mac} is listed twice; each machine has one entry"),
        ));
    }
    Ok(normal)
}

/// A hostname the kubelet takes, and no two hosts with one name.
fn host_hostname(i: usize, hostname: &str, names: &mut BTreeSet<String>) -> Result<(), Broken> {
    let field = format!("hosts[{i}].hostname");
    identity::hostname(hostname).map_err(|why| (field.clone(), String::from(why)))?;
    if !names.insert(hostname.to_string()) {
        return Err((field, format!("{hostname} is used by two hosts")));
    }
    Ok(())
}

/// A join host needs the `[join]` section it joins with.
fn host_kubelet_mode(i: usize, h: &Host, has_join: bool) -> Result<(), Broken> {
    if h.kubelet_mode == KubeletMode::Join && !has_join {
        return Err((
            format!("hosts[{i}].kubelet_mode"),
            "join mode needs a [join] section with api_server, ca_file and token_file or mint_tokens"
                .into(),
        ));
    }
    Ok(())
}

/// A valid pod range, given to one host only: their pods' addresses would collide.
fn host_pod_cidr(i: usize, cidr: &str, cidrs: &mut BTreeSet<String>) -> Result<(), Broken> {
    let field = format!("hosts[{i}].pod_cidr");
    cluster::pod_cidr(cidr).map_err(|why| (field.clone(), String::from(why)))?;
    if !cidrs.insert(cidr.to_string()) {
        return Err((
            field,
            format!("{cidr} is given to two hosts; their pods' addresses would collide"),
        ));
    }
    Ok(())
}

/// `[control_plane]`: each field by its rule; the first broken one is reported.
fn check_control_plane(c: &ControlPlane, hosts: &[Host]) -> Result<(), Broken> {
    control_plane_host(c, hosts)?;
    diskless_contract::controlplane::ControlPlaneNode {
        advertise_address: c.advertise_address.clone(),
    }
    .check()?;
    etcd_endpoint(&c.etcd_endpoint).map_err(|why| ("control_plane.etcd_endpoint".into(), why))?;
    Ok(())
}

/// The control plane runs on an inventory host, one that runs no kubelet to join with.
fn control_plane_host(c: &ControlPlane, hosts: &[Host]) -> Result<(), Broken> {
    let Some(host) = hosts.iter().find(|h| c.runs_on(h)) else {
        return Err((
            "control_plane.host".into(),
            format!("{:?} is not the hostname of any [[hosts]] entry", c.host),
        ));
    };
    if host.kubelet_mode == KubeletMode::Join {
        return Err((
            "control_plane.host".into(),
            format!(
                "{} is in join mode; the control-plane image runs no kubelet (leave kubelet_mode standalone)",
                c.host
            ),
        ));
    }
    Ok(())
}

/// One etcd client URL, `https://<host>:<port>`: etcdctl reads a comma as a second endpoint.
fn etcd_endpoint(url: &str) -> Result<(), String> {
    match url.strip_prefix("https://") {
        Some(rest)
            if !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/,@?#".contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{url:?} is not one etcd client URL; write it as https://<control plane>:2379"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("inventory.toml");
        std::fs::write(&p, text).unwrap();
        Inventory::load(&p)
    }

    #[test]
    fn duplicates_and_bad_macs_are_refused() {
        let host = |mac: &str, name: &str| {
            format!("[[hosts]]\nmac = \"{mac}\"\nhostname = \"{name}\"\nimage = \"worker\"\n")
        };
        let e = parse(&(host("52:54:00:00:00:01", "a") + &host("52-54-00-00-00-01", "b")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts[1].mac") && e.contains("twice"), "{e}");
        let e = parse(&(host("52:54:00:00:00:01", "a") + &host("52:54:00:00:00:02", "a")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts[1].hostname"), "{e}");
        let e = parse(&host("52:54:00:00:01", "a")).unwrap_err().to_string();
        assert!(e.contains("hosts[0].mac") && e.contains("not a MAC"), "{e}");
        let e = parse("hots = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn authorized_keys_errors_name_the_inventory_field_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("inventory.toml");
        std::fs::write(&p, "ssh_authorized_keys_file = \"keys.pub\"\n").unwrap();
        let inv = Inventory::load(&p).unwrap();
        let e = inv.authorized_keys(&p).unwrap_err().to_string();
        assert!(
            e.contains("inventory.toml: ssh_authorized_keys_file: cannot read")
                && e.contains("keys.pub"),
            "{e}"
        );
        std::fs::write(
            d.path().join("keys.pub"),
            "# admins\nno-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
        )
        .unwrap();
        let e = inv.authorized_keys(&p).unwrap_err().to_string();
        assert!(
            e.contains("inventory.toml: ssh_authorized_keys_file: ")
                && e.contains("keys.pub: line 2: options before the key (\"no-pty\")"),
            "{e}"
        );
        assert!(Inventory::parse("", &p)
            .unwrap()
            .authorized_keys(&p)
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_control_plane_names_a_standalone_host_and_one_https_endpoint() {
        let inv = |host: &str, mode: &str, endpoint: &str, address: &str| {
            format!(
                "[[hosts]]\nmac = \"52:54:00:00:00:01\"\nhostname = \"cp\"\nimage = \"cp\"\nkubelet_mode = \"{mode}\"\n\
                 [join]\napi_server = \"https://10.0.0.1:6443\"\nca_file = \"ca.crt\"\ntoken_file = \"t\"\n\
                 [control_plane]\nhost = \"{host}\"\npki_dir = \"pki\"\netcd_endpoint = \"{endpoint}\"\n\
                 snapshot_dir = \"snapshots\"\nadvertise_address = \"{address}\"\n"
            )
        };
        let ok = parse(&inv(
            "cp",
            "standalone",
            "https://10.0.0.1:2379",
            "10.0.0.1",
        ))
        .unwrap();
        let cp = ok.control_plane.unwrap();
        assert!(cp.pki_dir.is_absolute() && cp.snapshot_dir.ends_with("snapshots"));
        for (text, field, why) in [
            (
                inv("cq", "standalone", "https://a:2379", "10.0.0.1"),
                "control_plane.host",
                "not the hostname",
            ),
            (
                inv("cp", "join", "https://a:2379", "10.0.0.1"),
                "control_plane.host",
                "runs no kubelet",
            ),
            (
                inv("cp", "standalone", "http://a:2379", "10.0.0.1"),
                "control_plane.etcd_endpoint",
                "https://",
            ),
            (
                inv(
                    "cp",
                    "standalone",
                    "https://a:2379,https://b:2379",
                    "10.0.0.1",
                ),
                "control_plane.etcd_endpoint",
                "one etcd",
            ),
            (
                inv("cp", "standalone", "https://a:2379", "cp.lab"),
                "control_plane.advertise_address",
                "not an IP",
            ),
        ] {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(why), "{e}");
        }
    }

    /// Labels and taints the kubelet would refuse at boot are refused at publish.
    #[test]
    fn labels_and_taints_the_kubelet_refuses() {
        let host = |extra: &str| {
            format!("[[hosts]]\nmac = \"52:54:00:00:00:01\"\nhostname = \"a\"\nimage = \"w\"\n{extra}\n")
        };
        let ok = host(
            "labels = { zone = \"lab-a\", \"node.kubernetes.io/pool\" = \"ci\", \"topology.kubernetes.io/zone\" = \"z1\" }\n\
             taints = [\"dedicated=ci:NoSchedule\", \"node-role.kubernetes.io/control-plane:NoSchedule\"]",
        );
        parse(&ok).unwrap();
        for (extra, field, why) in [
            (
                "labels = { \"node-role.kubernetes.io/worker\" = \"\" }",
                "labels.\"node-role.kubernetes.io/worker\"",
                "refuses",
            ),
            (
                "labels = { \"bad key\" = \"x\" }",
                "labels.\"bad key\"",
                "not a label key",
            ),
            (
                "labels = { zone = \"a,b\" }",
                "labels.\"zone\"",
                "value \"a,b\"",
            ),
            (
                "taints = [\"dedicated=ci:NoSchedul\"]",
                "taints[0]",
                "effect",
            ),
            (
                "taints = [\"dedicated=ci\"]",
                "taints[0]",
                "expected key=value:Effect",
            ),
        ] {
            let e = parse(&host(extra)).unwrap_err().to_string();
            assert!(
                e.contains(&format!("hosts[0].{field}")) && e.contains(why),
                "{extra}: {e}"
            );
        }
    }
}
