//! A throwaway Kubernetes control plane on the host's loopback, for guests to join: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler from the pinned stack
//! (`diskless_kube::stack`), a fresh PKI (`pki.rs`), a bootstrap token with kubeadm's RBAC
//! (`bootstrap.rs`), node CIDR allocation, and a way back from the API server to the guests'
//! kubelets (`kubelet_proxy.rs`). Everything lives in one temporary directory and dies with
//! the [`HostControlPlane`]: dropping it stops every process it started and removes the directory.
//!
//! A guest reaches the API server at `https://10.0.2.100:6443` ([`GUEST_API_ADDR`],
//! [`GUEST_API_PORT`]; the serving certificate names that address) through one more slirp
//! `guestfwd` (a `cmd:` forward, one `nc` per connection: a plain TCP guestfwd carries only
//! one, and the kubelet opens several) to 127.0.0.1:[`HostControlPlane::api_port`]. The API server
//! reaches a guest's kubelet through a `hostfwd` from 127.0.0.1:[`HostControlPlane::kubelet_port_for`]
//! to the guest's [`KUBELET_PORT`].

mod bootstrap;
mod components;
mod kubelet_proxy;

pub use super::network::*;
pub use super::pki::{self, server_names};
pub use bootstrap::BOOTSTRAP_GROUP;

use super::side::ControlPlaneSide;
use crate::error::{bail, Context};
use crate::machine::daemon::{output_within, Process};
use crate::machine::ports::free_ports;
use bootstrap::Token;
use components::{Layout, Ports};
use diskless_publish::kubeconfig::{ClusterCa, Credentials, Kubeconfig};
use kubelet_proxy::KubeletProxy;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long one kubectl call made by the harness may take.
const KUBECTL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    /// How long the bootstrap token is valid (its Secret's `expiration`); the
    /// controller-manager's tokencleaner deletes it after that.
    pub token_ttl: Duration,
    /// The API server's host loopback port; `None` picks a free one. (The `kubernetes`
    /// Service's endpoint carries this port, so a guest that must use the Service needs it
    /// forwarded too.)
    pub api_port: Option<u16>,
    /// The bound on each wait in `start` and `start_apiserver` (a port, `/readyz`, the
    /// controllers), with what was last seen in the error.
    pub timeout: Duration,
    /// A lab network's address of this host (a bridge in a network namespace the caller
    /// entered, see [`crate::machine::netns`]): the API server listens there too, advertises it, and
    /// its certificate names it; guests reach it directly, no slirp forward. `None`: slirp.
    pub lab_address: Option<Ipv4Addr>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            token_ttl: Duration::from_secs(3600),
            api_port: None,
            timeout: Duration::from_secs(60),
            lab_address: None,
        }
    }
}

/// Seconds since the spawn of the first process, at each step of `start`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimes {
    /// etcd accepts connections.
    pub etcd: f64,
    /// The API server's `/readyz` answers `ok`.
    pub apiserver_ready: f64,
    /// The token and kubeadm's RBAC are applied.
    pub rbac_applied: f64,
    /// The controller-manager's controllers run (the `default` ServiceAccount and the
    /// `kube-root-ca.crt` ConfigMap exist) and the scheduler listens: `start` returns.
    pub controllers_ready: f64,
}

pub struct HostControlPlane {
    layout: Layout,
    /// The bootstrap token, `<id>.<secret>`.
    token: String,
    kubectl: PathBuf,
    apiserver_bin: PathBuf,
    timeout: Duration,
    /// In start order; stopped in reverse.
    procs: Vec<Process>,
    proxy: KubeletProxy,
    times: StartTimes,
    /// Last: removed after the processes that use it have stopped.
    dir: tempfile::TempDir,
}

