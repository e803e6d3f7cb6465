//! The reference worker, resolved from this machine's own packages (Debian 12): how the
//! builder is built and tested without Nix. `diskless plan --host` prints this plan and
//! `diskless build --host` builds it; the Nix modules produce the same shape from store paths.
//!
//! Components, in boot order: `base` (init, busybox, usr-merged layout, /etc), `kernel-modules`,
//! `containerd` (containerd, shim, ctr, runc, iptables-legacy, CNI plugins), `kubelet` when a
//! kubelet binary is given, and `config` last: the generated configuration is its own small segment
//! so that changing it recompresses nothing else. Two preloaded images follow: a busybox-made
//! `pause` under containerd's default sandbox reference, and a busybox test workload.

use anyhow::{bail, Context};
use diskless_builder::ipxe::words::Words;
use diskless_builder::plan::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diskless_kube::images::{COREDNS_REF, PAUSE_REF, WORKLOAD_REF};

/// The kernel modules a worker needs, by what needs them, with the reason: one file that the
/// Nix modules read too (`modules/containerd.nix`, `modules/kubelet.nix`, the images' NIC), so
/// the two plans cannot drift. Load order is computed from the tree (`kmod.rs`).
pub const KERNEL_MODULES_JSON: &str = include_str!("../data/kernel-modules.json");

/// One group of [`KERNEL_MODULES_JSON`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleGroup {
    pub why: String,
    pub modules: Vec<String>,
}

/// Every module of [`KERNEL_MODULES_JSON`], network first, then the container runtime's, then
/// the kubelet's.
pub fn worker_modules() -> Vec<String> {
    ["network", "container-runtime", "kubelet"]
        .iter()
        .flat_map(|g| module_group(g))
        .collect()
}

/// The modules of one group of [`KERNEL_MODULES_JSON`].
pub fn module_group(name: &str) -> Vec<String> {
    let groups: std::collections::BTreeMap<String, ModuleGroup> =
        serde_json::from_str(KERNEL_MODULES_JSON).expect("data/kernel-modules.json is valid");
    groups[name].modules.clone()
}

/// CNI plugins the generated bridge network uses.
const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// Where the container runtime (containerd, its shim, ctr, runc, CNI plugins) comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Runtime {
    /// The pinned stack (`scripts/build-stack`): containerd 2.x, runc 1.5, CNI plugins 1.10.
    #[default]
    Stack,
    /// Debian 12's packages: containerd 1.6.20 (end of life), runc 1.1.5.
    Debian,
}

/// The kubelet the worker runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Kubelet {
    /// The pinned stack's.
    #[default]
    Stack,
    /// This binary (`--kubelet`, `$KUBELET`).
    Path(PathBuf),
    /// None: a containerd-only worker.
    None,
}

/// What the host plan's machine is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostRole {
    /// containerd and a kubelet (`images/worker`).
    #[default]
    Worker,
    /// etcd and the Kubernetes control plane (`control_plane.rs`, `images/control-plane`).
    ControlPlane,
}

#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    pub role: HostRole,
    pub kubelet: Kubelet,
    pub runtime: Runtime,
    /// The node's init binary (default: `diskless-init` beside this executable).
    pub init: Option<PathBuf>,
    /// Kernel image (default: the newest /boot/vmlinuz-* with a matching /lib/modules tree).
    pub kernel: Option<PathBuf>,
    /// Image name.
    pub name: String,
    /// How the large components (containerd, kubelet) travel: `squashfs` (mounted read-only by
    /// the init; less RAM, faster boot) or `cpio` (unpacked by the kernel).
    pub packing: Packing,
    /// The block codec of the squashfs-packed components.
    pub squashfs: SquashfsCompression,
    /// An SSH server (dropbear, Debian's `dropbear-bin`): root, key login only, with the keys
    /// a node's inventory entry gives it (`/root/.ssh/authorized_keys` in its node segment).
    pub ssh: bool,
    /// Pull-through mirrors for images that are not preloaded (containerd's `hosts.toml`).
    pub registry_mirrors: Vec<crate::mirror::RegistryMirror>,
}

/// dropbear, for [`HostOptions::ssh`].
const SSH_FILES: &[(&str, &str)] = &[("/usr/sbin/dropbear", "dropbear-bin")];

