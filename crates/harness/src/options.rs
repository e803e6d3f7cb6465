//! What a caller of `run` and `check` chooses: shared by every layer, so it is a leaf that
//! depends on no other module of the crate.

use diskless_builder::words::Words;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if a probe boot works, else TCG.
    Auto,
    Kvm,
    Tcg,
    /// TCG with a virtual clock that counts instructions (1 ns each), for benchmarks: guest
    /// times then measure the guest's work, not the host's speed or load (single-threaded
    /// TCG here varied by ±30 % between identical boots).
    Icount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP from a server on 127.0.0.1 via slirp guestfwd (faster).
    Http,
    /// slirp's built-in TFTP server.
    Tftp,
}

/// `check`'s bound on a boot when none is given, seconds.
pub const DEFAULT_CHECK_TIMEOUT: u64 = 600;

#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Output directory of `diskless build` (or, with --server, a boot server directory).
    pub out: PathBuf,
    /// OUT is a boot server directory made by `diskless publish`: boot its `boot.ipxe`, which
    /// picks `hosts/<mac>.ipxe`, the default image or the menu, as a lab machine would.
    pub server: bool,
    /// Image name: boots `OUT/<name>.json`.
    pub name: String,
    /// Guest RAM in MiB.
    pub memory: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// MAC address of the guest's NIC.
    pub mac: String,
    /// Accelerator; `auto` probes KVM with a short kernel boot and falls back to TCG.
    pub accel: Accel,
    /// How iPXE fetches the script and objects.
    pub transport: Transport,
    /// Extra kernel command-line arguments (e.g. `diskless.debug`), appended to the image's.
    pub append: Vec<Words>,
    /// Kill QEMU after this many seconds. `run` waits for the person without one; `check`
    /// defaults to [`DEFAULT_CHECK_TIMEOUT`].
    pub timeout: Option<u64>,
    /// Join a throwaway control plane on the host (`lab/join.rs`): OUT is a build output, published
    /// for one join host whose MAC is `mac`, booted through the boot server as a lab would.
    pub join: bool,
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub boot: BootOptions,
    /// Also kill containerd in the guest and require that the init restarts it.
    pub kill_containerd: bool,
    /// Print the report as one JSON object.
    pub json: bool,
    /// Copy the guest console to standard error as it arrives.
    pub verbose: bool,
    /// The check hook binary (default: `diskless-check` beside this executable).
    pub hook: Option<PathBuf>,
    /// With `boot.join`: spoil the join material (tests of what a node says when it cannot join).
    pub join_fault: Option<Fault>,
    /// With `boot.join`: once joined, kill the kubelet, stop the API server for 30 s, and
    /// power-cycle the machine; each time the node must come back (`scenario/lifecycle.rs`).
    pub lifecycle: bool,
    /// Fill the node's RAM root past the kubelet's image-filesystem threshold; its image GC
    /// must delete the unpinned preloaded images and keep the pinned ones.
    pub image_pressure: bool,
}

impl BootOptions {
    /// The bound on a checked boot: --timeout, else [`DEFAULT_CHECK_TIMEOUT`].
    pub fn check_timeout(&self) -> u64 {
        self.timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT)
    }
}

/// Bad join material, to prove that a node which cannot join says which and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The node segment's cluster CA is another CA than the one that signed the API server.
    WrongCa,
    /// A well-formed bootstrap token the cluster never issued.
    UnknownToken,
    /// The cluster's own token, expired (its TTL is a second) before the node boots.
    ExpiredToken,
}