impl HostControlPlane {
    /// Starts everything and returns once a node could join: the API server is ready, the
    /// token and RBAC are in, the controllers run. Err names the step and, if a process
    /// exited, quotes the end of its log; what was started is stopped again.
    pub fn start(opts: Options) -> crate::error::Result<HostControlPlane> {
        // A missing stack is this machine's to fix (scripts/install-deps), not the run's.
        let bin = |name: &str| {
            diskless_kube::stack::binary(name)
                .map_err(|e| crate::error::Error::environment(format!("{e:#}")))
        };
        let (etcd, apiserver_bin, cm, scheduler, kubectl) = (
            bin("etcd")?,
            bin("kube-apiserver")?,
            bin("kube-controller-manager")?,
            bin("kube-scheduler")?,
            bin("kubectl")?,
        );
        let dir = crate::machine::process::temp_dir("diskless-controlplane-")
            .context("cannot create the control plane's directory")?;
        let extra_names: Vec<String> = opts.lab_address.iter().map(|a| a.to_string()).collect();
        let pki = pki::generate_with(&dir.path().join("pki"), &extra_names)?;
        let free = free_ports(5)?;
        let ports = Ports {
            etcd_client: free[0],
            etcd_peer: free[1],
            api: opts.api_port.unwrap_or(free[2]),
            controller_manager: free[3],
            scheduler: free[4],
        };
        let layout = Layout::new(dir.path(), pki, ports, opts.lab_address);
        std::fs::create_dir_all(&layout.logs)?;
        write_kubeconfigs(&layout)?;
        let proxy = KubeletProxy::start(&layout.kubelet_proxy, &layout.log("kubelet-proxy"))?;
        let egress = serde_json::to_vec_pretty(&proxy.egress_config())?;
        pki::write_file(&layout.egress_config, &egress, 0o644)?;

        // From here on a failure drops `cp`, which stops what was started.
        let token = Token::generate().context("cannot generate a bootstrap token")?;
        let mut cp = HostControlPlane {
            layout,
            token: token.bearer(),
            kubectl,
            apiserver_bin,
            timeout: opts.timeout,
            procs: Vec::new(),
            proxy,
            times: StartTimes::default(),
            dir,
        };
        let t0 = Instant::now();
        let since = || t0.elapsed().as_secs_f64();
        cp.spawn("etcd", &etcd, components::etcd(&cp.layout))?;
        let port = cp.layout.ports.etcd_client;
        cp.wait("etcd to accept connections", |_| tcp_open(port))?;
        cp.times.etcd = since();

        cp.spawn_apiserver()?;
        cp.wait("the API server's /readyz", HostControlPlane::readyz)?;
        cp.times.apiserver_ready = since();

        cp.spawn(
            "kube-controller-manager",
            &cm,
            components::controller_manager(&cp.layout),
        )?;
        cp.spawn(
            "kube-scheduler",
            &scheduler,
            components::scheduler(&cp.layout),
        )?;
        let objects = bootstrap::objects(&token, opts.token_ttl)?;
        // Server-side: a client-side apply would also copy the Secret, token included, into
        // its last-applied-configuration annotation.
        cp.kubectl_input(
            &["apply", "--server-side", "-f", "-"],
            &serde_json::to_vec(&objects)?,
        )
        .context("cannot apply the bootstrap token and kubeadm's RBAC")?;
        cp.times.rbac_applied = since();

        cp.wait("the controller-manager's controllers", |cp| {
            cp.kubectl_probe(&[
                "get",
                "--namespace=default",
                "serviceaccount/default",
                "configmap/kube-root-ca.crt",
                "--output=name",
            ])
            .map(drop)
        })?;
        let port = cp.layout.ports.scheduler;
        cp.wait("the scheduler to listen", |_| tcp_open(port))?;
        cp.times.controllers_ready = since();
        Ok(cp)
    }

