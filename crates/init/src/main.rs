//! `diskless-init`: PID 1 of a diskless image (installed as `/init`). `main` reads as the boot
//! sequence; each step logs one `diskless: <stage> ok|FAILED|skipped t=<uptime>` line and says
//! whether its failure is fatal (the contract's `Stage::fatal` says the same for the harness).
//! A fatal failure stops the sequence but not the machine: PID 1 keeps reaping and answering
//! poweroff, with a shell on the console under `diskless.debug`.
//!
//! Run by hand (not as PID 1) the binary is udhcpc's lease script (`/init bound|renew|deconfig…`,
//! see `network.rs`) or a joined node's pod-route sync (`/init pod-routes`, `podroutes.rs`);
//! PID 1 itself starts it as the import of the deferred images (`/init import-deferred`) once
//! the kubelet is running.

use diskless_contract::console::{Stage, CHECK_HOOK};
use diskless_contract::image::{ImageContract, ImageRef, Role, Service};
use diskless_contract::node::{NodeConfig, NODE_JSON};
use diskless_init::cmdline::Cmdline;
use diskless_init::node::NodeFileError;
use diskless_init::services::Output;
use diskless_init::supervisor::Supervisor;
use diskless_init::{
    controlplane, images, integrity, log, machineid, modules, mounts, network, node, podroutes,
    prefetch, services, servingcert, squashfs, supervisor, switchroot, sys, sysctl,
};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::process::id() != 1 {
        let code = match args.get(1).map(String::as_str) {
            Some(ev @ ("deconfig" | "bound" | "renew" | "leasefail" | "nak")) => {
                network::dhcp_event(ev)
            }
            // A joined node's service (the image contract's `pod-routes`).
            Some("pod-routes") => podroutes::main(),
            Some(IMPORT_DEFERRED) => import_deferred(),

            _ => {
                eprintln!(
                    "diskless-init is the PID 1 of a diskless image; run by hand it serves as\n\
                     udhcpc's script (`/init bound|renew|deconfig`) or as `/init pod-routes`"
                );
                2
            }
        };
        std::process::exit(code);
    }
    supervisor::block_signals();
    std::env::set_var("PATH", services::PATH);
    if std::env::var_os(switchroot::SWITCHED_ENV).is_none() {
        from_initramfs()
    } else {
        std::env::remove_var(switchroot::SWITCHED_ENV);
        from_tmpfs_root()
    }
}

/// Steps 1–3, on the kernel's initramfs rootfs; ends by re-executing `/init` in the new root.
fn from_initramfs() -> ! {
    mount_kernel_filesystems();
    let cmdline = read_cmdline();
    let contract = read_contract();
    check_integrity(&contract);
    let size = root_size(&cmdline, &contract);
    let squashfs = load_squashfs_modules(&contract);
    switch_root(size, &squashfs)
}

/// Steps 4–7, in the tmpfs root.
fn from_tmpfs_root() -> ! {
    let cmdline = read_cmdline();
    let contract = read_contract();
    write_machine_id();
    let node = read_node(&cmdline, &contract);
    // The node's name, resolved once for the network step, the DHCP script and the kubelet's
    // certificate.
    let hostname = node::fixed_hostname(
        cmdline.hostname.as_deref(),
        node.as_ref().ok().and_then(Option::as_ref),
    );
    load_overlay(&contract);
    let mut system = System::new(&contract, &cmdline, hostname.clone());
    let mut sup = Supervisor::default();
    start_services(&mut sup, &contract, &node, hostname.as_deref(), &mut system);
    system.wait();
    log::ok(&Stage::Boot, &format!("{} ready", contract.name));
    start_check_hook(&mut sup, &cmdline);
    supervise(sup)
}

/// Step 1: kernel filesystems, then the console on them. Fatal.
fn mount_kernel_filesystems() {
    let mounted = mounts::mount_all();
    mounts::open_console();
    if let Err(e) = mounted {
        fatal(&Stage::Mounts, &e);
    }
    log::ok(&Stage::Mounts, "proc sys dev run cgroup2");
}

/// The `diskless.*` options. Fatal: a mistyped option must not silently change the boot.
fn read_cmdline() -> Cmdline {
    Cmdline::read().unwrap_or_else(|e| fatal(&Stage::Cmdline, &e))
}

/// `/.diskless/image.json`. Fatal: without it the init knows nothing to do.
fn read_contract() -> ImageContract {
    ImageContract::load().unwrap_or_else(|e| fatal(&Stage::Contract, &e))
}