/// The SSH server: `-R` makes each host key at the first connection that asks for it, into
/// `/etc/dropbear` on the node's tmpfs root, so no key is ever in the image or shared between
/// nodes (the Nix module `ssh.nix` runs it the same way); `-s` no passwords, `-F -E` in the
/// foreground with its log on stderr (the init's `[sshd]` lines).
fn ssh_service() -> Service {
    Service {
        name: "sshd".into(),
        command: [
            "/usr/sbin/dropbear",
            "-F",
            "-E",
            "-R",
            "-s",
            "-P",
            "/run/dropbear.pid",
            "-p",
            "22",
        ]
        .map(String::from)
        .to_vec(),
        env: BTreeMap::new(),
        ready_path: None,
        condition_path: None,
        restart: true,
        role: None,
    }
}

/// Paths of the host packages every reference worker needs, with the package to install.
const HOST_FILES: &[(&str, &str)] = &[
    ("/bin/busybox", "busybox-static"),
    ("/usr/sbin/xtables-legacy-multi", "iptables"),
    ("/usr/lib/x86_64-linux-gnu/xtables", "iptables"),
];

/// With `Runtime::Debian`, also these.
const DEBIAN_RUNTIME_FILES: &[(&str, &str)] = &[
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
];

/// The runtime's binaries as (source on this machine, path in the image): the stack's go where
/// Debian's would, so the generated configuration is the same for both but the TOML version.
fn runtime_binaries(runtime: Runtime) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut bins: Vec<(&str, String)> = vec![
        ("containerd", "/usr/bin/containerd".into()),
        (
            "containerd-shim-runc-v2",
            "/usr/bin/containerd-shim-runc-v2".into(),
        ),
        ("ctr", "/usr/bin/ctr".into()),
        ("runc", "/usr/sbin/runc".into()),
    ];
    bins.extend(
        CNI_PLUGINS
            .iter()
            .map(|p| (*p, format!("/usr/lib/cni/{p}"))),
    );
    match runtime {
        Runtime::Debian => Ok(bins
            .into_iter()
            .map(|(_, dest)| (PathBuf::from(&dest), dest))
            .collect()),
        Runtime::Stack => {
            bins.push(("crictl", "/usr/bin/crictl".into()));
            bins.into_iter()
                .map(|(name, dest)| Ok((diskless_kube::stack::binary(name)?, dest)))
                .collect()
        }
    }
}

fn find_kernel() -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/boot") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix("vmlinuz-") {
                let modules = PathBuf::from("/lib/modules").join(version);
                if modules.join("modules.dep").exists() {
                    found.push((e.path(), modules));
                }
            }
        }
    }
    found.sort();
    found.pop().context(
        "no kernel found: need /boot/vmlinuz-<version> with /lib/modules/<version>/modules.dep; \
         apt-get install linux-image-amd64, or pass --kernel",
    )
}

fn default_init() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let init = exe.with_file_name("diskless-init");
    if !init.exists() {
        bail!(
            "{} not found: build it (`cargo build --bins`) or pass --init PATH",
            init.display()
        );
    }
    Ok(init)
}

/// Every busybox applet as a symlink in /usr/bin or /usr/sbin (the image is usr-merged).
fn busybox_links() -> anyhow::Result<Vec<SymlinkEntry>> {
    let out = std::process::Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .context("cannot run /bin/busybox --list-full")?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut links = BTreeMap::new();
    for line in list.lines() {
        let Some(applet) = line.rsplit('/').next().filter(|a| !a.is_empty()) else {
            continue;
        };
        let sbin = line.starts_with("sbin/") || line.starts_with("usr/sbin/");
        let (path, target) = if sbin {
            (format!("/usr/sbin/{applet}"), "../bin/busybox")
        } else {
            (format!("/usr/bin/{applet}"), "busybox")
        };
        if applet != "busybox" {
            links.insert(path, target.to_string());
        }
    }
    Ok(links
        .into_iter()
        .map(|(path, target)| SymlinkEntry { path, target })
        .collect())
}

fn gen(dest: &str, contents: impl Into<String>) -> GeneratedEntry {
    GeneratedEntry {
        dest: dest.into(),
        contents: contents.into(),
        mode: None,
    }
}

fn dir(path: &str, mode: u32) -> DirEntry {
    DirEntry {
        path: path.into(),
        mode: Some(Mode(mode)),
    }
}

fn link(path: &str, target: &str) -> SymlinkEntry {
    SymlinkEntry {
        path: path.into(),
        target: target.into(),
    }
}

fn bin(source: &str, dest: Option<&str>) -> BinaryEntry {
    BinaryEntry {
        source: source.into(),
        dest: dest.map(String::from),
    }
}

