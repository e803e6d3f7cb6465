//! The command line's argument types. The libraries take plain option structs; these clap
//! types carry the flags, defaults and help, and convert into them.

use clap::{Args, ValueEnum};
use diskless_builder::words::{BaseUrl, Words};
use diskless_builder::{inspect::InspectOptions, pipeline::BuildOptions};
use diskless_harness::{Accel, BootOptions, CheckOptions, Transport};
use diskless_hostplan::host::{HostOptions, Kubelet, Runtime};
use diskless_hostplan::mirror::RegistryMirror;
use diskless_publish::PublishOptions;
use diskless_serve::ServeOptions;
use std::path::PathBuf;

#[derive(Debug, Args, Clone)]
pub struct HostArgs {
    /// What the machine is: a `worker` (containerd and a kubelet) or the `control-plane` (etcd,
    /// kube-apiserver, kube-controller-manager, kube-scheduler; its secrets and etcd snapshot
    /// come from its node segment, see docs/boot-server.md).
    #[arg(long, value_enum, default_value = "worker")]
    pub role: RoleArg,
    /// kubelet binary to include (default: the pinned stack's, from scripts/install-deps).
    #[arg(long, env = "KUBELET", conflicts_with = "no_kubelet")]
    pub kubelet: Option<PathBuf>,
    /// A containerd-only worker, without a kubelet.
    #[arg(long)]
    pub no_kubelet: bool,
    /// Where containerd, runc and the CNI plugins come from: the pinned `stack` (containerd 2.x)
    /// or `debian` (Debian 12's packages, containerd 1.6).
    #[arg(long, value_enum, default_value = "stack")]
    pub runtime: RuntimeArg,
    /// The node's init binary (default: `diskless-init` beside this executable).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Kernel image (default: the newest /boot/vmlinuz-* with a matching /lib/modules tree).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Image name.
    #[arg(long, default_value = "worker")]
    pub name: String,
    /// How the large components (containerd, kubelet) travel: `squashfs` (mounted read-only by
    /// the init; less RAM, faster boot) or `cpio` (unpacked by the kernel).
    #[arg(long, value_enum, default_value = "squashfs")]
    pub packing: PackingArg,
    /// Block codec of the squashfs-packed components: `zstd` or `lz4hc`, with an optional
    /// level (`zstd-19`, `lz4hc-12`). The default is the plan format's own (docs/plan.md):
    /// the smaller download and RAM, the faster build, the same boot on real hardware; `lz4hc`
    /// boots faster under emulation (docs/performance.md).
    #[arg(long, value_name = "CODEC[-LEVEL]", default_value_t)]
    pub squashfs_codec: diskless_builder::plan::SquashfsCompression,
    /// An SSH server (dropbear from Debian's dropbear-bin): root, key login only; the keys come
    /// from the inventory (`ssh_authorized_keys_file`), host keys are made on the node.
    #[arg(long)]
    pub ssh: bool,
    /// Pull images that are not preloaded from this mirror first: REGISTRY=URL, e.g.
    /// `docker.io=http://10.0.0.5:5000` (repeatable; mirrors are tried in the order given).
    #[arg(long = "registry-mirror", value_name = "REGISTRY=URL")]
    pub registry_mirrors: Vec<RegistryMirror>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Worker,
    ControlPlane,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeArg {
    Stack,
    Debian,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PackingArg {
    Squashfs,
    Cpio,
}

impl From<HostArgs> for HostOptions {
    fn from(a: HostArgs) -> Self {
        HostOptions {
            role: match a.role {
                RoleArg::Worker => diskless_hostplan::host::HostRole::Worker,
                RoleArg::ControlPlane => diskless_hostplan::host::HostRole::ControlPlane,
            },
            kubelet: match (a.kubelet, a.no_kubelet) {
                (_, true) => Kubelet::None,
                (Some(p), false) => Kubelet::Path(p),
                (None, false) => Kubelet::Stack,
            },
            runtime: match a.runtime {
                RuntimeArg::Stack => Runtime::Stack,
                RuntimeArg::Debian => Runtime::Debian,
            },
            init: a.init,
            kernel: a.kernel,
            name: a.name,
            packing: match a.packing {
                PackingArg::Squashfs => diskless_builder::plan::Packing::Squashfs,
                PackingArg::Cpio => diskless_builder::plan::Packing::Cpio,
            },
            squashfs: a.squashfs_codec,
            ssh: a.ssh,
            registry_mirrors: a.registry_mirrors,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Output directory (created if missing); objects already there are reused.
    #[arg(long)]
    pub out: PathBuf,
    /// Prefix for the URLs in `<name>.ipxe`: empty for URLs relative to the script, or e.g.
    /// `http://boot.lab/images/` (must end with '/').
    #[arg(long, default_value = "", value_parser = |s: &str| BaseUrl::new(s))]
    pub base_url: BaseUrl,
    /// Also store the concatenated single-file initrd (each segment padded to 4 bytes), for boot
    /// loaders that take one file.
    #[arg(long)]
    pub single_initrd: bool,
    /// Allow an image over 2 GiB (iPXE's practical ceiling).
    #[arg(long)]
    pub allow_large: bool,
    /// Threads for segment writing and compression (default: all cores). Never changes the output.
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Segment cache directory (default: $XDG_CACHE_HOME/diskless or ~/.cache/diskless).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compress every segment afresh.
    #[arg(long)]
    pub no_cache: bool,
}

impl From<BuildArgs> for BuildOptions {
    fn from(a: BuildArgs) -> Self {
        BuildOptions {
            out: a.out,
            base_url: a.base_url,
            single_initrd: a.single_initrd,
            allow_large: a.allow_large,
            jobs: a.jobs,
            cache_dir: a.cache_dir,
            no_cache: a.no_cache,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct InspectArgs {
    /// Image name (`<name>.json` in the output directory).
    #[arg(long, default_value = "worker")]
    pub name: String,
    /// How many files to list (largest first); 0 lists all.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

impl From<InspectArgs> for InspectOptions {
    fn from(a: InspectArgs) -> Self {
        InspectOptions {
            name: a.name,
            top: a.top,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    /// Output directory of `diskless build` (every `<name>.json` in it is published).
    pub out: PathBuf,
    /// The boot server: a directory (TFTP/HTTP root, or a mounted share) or
    /// `ssh://[user@]host[:port]/path` (ssh command from `DISKLESS_SSH`, default `ssh`).
    #[arg(long)]
    pub to: String,
    /// Inventory of machines (TOML, docs/boot-server.md); default: keep the published one.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
}

impl From<PublishArgs> for PublishOptions {
    fn from(a: PublishArgs) -> Self {
        PublishOptions {
            out: a.out,
            to: a.to,
            inventory: a.inventory,
        }
    }
}

#[derive(Debug, Args)]
pub struct BootArgs {
    /// Output directory of `diskless build` (or, with --server, a boot server directory).
    pub out: PathBuf,
    /// OUT is a boot server directory made by `diskless publish`: boot its `boot.ipxe`, which
    /// picks `hosts/<mac>.ipxe`, the default image or the menu, as a lab machine would.
    #[arg(long)]
    pub server: bool,
    /// Image name: boots `OUT/<name>.json`.
    #[arg(long, default_value = "worker")]
    pub name: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// MAC address of the guest's NIC.
    #[arg(long, default_value = "52:54:00:12:34:56")]
    pub mac: String,
    /// Accelerator; `auto` probes KVM with a short kernel boot and falls back to TCG; `icount`
    /// is TCG with a virtual clock counting instructions (1 ns each), for benchmarks that
    /// repeat on a noisy host.
    #[arg(long, value_enum, default_value = "auto", env = "DISKLESS_ACCEL")]
    pub accel: AccelArg,
    /// How iPXE fetches the script and objects.
    #[arg(long, value_enum, default_value = "http")]
    pub transport: TransportArg,
    /// Extra kernel command-line arguments (e.g. `diskless.debug`), appended to the image's.
    #[arg(long = "append", value_name = "ARG", value_parser = |s: &str| Words::new(s))]
    pub append: Vec<Words>,
    /// Kill QEMU after this many seconds (`run`: none, it waits for the guest to power off or
    /// for you; `check`: 600).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Join a real cluster: start a throwaway control plane (etcd, kube-apiserver,
    /// controller-manager, scheduler from the pinned stack) on this machine's loopback, publish
    /// OUT for one join host with --mac, and boot it through the boot server. `check` passes
    /// when the node is Ready and a pod created through the API runs on it.
    #[arg(long, conflicts_with = "server")]
    pub join: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
    Icount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// HTTP from a server on 127.0.0.1 via slirp guestfwd (faster).
    Http,
    /// slirp's built-in TFTP server.
    Tftp,
}

impl From<BootArgs> for BootOptions {
    fn from(a: BootArgs) -> Self {
        BootOptions {
            out: a.out,
            server: a.server,
            name: a.name,
            memory: a.memory,
            cpus: a.cpus,
            mac: a.mac,
            accel: match a.accel {
                AccelArg::Auto => Accel::Auto,
                AccelArg::Kvm => Accel::Kvm,
                AccelArg::Tcg => Accel::Tcg,
                AccelArg::Icount => Accel::Icount,
            },
            transport: match a.transport {
                TransportArg::Http => Transport::Http,
                TransportArg::Tftp => Transport::Tftp,
            },
            append: a.append,
            timeout: a.timeout,
            join: a.join,
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Also kill containerd in the guest and require that the init restarts it.
    #[arg(long)]
    pub kill_containerd: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Copy the guest console to standard error as it arrives.
    #[arg(long, short)]
    pub verbose: bool,
    /// The check hook binary the guest runs (default: `diskless-check` beside this executable).
    #[arg(long, value_name = "PATH")]
    pub hook: Option<PathBuf>,
    /// With --join, once the node is Ready: kill its kubelet, stop the API server for 30 s, and
    /// power-cycle the machine; each time the node must come back.
    #[arg(long, requires = "join")]
    pub lifecycle: bool,
    /// Fill the node's RAM root to 95 % once it is up: the kubelet's image GC must delete the
    /// image's unpinned preloaded images and keep every pinned one.
    #[arg(long, conflicts_with_all = ["join", "kill_containerd"])]
    pub image_pressure: bool,
    /// OUT holds a control-plane image (`build --host --role control-plane`): publish it for
    /// one control-plane host with a fresh cluster PKI, boot it, wait for the API server and
    /// both leaders, create a ConfigMap, publish again (etcd snapshot), power-cycle the
    /// machine, and require the ConfigMap back.
    #[arg(long, conflicts_with_all = ["join", "kill_containerd", "image_pressure", "lifecycle"])]
    pub control_plane: bool,
}

impl CheckArgs {
    /// The options of `check --control-plane`.
    pub fn control_plane_options(self) -> diskless_harness::ControlPlaneOptions {
        diskless_harness::ControlPlaneOptions {
            boot: self.boot.into(),
            json: self.json,
            verbose: self.verbose,
            hook: self.hook,
        }
    }
}

impl From<CheckArgs> for CheckOptions {
    fn from(a: CheckArgs) -> Self {
        CheckOptions {
            boot: a.boot.into(),
            kill_containerd: a.kill_containerd,
            json: a.json,
            verbose: a.verbose,
            hook: a.hook,
            join_fault: None,
            lifecycle: a.lifecycle,
            image_pressure: a.image_pressure,
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The published boot-server directory (`diskless publish --to DEST`).
    pub dest: PathBuf,
    /// Only write DIR/dnsmasq.conf and DIR/nginx.conf (state paths: --state-dir, else
    /// DIR/state) for your own dnsmasq and nginx; start nothing.
    #[arg(long, value_name = "DIR")]
    pub print_config: Option<PathBuf>,
    /// The network interface machines boot on.
    #[arg(long)]
    pub interface: String,
    /// This server's address on that interface, ADDR/PREFIX (default: the interface's first IPv4).
    #[arg(long)]
    pub address: Option<String>,
    /// Lease addresses FIRST-LAST (e.g. 10.33.0.100-10.33.0.199) on the interface's network.
    #[arg(long, value_parser = parse_range, required_unless_present = "proxy_dhcp")]
    pub dhcp_range: Option<(std::net::Ipv4Addr, std::net::Ipv4Addr)>,
    /// Proxy-DHCP: only boot information, beside an existing DHCP server.
    #[arg(long, conflicts_with = "dhcp_range")]
    pub proxy_dhcp: bool,
    /// The address nginx listens on (default: the interface's address).
    #[arg(long)]
    pub listen: Option<std::net::Ipv4Addr>,
    /// nginx's port.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Directory holding undionly.kpxe and ipxe.efi (default: /usr/lib/ipxe, Debian's ipxe).
    #[arg(long)]
    pub tftp_root: Option<PathBuf>,
    /// Leases, pid file and nginx's temporary files (default: a temporary directory).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Send IPv6 router advertisements on the interface (which needs an IPv6 /64, e.g. a ULA):
    /// iPXE waits ≈ 13 s for one at every DHCP. Only where no IPv6 router is.
    #[arg(long)]
    pub ipv6_ra: bool,
}

fn parse_range(s: &str) -> Result<(std::net::Ipv4Addr, std::net::Ipv4Addr), String> {
    let err =
        || format!("{s:?} is not FIRST-LAST (two IPv4 addresses, e.g. 10.33.0.100-10.33.0.199)");
    let (a, b) = s.split_once('-').ok_or_else(err)?;
    Ok((a.parse().map_err(|_| err())?, b.parse().map_err(|_| err())?))
}

impl From<&ServeArgs> for ServeOptions {
    fn from(a: &ServeArgs) -> Self {
        ServeOptions {
            dest: a.dest.clone(),
            interface: a.interface.clone(),
            address: a.address.clone(),
            dhcp_range: a.dhcp_range,
            proxy: a.proxy_dhcp,
            listen: a.listen,
            http_port: a.http_port,
            tftp_root: a.tftp_root.clone(),
            state_dir: a.state_dir.clone(),
            ipv6_ra: a.ipv6_ra,
        }
    }
}