/// Step 2: every segment arrived whole. Fatal.
fn check_integrity(contract: &ImageContract) {
    match integrity::check(contract) {
        Ok(n) => log::ok(&Stage::Integrity, &format!("{n} segments")),
        Err(e) => fatal(&Stage::Integrity, &e),
    }
}

/// Step 3a: the size of the tmpfs root. Fatal.
fn root_size(cmdline: &Cmdline, contract: &ImageContract) -> u64 {
    let size = match cmdline.root_size_mib {
        // Checked before copying: running out of room halfway would leave a broken root.
        Some(mib) if mib << 20 <= contract.unpacked_bytes => Err(format!(
            "diskless.rootsize={mib} MiB cannot hold the image ({} MiB unpacked)",
            contract.unpacked_bytes >> 20
        )),
        Some(mib) => Ok(mib << 20),
        None => sys::mem_total()
            .ok_or_else(|| "cannot read MemTotal from /proc/meminfo".to_string())
            .and_then(|mem| {
                switchroot::root_size(contract.unpacked_bytes, mem).map_err(|e| e.to_string())
            }),
    };
    size.unwrap_or_else(|e| fatal(&Stage::Switchroot, &e))
}

/// Step 3b: the modules the squashfs mounts need (step 4 then finds them loaded); returns the
/// squashfs-packed segments to mount as `(segment, image)`, after deleting the images of those
/// whose condition is absent. Fatal: the image's programs are in them.
fn load_squashfs_modules(contract: &ImageContract) -> Vec<(String, String)> {
    let (squashfs, left_out) = squashfs::split(contract, Path::exists);
    if let Some(line) = squashfs::drop_left_out(&left_out) {
        log::info(&line);
    }
    if !squashfs.is_empty() {
        let t = Instant::now();
        match modules::load_all(&squashfs::modules(contract)) {
            Ok(l) => log::ok(
                &Stage::SquashfsModules,
                &format!("{} loaded in {:.2} s", l.loaded, t.elapsed().as_secs_f64()),
            ),
            Err(e) => fatal(&Stage::SquashfsModules, &e),
        }
    }
    squashfs
}

/// Step 3c: the root into a right-sized tmpfs, squashfs mounted, then `/init` again there.
/// Fatal.
fn switch_root(size: u64, squashfs: &[(String, String)]) -> ! {
    match switchroot::switch(size, squashfs) {
        Ok((files, bytes)) => log::ok(
            &Stage::Switchroot,
            &format!(
                "{files} files, {} MiB moved into a {} MiB tmpfs, {} squashfs mounted",
                bytes >> 20,
                size >> 20,
                squashfs.len()
            ),
        ),
        Err(e) => fatal(&Stage::Switchroot, &e),
    }
    let e = switchroot::reexec();
    fatal(&Stage::Switchroot, &e)
}

/// Per-node identity, never baked into the image. Not fatal.
fn write_machine_id() {
    if let Err(e) = machineid::ensure() {
        log::failed(&Stage::MachineId, &e);
    }
}

/// Per-node configuration (hostname, labels, taints, kubelet mode). Not fatal, but when it is
/// malformed the kubelet is not started rather than started wrong.
fn read_node(
    cmdline: &Cmdline,
    contract: &ImageContract,
) -> Result<Option<NodeConfig>, NodeFileError> {
    let node = node::load();
    match &node {
        Ok(Some(n)) => log::ok(&Stage::Node, &node_line(n, cmdline, contract)),
        Ok(None) => log::skipped(
            &Stage::Node,
            &format!("no {NODE_JSON} (an entry without a per-node segment)"),
        ),
        Err(e) => log::failed(
            &Stage::Node,
            &format!("{e}; the kubelet will not be started"),
        ),
    }
    node
}

/// `hostname=s2 mode=join labels=2 taints=1`, plus whatever overrides what: the command line's
/// hostname wins over the node's, the node's kubelet mode over the image's.
fn node_line(n: &NodeConfig, cmdline: &Cmdline, contract: &ImageContract) -> String {
    let mut line = n.summary();
    if let Some(h) = cmdline.hostname.as_ref().filter(|h| **h != n.hostname) {
        line.push_str(&format!("; diskless.hostname={h} on the command line wins"));
    }
    match contract.service(Role::Kubelet) {
        Some(k) => {
            let image_mode = node::kubelet_for(k, Some(n)).image_mode;
            if image_mode != n.kubelet_mode {
                line.push_str(&format!(
                    "; the image's kubelet is {}, the node's mode wins",
                    image_mode.as_str()
                ));
            }
        }
        None => line.push_str("; the image has no kubelet"),
    }
    line
}