/// containerd's configuration: everything on the tmpfs root, the preloaded pause image as the
/// sandbox, cgroupfs (no systemd on the node), CNI from /opt/cni/bin. containerd 2.x reads the
/// version 4 layout that 2.3 writes (its CRI plugin split into images and runtime: no
/// migration at boot); Debian's 1.6 reads version 2.
pub fn containerd_config(runtime: Runtime) -> String {
    match runtime {
        Runtime::Stack => format!(
            r#"# Generated by diskless: containerd 2.x, everything on the tmpfs root.
version = 4
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.nri.v1.nri"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_REF}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "/etc/containerd/certs.d"

[plugins.'io.containerd.cri.v1.runtime']
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    conf_template = "{CNI_TEMPLATE_PATH}"
"#
        ),
        Runtime::Debian => format!(
            r#"# Generated by diskless: containerd 1.6, everything on the tmpfs root.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    conf_template = "{CNI_TEMPLATE_PATH}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "/etc/containerd/certs.d"
"#
        ),
    }
}

/// Where containerd finds [`CNI_TEMPLATE`] (outside `/etc/cni/net.d`, which CNI reads).
pub const CNI_TEMPLATE_PATH: &str = "/etc/cni/diskless-bridge.conflist.tmpl";

/// The pod network, as a template containerd fills in with the node's pod range once the
/// kubelet passes it (`UpdateRuntimeConfig`): the range the controller-manager allocated to
/// the Node (or the inventory's `pod_cidr`), or on a standalone node the init's default
/// (`STANDALONE_POD_CIDR`, through the kubelet's `podCIDR`). Nodes of one cluster so get
/// ranges that do not collide; containerd writes `/etc/cni/net.d/10-containerd-net.conflist`.
/// Go template syntax (containerd's `conf_template`), a constant: no value is pasted in here.
/// One file with the Nix modules' (`modules/kubelet.nix` reads it too).
pub const CNI_TEMPLATE: &str = include_str!("../data/cni-bridge.conflist.tmpl");

/// The environment of the Go daemons (containerd, the kubelet, kube-proxy): `GOGC=50`, the heap
/// grows to 1.5x its live data instead of 2x. On the reference worker at 512 MiB with the pod
/// running: 5.3 MB less MemTotal − MemAvailable, the pod 0.07 s later under icount
/// (docs/performance.md). The Nix modules set the same (`modules/containerd.nix`).
fn go_daemon_env() -> BTreeMap<String, String> {
    BTreeMap::from([("GOGC".to_string(), "50".to_string())])
}

/// kube-proxy on a joined node: ClusterIP Services (the `kubernetes` one included) reachable
/// from pods, through iptables rules (legacy iptables, whose modules the kubelet group of
/// `kernel-modules.json` loads). It talks to the API server with the node's own credentials,
/// the kubeconfig the kubelet writes once its bootstrap CSR is signed (until then kube-proxy
/// exits and the init restarts it with backoff); the cluster grants nodes the
/// `system:node-proxier` role (docs/boot-server.md). `maxPerCore: 0` leaves the kernel's
/// conntrack table size alone: the node's RAM is its disk too. A constant: no value is pasted in.
pub const KUBE_PROXY_CONFIG: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /var/lib/kubelet/kubeconfig
mode: iptables
conntrack:
  maxPerCore: 0
";

/// Standalone kubelet: static pods only. On a RAM-only node the image and node filesystems are
/// both the tmpfs root. Preloaded images cannot be pulled again: with containerd 2.x they are
/// pinned, so image GC and disk eviction keep the kubelet's defaults (GC at 85/80 % used,
/// images reclaimed below 15 % free, pods evicted below 10 %; `diskless check --image-pressure`
/// proves the pinned images survive). Debian's containerd 1.6 cannot pin, so there image GC
/// is off (high threshold 100 %) and disk eviction waits until 1 % is free. The memory
/// threshold is half the kubelet's 100Mi: a 512 MiB machine has no RAM to spare. FlexVolume
/// plugins live under /var: the image's /usr is read-only.
pub fn kubelet_config(runtime: Runtime) -> String {
    let (gc_high, gc_low, imagefs, nodefs) = match runtime {
        Runtime::Stack => (85, 80, 15, 10),
        Runtime::Debian => (100, 99, 1, 1),
    };
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
staticPodPath: /etc/kubernetes/manifests
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
failSwapOn: false
resolvConf: /etc/resolv.conf
volumePluginDir: /var/lib/kubelet/volumeplugins
imageGCHighThresholdPercent: {gc_high}
imageGCLowThresholdPercent: {gc_low}
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "{nodefs}%"
  imagefs.available: "{imagefs}%"
"#
    )
}