    /// Stops every process, in reverse start order (etcd last). Dropping does the same.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            p.stop();
        }
    }

    /// Stops the API server alone (etcd, the controllers and the proxy keep running), e.g. to
    /// see how joined nodes ride out an API server outage.
    pub fn stop_apiserver(&mut self) {
        if let Some(i) = self.procs.iter().position(|p| p.name == "kube-apiserver") {
            self.procs.remove(i).stop();
        }
    }

    /// Starts the API server again, with the same flags, port and certificates, and waits for
    /// its `/readyz` (the RBAC objects and the token are in etcd already).
    pub fn start_apiserver(&mut self) -> crate::error::Result<()> {
        if self.procs.iter().any(|p| p.name == "kube-apiserver") {
            bail!("the API server is running already");
        }
        self.spawn_apiserver()?;
        self.wait(
            "the restarted API server's /readyz",
            HostControlPlane::readyz,
        )
    }

    /// The kubeconfig with `system:masters` rights (on the host's loopback).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.layout.admin_kubeconfig
    }

    /// The CA certificate (PEM) that signed the API server's certificate and signs the
    /// nodes' client certificates.
    pub fn ca_pem(&self) -> &[u8] {
        self.layout.pki.ca_pem.as_bytes()
    }

    pub fn ca_path(&self) -> &Path {
        &self.layout.pki.ca.cert
    }

    /// The bootstrap token, `<id>.<secret>`, valid for `Options::token_ttl`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The API server's port on the host's 127.0.0.1.
    pub fn api_port(&self) -> u16 {
        self.layout.ports.api
    }

    /// `https://127.0.0.1:<api_port>`: the API server from the host.
    pub fn host_api_server(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port())
    }

    /// `https://10.0.2.100:6443`: the API server from a guest with the guestfwd; on a lab
    /// network `https://<lab address>:<api_port>`.
    pub fn guest_api_server(&self) -> String {
        match self.layout.lab_address {
            None => format!("https://{GUEST_API_ADDR}:{GUEST_API_PORT}"),
            Some(a) => format!("https://{a}:{}", self.api_port()),
        }
    }

    /// A kubelet's bootstrap kubeconfig: the bootstrap token for `server` (the guest's or the
    /// host's URL), trusting `ca`.
    pub fn bootstrap_kubeconfig(&self, server: &str, ca: ClusterCa) -> Kubeconfig {
        Kubeconfig::single(
            server,
            ca,
            "kubelet-bootstrap",
            Credentials {
                token: Some(self.token.clone()),
                ..Default::default()
            },
        )
    }

    /// A free host loopback port from which the kubelet proxy now routes the API server's
    /// connections for `node` (logs, exec, port-forward): forward it to the guest's
    /// [`KUBELET_PORT`] with slirp's `hostfwd=tcp:127.0.0.1:<port>-:10250`. The proxy dials it
    /// from 127.0.0.1, which slirp needs (field notes).
    pub fn kubelet_port_for(&self, node: &str) -> crate::error::Result<u16> {
        let port = free_ports(1)?[0];
        self.forward_kubelet(node, port);
        Ok(port)
    }

    /// Routes the API server's connections to `node`'s kubelet to 127.0.0.1:`host_port`.
    pub fn forward_kubelet(&self, node: &str, host_port: u16) {
        self.proxy.route(node, ([127, 0, 0, 1], host_port).into());
    }

    /// On a lab network: the API server reaches `node`'s kubelet at `address`:[`KUBELET_PORT`]
    /// directly (the proxy dials from the namespace it was started in).
    pub fn route_kubelet(&self, node: &str, address: Ipv4Addr) {
        self.proxy
            .route(node, std::net::SocketAddr::from((address, KUBELET_PORT)));
    }

    /// `kubectl --kubeconfig=<admin> <args>` (bounded to 60 s): its standard output, or Err with
    /// its standard error.
    pub fn kubectl(&self, args: &[&str]) -> crate::error::Result<String> {
        self.kubectl_run(args, None)
    }

    /// [`Self::kubectl`] with `input` on standard input (`apply -f -`).
    pub fn kubectl_input(&self, args: &[&str], input: &[u8]) -> crate::error::Result<String> {
        self.kubectl_run(args, Some(input))
    }

    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// The components' logs: `<component>.log` (etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler, kubelet-proxy). Removed with the control plane.
    pub fn log_dir(&self) -> &Path {
        &self.layout.logs
    }

    /// The last `lines` lines of a component's log, for a failing test's message.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        crate::machine::daemon::log_tail(&self.layout.log(component), lines)
    }

    /// The state directory (PKI, kubeconfigs, etcd data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running processes, by component name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.name, p.pid())).collect()
    }

    pub fn start_times(&self) -> StartTimes {
        self.times
    }

    fn spawn(
        &mut self,
        name: &'static str,
        bin: &Path,
        args: Vec<String>,
    ) -> crate::error::Result<()> {
        let p = Process::spawn(name, bin, &args, &self.layout.log(name), grace(name))?;
        self.procs.push(p);
        Ok(())
    }

    fn spawn_apiserver(&mut self) -> crate::error::Result<()> {
        let bin = self.apiserver_bin.clone();
        self.spawn("kube-apiserver", &bin, components::apiserver(&self.layout))
    }

    /// Polls `probe` every 100 ms until it succeeds, for at most `Options::timeout`; fails
    /// at once if a process has exited.
    fn wait<T>(
        &mut self,
        what: &str,
        mut probe: impl FnMut(&HostControlPlane) -> Result<T, String>,
    ) -> crate::error::Result<T> {
        let deadline = Instant::now() + self.timeout;
        loop {
            for p in &mut self.procs {
                p.check()
                    .with_context(|| format!("while waiting for {what}"))?;
            }
            let last = match probe(self) {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {} s; last: {last} (logs in {})",
                    self.timeout.as_secs(),
                    self.layout.logs.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn readyz(&self) -> Result<(), String> {
        let out = self.kubectl_probe(&["get", "--raw=/readyz", "--request-timeout=5s"])?;
        if out.trim() == "ok" {
            Ok(())
        } else {
            Err(format!("/readyz said {out:?}"))
        }
    }

    /// A kubectl call whose failure is an expected state while waiting: Err is its last line.
    fn kubectl_probe(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl(args).map_err(|e| {
            let e = format!("{e:#}");
            e.lines().last().unwrap_or_default().to_string()
        })
    }

    fn kubectl_run(&self, args: &[&str], input: Option<&[u8]>) -> crate::error::Result<String> {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg(format!(
            "--kubeconfig={}",
            self.layout.admin_kubeconfig.display()
        ))
        .args(args);
        let out = output_within(cmd, input, KUBECTL_LIMIT)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("kubectl printed non-UTF-8")
    }
}

impl ControlPlaneSide for HostControlPlane {
    fn api_server(&self) -> String {
        self.guest_api_server()
    }
    fn admin_kubeconfig(&self) -> &Path {
        HostControlPlane::admin_kubeconfig(self)
    }
    fn ca_pem(&self) -> &[u8] {
        HostControlPlane::ca_pem(self)
    }
    fn kubectl(&self) -> &Path {
        self.kubectl_path()
    }
    fn node_address(&self, node: &str, address: Ipv4Addr) {
        self.route_kubelet(node, address);
    }
}

impl Drop for HostControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long a component gets between SIGTERM and SIGKILL. The API server's graceful shutdown
/// waits for open watches (the controllers', the kubelets') for up to its request timeout,
/// 60 s, and a throwaway has nothing to drain: after 2 s it is killed, which also makes
/// `stop_apiserver` an abrupt outage, as a crash would be. The others exit in well under a
/// second.
fn grace(component: &str) -> Duration {
    match component {
        "kube-apiserver" => Duration::from_secs(2),
        _ => Duration::from_secs(5),
    }
}

/// The admin's, the controller-manager's and the scheduler's kubeconfigs: client
/// certificates against the API server on the host's loopback.
fn write_kubeconfigs(l: &Layout) -> crate::error::Result<()> {
    let server = format!("https://127.0.0.1:{}", l.ports.api);
    let ca = || ClusterCa::File(l.pki.ca.cert.display().to_string());
    for (path, user, pair) in [
        (&l.admin_kubeconfig, "kubernetes-admin", &l.pki.admin),
        (
            &l.controller_manager_kubeconfig,
            "system:kube-controller-manager",
            &l.pki.controller_manager,
        ),
        (
            &l.scheduler_kubeconfig,
            "system:kube-scheduler",
            &l.pki.scheduler,
        ),
    ] {
        let k = Kubeconfig::single(
            &server,
            ca(),
            user,
            Credentials {
                client_certificate: Some(pair.cert.display().to_string()),
                client_key: Some(pair.key.display().to_string()),
                ..Default::default()
            },
        );
        pki::write_file(path, &k.to_bytes(), 0o600)?;
    }
    Ok(())
}

fn tcp_open(port: u16) -> Result<(), String> {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
        .map(drop)
        .map_err(|e| format!("127.0.0.1:{port}: {e}"))
}