/// overlayfs, all the container runtime needs to start and import the images, ahead of the
/// other modules (step 4). Not fatal: step 4 loads it again and says so.
fn load_overlay(contract: &ImageContract) {
    let early = modules::closure(&contract.modules, &["overlay"]);
    if let Err(e) = modules::load_all(&early) {
        log::warn(&format!("overlay for the container runtime: {e}"));
    }
}

/// Step 6: services in order, each ready before the next; the images once the container
/// runtime is. Steps 4–5 run in a thread started once the runtime answers (it needs only
/// overlayfs: its start is mostly paging its 48 MB binary in, and with the modules loading
/// beside it on an emulated machine's one host CPU containerd answered 2–3 s later); every
/// other service (kubelet: bridge netfilter, the node's address and name) waits for it.
/// The images marked `deferred` are imported by a process started with the kubelet: no static
/// pod and not the sandbox needs them, and importing them first held the kubelet back by
/// their whole import. Not fatal: the supervisor keeps restarting what fails.
fn start_services(
    sup: &mut Supervisor,
    contract: &ImageContract,
    node: &Result<Option<NodeConfig>, NodeFileError>,
    fixed_hostname: Option<&str>,
    system: &mut System,
) {
    if let Some(left_out) = images::drop_left_out(&contract.images) {
        log::info(&left_out);
    }
    let (images, early) = images::in_import_order(&contract.images, ImageRef::wanted);
    let mut deferred_pending = true;
    for (i, svc) in contract.services.iter().enumerate() {
        match svc.role {
            Some(Role::ContainerRuntime) => {
                start_service(sup, svc);
                system.start();
                if contract.segments.iter().any(|s| s.squashfs.is_some()) {
                    prefetch::spawn(prefetch::targets(&contract.services[i + 1..]));
                }
                import_images(&images, 0..early, &Stage::Images);
            }
            Some(Role::Kubelet) => {
                let named = system.wait();
                let hostname = fixed_hostname.map(String::from).or(named);
                start_kubelet(sup, svc, node, hostname.as_deref());
                if std::mem::take(&mut deferred_pending) {
                    if early < images.len() {
                        start_deferred_import(sup);
                    } else {
                        finish_import(&images, early);
                    }
                }
            }
            Some(Role::Etcd) => {
                system.wait();
                start_etcd(sup, svc);
            }
            Some(Role::ApiServer) => {
                system.wait();
                let node = node.as_ref().ok().and_then(Option::as_ref);
                start_service(sup, &controlplane::apiserver_for(svc, node));
            }
            None => {
                system.wait();
                start_service(sup, svc);
            }
        }
    }
    // No kubelet: nothing to wait for.
    let runtime = contract.service(Role::ContainerRuntime).is_some();
    if deferred_pending && runtime {
        finish_import(&images, early);
    }
    if !contract.images.is_empty() && contract.service(Role::ContainerRuntime).is_none() {
        log::failed(
            &Stage::Images,
            "the image has preloaded images but no service with role container-runtime",
        );
    }
}

/// Step 6b: `images[part]` into the container runtime; whether it worked, and what it says.
/// Not fatal.
fn import_images(images: &[ImageRef], part: Range<usize>, stage: &Stage) -> (bool, String) {
    if part.is_empty() {
        return (true, "no images".into());
    }
    match images::import_all(images, part) {
        Ok(s) => {
            log::ok(stage, &s);
            (true, s)
        }
        Err(e) => {
            let e = e.to_string();
            log::failed(stage, &e);
            (false, e)
        }
    }
}

/// The argument that makes the binary import the deferred images.
const IMPORT_DEFERRED: &str = "import-deferred";

/// The deferred images, imported beside the kubelet by a child of PID 1 (`/init
/// import-deferred`): a process of its own, as PID 1 reaps every child that exits, including a
/// thread's `ctr`. Not fatal.
fn start_deferred_import(sup: &mut Supervisor) {
    let import = internal_service(
        Stage::DeferredImages.name(),
        vec!["/init".into(), IMPORT_DEFERRED.into()],
    );
    if let Err(e) = sup.start(import, Output::Console) {
        log::failed(&Stage::DeferredImages, &e);
    }
}