pub fn static_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hello
  namespace: default
spec:
  containers:
    - name: hello
      image: {WORKLOAD_REF}
      imagePullPolicy: Never
      command: ["/bin/sh", "-c", "echo diskless static pod running; while true; do sleep 3600; done"]
"#
    )
}

/// The reference worker's plan, and warnings (e.g. no kubelet); `images` are its preloaded images (the `oci` crate makes them
/// from busybox: [`PAUSE_REF`] and [`WORKLOAD_REF`]).
pub fn host_plan(
    args: &HostOptions,
    images: Vec<PreloadImage>,
) -> anyhow::Result<(Plan, Vec<String>)> {
    let mut warnings = Vec::new();
    let debian = match args.runtime {
        Runtime::Debian => DEBIAN_RUNTIME_FILES,
        Runtime::Stack => &[],
    };
    let ssh = if args.ssh { SSH_FILES } else { &[] };
    let missing: Vec<String> = HOST_FILES
        .iter()
        .chain(debian)
        .chain(ssh)
        .filter(|(p, _)| !Path::new(p).exists())
        .map(|(p, pkg)| format!("{p} (apt-get install {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the host reference worker needs Debian packages that are missing: {}",
            missing.join(", ")
        );
    }
    let (kernel, modules_dir) = match &args.kernel {
        Some(k) => {
            let version = k
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .with_context(|| {
                    format!(
                        "--kernel {}: expected a file named vmlinuz-<version>",
                        k.display()
                    )
                })?;
            (k.clone(), PathBuf::from("/lib/modules").join(version))
        }
        None => find_kernel()?,
    };
    let init = match &args.init {
        Some(p) => p.clone(),
        None => default_init()?,
    };

    let base = Component {
        name: "base".into(),
        binaries: vec![BinaryEntry {
            source: init,
            dest: Some("/init".into()),
        }],
        files: vec![FileEntry {
            source: "/bin/busybox".into(),
            dest: "/usr/bin/busybox".into(),
            mode: Some(Mode(0o755)),
        }],
        symlinks: [
            vec![
                link("/bin", "usr/bin"),
                link("/sbin", "usr/sbin"),
                link("/lib", "usr/lib"),
                link("/lib64", "usr/lib64"),
            ],
            busybox_links()?,
        ]
        .concat(),
        directories: vec![
            dir("/dev", 0o755),
            dir("/proc", 0o555),
            dir("/sys", 0o555),
            dir("/run", 0o755),
            dir("/tmp", 0o1777),
            dir("/root", 0o700),
            dir("/mnt", 0o755),
            dir("/var/log", 0o755),
            dir("/var/lib", 0o755),
            dir("/var/tmp", 0o1777),
        ],
        generated: vec![
            gen(
                "/etc/os-release",
                format!(
                    "NAME=\"diskless\"\nID=diskless\nID_LIKE=debian\nVERSION_ID=\"{v}\"\nPRETTY_NAME=\"diskless worker {v}\"\n",
                    v = env!("CARGO_PKG_VERSION")
                ),
            ),
            gen("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
            gen("/etc/resolv.conf", ""),
            gen("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
            gen("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
            gen("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
        ],
        ..Default::default()
    };

    if args.role == HostRole::ControlPlane {
        return crate::control_plane::plan(args, kernel, modules_dir, base);
    }
    let modules = Component {
        name: "kernel-modules".into(),
        modules: worker_modules(),
        ..Default::default()
    };

    let mut runtime_bins: Vec<BinaryEntry> = runtime_binaries(args.runtime)?
        .into_iter()
        .map(|(source, dest)| BinaryEntry {
            source,
            dest: Some(dest),
        })
        .collect();
    runtime_bins.push(bin("/usr/sbin/xtables-legacy-multi", None));
    // kube-proxy balances a Service over several endpoints with the `statistic` match, whose
    // extension needs libm: as a binary entry (it is in the xtables tree below too) its ELF
    // closure comes along. Without it every kube-proxy sync of a two-endpoint Service failed.
    runtime_bins.push(bin(
        "/usr/lib/x86_64-linux-gnu/xtables/libxt_statistic.so",
        None,
    ));
    // The plugins stay in /usr/lib/cni, inside the squashfs with the rest of /usr, and the
    // CNI bin_dir, /opt/cni/bin, holds links to them: it stays writable for the plugins a
    // cluster's CNI DaemonSet installs there, and 10 MB less is unpacked into the tmpfs.
    let mut links = Vec::new();
    for p in CNI_PLUGINS {
        links.push(link(
            &format!("/opt/cni/bin/{p}"),
            &format!("/usr/lib/cni/{p}"),
        ));
    }
    for family in ["iptables", "ip6tables"] {
        for suffix in ["", "-save", "-restore"] {
            links.push(link(
                &format!("/usr/sbin/{family}{suffix}"),
                "xtables-legacy-multi",
            ));
            links.push(link(
                &format!("/usr/sbin/{family}-legacy{suffix}"),
                "xtables-legacy-multi",
            ));
        }
    }
    let runtime = Component {
        name: "containerd".into(),
        binaries: runtime_bins,
        // iptables loads its match/target extensions with dlopen, so no ELF closure finds them.
        trees: vec![TreeEntry {
            source: "/usr/lib/x86_64-linux-gnu/xtables".into(),
            dest: None,
        }],
        symlinks: links,
        packing: args.packing,
        ..Default::default()
    };

    let mut components = vec![base, modules, runtime];
    let mut services = vec![Service {
        name: "containerd".into(),
        command: vec![
            "/usr/bin/containerd".into(),
            "--config".into(),
            "/etc/containerd/config.toml".into(),
        ],
        env: go_daemon_env(),
        ready_path: Some("/run/containerd/containerd.sock".into()),
        condition_path: None,
        restart: true,
        role: Some(Role::ContainerRuntime),
    }];
    let mut config = Component {
        name: "config".into(),
        generated: vec![
            gen("/etc/containerd/config.toml", containerd_config(args.runtime)),
            gen(CNI_TEMPLATE_PATH, CNI_TEMPLATE),
            gen(
                "/etc/crictl.yaml",
                "runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\n",
            ),
        ],
        directories: vec![dir(crate::mirror::CERTS_DIR, 0o755)],
        ..Default::default()
    };
    for (path, text) in crate::mirror::hosts_files(&args.registry_mirrors) {
        config.generated.push(gen(&path, text));
    }

    let kubelet = match &args.kubelet {
        Kubelet::Stack => Some(diskless_kube::stack::binary("kubelet").context(
            "the worker's kubelet comes from the pinned stack; or pass --kubelet PATH, or --no-kubelet for a containerd-only worker",
        )?),
        Kubelet::Path(p) => Some(p.clone()),
        Kubelet::None => None,
    };
    match &kubelet {
        Some(kubelet) => {
            if !kubelet.is_file() {
                bail!(
                    "kubelet {} is not a file (from --kubelet or $KUBELET)",
                    kubelet.display()
                );
            }
            components.push(Component {
                name: "kubelet".into(),
                binaries: vec![BinaryEntry {
                    source: kubelet.clone(),
                    dest: Some("/usr/bin/kubelet".into()),
                }],
                directories: vec![dir("/var/lib/kubelet", 0o700)],
                packing: args.packing,
                ..Default::default()
            });
            config.generated.push(gen(
                "/etc/kubernetes/kubelet.yaml",
                kubelet_config(args.runtime),
            ));
            config
                .generated
                .push(gen("/etc/kubernetes/manifests/hello.yaml", static_pod()));
            services.push(Service {
                name: "kubelet".into(),
                command: vec![
                    "/usr/bin/kubelet".into(),
                    "--config=/etc/kubernetes/kubelet.yaml".into(),
                    "--v=1".into(),
                ],
                env: go_daemon_env(),
                ready_path: None,
                condition_path: None,
                restart: true,
                role: Some(Role::Kubelet),
            });
            // kube-proxy from the same pinned build, started only where the node joins (its
            // condition: the join material publish puts in the node segment).
            match diskless_kube::stack::binary("kube-proxy") {
                Ok(proxy) => {
                    let binary = BinaryEntry {
                        source: proxy,
                        dest: Some("/usr/bin/kube-proxy".into()),
                    };
                    match args.packing {
                        // Its own squashfs segment with the same condition: a standalone
                        // node's init deletes it unmounted (≈ 17 MB of RAM).
                        Packing::Squashfs => components.push(Component {
                            name: "kube-proxy".into(),
                            binaries: vec![binary],
                            packing: args.packing,
                            condition_path: Some(
                                diskless_contract::node::BOOTSTRAP_KUBECONFIG.into(),
                            ),
                            ..Default::default()
                        }),
                        // A cpio segment is unpacked before the init could leave it out.
                        Packing::Cpio => components
                            .last_mut()
                            .expect("pushed above")
                            .binaries
                            .push(binary),
                    }
                    config
                        .generated
                        .push(gen("/etc/kubernetes/kube-proxy.yaml", KUBE_PROXY_CONFIG));
                    services.push(Service {
                        name: "kube-proxy".into(),
                        command: vec![
                            "/usr/bin/kube-proxy".into(),
                            "--config=/etc/kubernetes/kube-proxy.yaml".into(),
                        ],
                        env: go_daemon_env(),
                        ready_path: None,
                        condition_path: Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG.into()),
                        restart: true,
                        role: None,
                    });
                }
                Err(e) => warnings.push(format!(
                    "no kube-proxy ({e:#}): joined nodes will not reach ClusterIP Services"
                )),
            }
            // Routes to the other nodes' pod ranges (host-gw, the init's `pod-routes`), only
            // where the node joins: a standalone node has no other nodes.
            services.push(Service {
                name: "pod-routes".into(),
                command: vec!["/init".into(), "pod-routes".into()],
                env: BTreeMap::new(),
                ready_path: None,
                condition_path: Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG.into()),
                restart: true,
                role: None,
            });
        }
        None => warnings.push("no kubelet (--no-kubelet): a containerd-only worker".into()),
    }
    if args.ssh {
        components.push(Component {
            name: "ssh".into(),
            binaries: vec![bin("/usr/sbin/dropbear", None)],
            directories: vec![dir("/etc/dropbear", 0o700)],
            ..Default::default()
        });
        services.push(ssh_service());
    }
    components.push(config);

    let plan = Plan {
        version: PLAN_VERSION,
        name: args.name.clone(),
        description: Words::new(match args.runtime {
            Runtime::Stack => "reference worker: host kernel and busybox, pinned Kubernetes stack",
            Runtime::Debian => "reference worker: host kernel, busybox and Debian containerd",
        })
        .expect("a valid description"),
        kernel: Kernel {
            image: kernel,
            modules_dir: Some(modules_dir),
            // transparent_hugepage=never: with THP on, the kernel raises min_free_kbytes to keep
            // 2 MiB blocks free (≈ 66 MB at 4 GiB), and its watermarks count as used memory:
            // MemTotal − MemAvailable with the pod running fell from 494 to 305 MB at 4 GiB
            // (docs/performance.md). The node runs no workload that THP would speed up much.
            cmdline: Words::new("console=ttyS0,115200 panic=10 transparent_hugepage=never")
                .expect("a valid command line"),
        },
        compression: Compression::default(),
        squashfs: args.squashfs,
        components,
        images: images
            .into_iter()
            .map(|mut i| {
                if args.runtime == Runtime::Stack {
                    // containerd 2.x honours the label: the kubelet's image GC never removes
                    // an image that cannot be pulled again.
                    i.labels
                        .insert("io.cri-containerd.pinned".into(), "pinned".into());
                }
                i
            })
            .collect(),
        node: Node {
            sysctls: [
                ("net.ipv4.ip_forward", "1"),
                ("net.bridge.bridge-nf-call-iptables", "1"),
                ("net.bridge.bridge-nf-call-ip6tables", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            cgroup_controllers: ["cpu", "memory", "pids", "io", "cpuset"]
                .into_iter()
                .map(String::from)
                .collect(),
            network: Network::Dhcp { interface: None },
            services,
        },
    };
    Ok((plan, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coredns_ref_names_the_pinned_version() {
        let versions = include_str!("../../../stack/versions");
        let pinned = versions
            .lines()
            .find_map(|l| l.strip_prefix("COREDNS_VERSION="))
            .expect("stack/versions has COREDNS_VERSION");
        assert_eq!(COREDNS_REF.rsplit_once(':').unwrap().1, pinned);
    }

    #[test]
    fn the_module_list_has_three_groups_with_reasons_and_no_repeats() {
        let groups: std::collections::BTreeMap<String, ModuleGroup> =
            serde_json::from_str(KERNEL_MODULES_JSON).unwrap();
        let names: Vec<&str> = groups.keys().map(String::as_str).collect();
        assert_eq!(names, ["container-runtime", "kubelet", "network"]);
        assert!(groups
            .values()
            .all(|g| !g.why.is_empty() && !g.modules.is_empty()));
        let all = worker_modules();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "a module is listed twice: {all:?}");
        assert_eq!(&all[..2], ["virtio_pci", "virtio_net"]);
    }
}