/// `/init import-deferred`: the contract's deferred images, at the lowest CPU priority (`ctr`
/// inherits it): the kubelet starting beside it comes first. Exit status 1 when they failed.
fn import_deferred() -> i32 {
    // SAFETY: setpriority on this process only; no pointers.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    match ImageContract::load() {
        Ok(contract) => {
            let (images, early) = images::in_import_order(&contract.images, ImageRef::wanted);
            finish_import(&images, early)
        }
        Err(e) => {
            log::failed(&Stage::DeferredImages, &e);
            1
        }
    }
}

/// `images[early..]`, then the mark that all are in (also when they failed: the `FAILED`
/// line says so). Exit status 1 when something failed.
fn finish_import(images: &[ImageRef], early: usize) -> i32 {
    let (ok, summary) = import_images(images, early..images.len(), &Stage::DeferredImages);
    if let Err(e) = images::mark_imported(&summary) {
        log::failed(&Stage::DeferredImages, &e);
        return 1;
    }
    i32::from(!ok)
}

/// The kubelet with this node's flags and a serving certificate for the node's name. Not
/// fatal; a malformed node.json keeps it from starting (it would register a wrong node).
fn start_kubelet(
    sup: &mut Supervisor,
    image: &Service,
    node: &Result<Option<NodeConfig>, NodeFileError>,
    hostname: Option<&str>,
) {
    let kubelet = match node::kubelet_service(image, node) {
        Ok(k) => k,
        Err(e) => return log::failed(&Stage::Service(image.name.clone()), &e),
    };
    // The node's settings: without them the kubelet would register a node that is not this one.
    match kubelet.write_drop_in() {
        Ok(path) => log::ok(&Stage::KubeletConfig, &path),
        Err(e) => {
            log::failed(&Stage::KubeletConfig, &e);
            return log::failed(&Stage::Service(image.name.clone()), "not started");
        }
    }
    // Not fatal: without it the kubelet makes its own (slowly).
    let cert = hostname
        .ok_or_else(|| "the node has no hostname: the network step did not name it".to_string())
        .and_then(|h| servingcert::ensure(&kubelet.service.command, h).map_err(|e| e.to_string()));
    match cert {
        Ok(s) => log::ok(&Stage::KubeletCert, &s),
        Err(e) => log::failed(&Stage::KubeletCert, &e),
    }
    start_service(sup, &kubelet.service)
}

/// etcd, its data restored first from the node segment's snapshot. Not fatal, but a snapshot
/// that does not restore keeps etcd from starting: an empty etcd would be snapshotted by the
/// next publish in place of the good snapshot.
fn start_etcd(sup: &mut Supervisor, etcd: &Service) {
    if let Some(p) = etcd
        .condition_path
        .as_ref()
        .filter(|p| !Path::new(p).exists())
    {
        let why = format!("condition_path {p} does not exist");
        log::skipped(&Stage::EtcdRestore, &why);
        return log::skipped(&Stage::Service(etcd.name.clone()), &why);
    }
    match controlplane::restore_etcd(etcd) {
        Ok(s) => log::ok(&Stage::EtcdRestore, &s),
        Err(e) => {
            log::failed(&Stage::EtcdRestore, &e);
            return log::failed(&Stage::Service(etcd.name.clone()), "not started");
        }
    }
    start_service(sup, etcd)
}

/// Steps 4 and 5: modules (on every CPU), sysctls, cgroup controllers, network; returns the
/// hostname the network step left the node with. Not fatal.
fn modules_and_network(
    contract: &ImageContract,
    cmdline: &Cmdline,
    fixed_hostname: Option<&str>,
) -> Option<String> {
    let t = Instant::now();
    match modules::load_all(&contract.modules) {
        Ok(l) => log::ok(
            &Stage::Modules,
            &format!(
                "{} loaded, {} already present, {} optional failed, {:.2} s on {} CPUs",
                l.loaded,
                l.already,
                l.failed_optional.len(),
                t.elapsed().as_secs_f64(),
                l.workers
            ),
        ),
        Err(e) => log::failed(&Stage::Modules, &e),
    }
    match sysctl::apply_sysctls(&contract.sysctls) {
        Ok(n) => log::ok(&Stage::Sysctls, &format!("{n} set")),
        Err(e) => log::failed(&Stage::Sysctls, &e),
    }
    match sysctl::enable_controllers(&contract.cgroup_controllers) {
        Ok(_) => log::ok(&Stage::Cgroups, &contract.cgroup_controllers.join(" ")),
        Err(e) => log::failed(&Stage::Cgroups, &e),
    }
    let net = network::configure(&contract.network, cmdline, &contract.name, fixed_hostname);
    match &net.result {
        Ok(s) => log::ok(&Stage::Network, s),
        Err(e) => log::failed(&Stage::Network, e),
    }
    net.hostname
}

/// The thread of steps 4–5: started once, joined once (its steps log themselves).
struct System {
    args: Option<(ImageContract, Cmdline, Option<String>)>,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
    hostname: Option<String>,
}

impl System {
    fn new(contract: &ImageContract, cmdline: &Cmdline, fixed_hostname: Option<String>) -> Self {
        System {
            args: Some((contract.clone(), cmdline.clone(), fixed_hostname)),
            thread: None,
            hostname: None,
        }
    }

    /// Starts the thread unless it already ran.
    fn start(&mut self) {
        if let Some((c, cmdline, fixed)) = self.args.take() {
            self.thread = Some(std::thread::spawn(move || {
                modules_and_network(&c, &cmdline, fixed.as_deref())
            }));
        }
    }

    /// Starts the thread if needed and waits for it; the node's hostname once it ran.
    fn wait(&mut self) -> Option<String> {
        self.start();
        if let Some(h) = self.thread.take() {
            match h.join() {
                Ok(hostname) => self.hostname = hostname,
                Err(_) => log::failed(&Stage::Network, "the modules and network step panicked"),
            }
        }
        self.hostname.clone()
    }
}

/// Once booted, with `diskless.check=<mode>`: the check binary, which `diskless check` adds to
/// the boot (production images carry none), run once with the console as its output. Not
/// fatal.
fn start_check_hook(sup: &mut Supervisor, cmdline: &Cmdline) {
    let Some(mode) = &cmdline.check else {
        return;
    };
    if !std::path::Path::new(CHECK_HOOK).exists() {
        return log::failed(
            &Stage::Check,
            &format!("no check hook at {CHECK_HOOK}: boot it with `diskless check`"),
        );
    }
    let check = internal_service(Stage::Check.name(), vec![CHECK_HOOK.into(), mode.clone()]);
    if let Err(e) = sup.start(check, Output::Console) {
        log::failed(&Stage::Check, &e);
    }
}

/// Step 7: supervise until poweroff/reboot.
fn supervise(mut sup: Supervisor) -> ! {
    let exit = sup.run();
    sup.shutdown(exit)
}

/// Starts a service from the contract and waits for its `ready_path`; logs under its name.
fn start_service(sup: &mut Supervisor, svc: &Service) {
    let stage = Stage::Service(svc.name.clone());
    if let Some(p) = &svc.condition_path {
        if !std::path::Path::new(p).exists() {
            log::skipped(&stage, &format!("condition_path {p} does not exist"));
            return;
        }
    }
    let t = Instant::now();
    let slot = match sup.start(svc.clone(), Output::Logged) {
        Ok(slot) => slot,
        Err(e) => return log::failed(&stage, &e),
    };
    match &svc.ready_path {
        None => log::ok(&stage, "started"),
        Some(p) => match sup.wait_ready(slot, p, Duration::from_secs(60)) {
            Ok(()) => log::ok(
                &stage,
                &format!("ready ({p}) after {:.2} s", t.elapsed().as_secs_f64()),
            ),
            Err(e) => log::failed(&stage, &e),
        },
    }
}

fn internal_service(name: &str, command: Vec<String>) -> Service {
    Service {
        name: name.into(),
        command,
        env: BTreeMap::new(),
        ready_path: None,
        condition_path: None,
        restart: false,
        role: None,
    }
}

/// Stops the boot sequence, keeps the machine up for debugging: PID 1 still reaps and
/// answers poweroff/reboot, and with `diskless.debug` a shell runs on the console.
fn fatal(stage: &Stage, why: &dyn std::fmt::Display) -> ! {
    log::failed(stage, why);
    // Read again: the command line itself may be what failed.
    let debug = std::fs::read_to_string("/proc/cmdline")
        .map(|c| {
            c.split_whitespace()
                .any(|w| w == "diskless.debug" || w == "diskless.debug=1")
        })
        .unwrap_or(false);
    let mut sup = Supervisor::default();
    if debug {
        log::info("boot stopped; starting a shell on the console (diskless.debug)");
        // No controlling terminal (so no job control): `setsid -c` would fork away from the
        // supervisor, since services already lead their own process group.
        let mut shell = internal_service("shell", vec!["/bin/sh".into(), "-i".into()]);
        shell.restart = true;
        if let Err(e) = sup.start(shell, Output::Console) {
            log::warn(&format!("no debug shell: {e}"));
        }
    } else {
        log::info("boot stopped; the machine stays up (add diskless.debug to the kernel command line for a shell)");
    }
    supervise(sup)
}
