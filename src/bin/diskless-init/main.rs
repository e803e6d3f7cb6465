//! `diskless-init`: PID 1 of a diskless image (installed as `/init`). `main` reads as the boot
//! sequence; each step logs one `diskless: <stage> ok|FAILED|skipped t=<uptime>` line and says
//! whether its failure is fatal. A fatal failure stops the sequence but not the machine: PID 1
//! keeps reaping and answering poweroff, with a shell on the console under `diskless.debug`.
//!
//! The binary has two more roles when it is not PID 1: udhcpc's lease script
//! (`/init bound|renew|deconfig…`, see `network.rs`) and the check hook (`/init check`).

mod checkhook;
mod cmdline;
mod contract;
mod images;
mod integrity;
mod log;
mod machineid;
mod modules;
mod mounts;
mod network;
mod node;
mod prefetch;
mod services;
mod servingcert;
mod squashfs;
mod supervisor;
mod switchroot;
mod sys;
mod sysctl;

use cmdline::Cmdline;
use contract::{Contract, Service};
use services::Output;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use supervisor::Supervisor;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if std::process::id() != 1 {
        let code = match args.get(1).map(String::as_str) {
            Some("check") => checkhook::main(args.get(2).map_or("1", String::as_str)),
            Some(ev @ ("deconfig" | "bound" | "renew" | "leasefail" | "nak")) => {
                network::dhcp_event(ev)
            }
            _ => {
                eprintln!(
                    "diskless-init is the PID 1 of a diskless image; run by hand it only serves as\n\
                     udhcpc's script (`/init bound|renew|deconfig`) and the check hook (`/init check [restart]`)"
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
    // 1. Kernel filesystems. Fatal.
    let mounted = mounts::mount_all();
    mounts::open_console();
    if let Err(e) = mounted {
        fatal("mounts", &e);
    }
    log::ok("mounts", "proc sys dev run cgroup2");
    let cmdline = Cmdline::read().unwrap_or_else(|e| fatal("cmdline", &e.0));
    let contract = Contract::load().unwrap_or_else(|e| fatal("contract", &e));

    // 2. Every segment arrived whole. Fatal.
    match integrity::check(&contract) {
        Ok(n) => log::ok("integrity", &format!("{n} segments")),
        Err(e) => fatal("integrity", &e),
    }

    // 3. Root into a right-sized tmpfs. Fatal.
    let size = match cmdline.root_size_mib {
        // Checked before copying: running out of room halfway would leave a broken root.
        Some(mib) if mib << 20 <= contract.unpacked_bytes => Err(format!(
            "diskless.rootsize={mib} MiB cannot hold the image ({} MiB unpacked)",
            contract.unpacked_bytes >> 20
        )),
        Some(mib) => Ok(mib << 20),
        None => sys::mem_total()
            .ok_or_else(|| "cannot read MemTotal from /proc/meminfo".to_string())
            .and_then(|mem| switchroot::root_size(contract.unpacked_bytes, mem)),
    };
    let size = size.unwrap_or_else(|e| fatal("switchroot", &e));
    let squashfs: Vec<(String, String)> = contract
        .segments
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.squashfs.clone()?)))
        .collect();
    if !squashfs.is_empty() {
        // The modules the mounts need, ahead of step 4 (which finds them loaded).
        let t = std::time::Instant::now();
        match modules::load_all(&squashfs::modules(&contract)) {
            Ok(l) => log::ok(
                "squashfs-modules",
                &format!("{} loaded in {:.2} s", l.loaded, t.elapsed().as_secs_f64()),
            ),
            Err(e) => fatal("squashfs-modules", &e),
        }
    }
    match switchroot::switch(size, &squashfs) {
        Ok((files, bytes)) => log::ok(
            "switchroot",
            &format!(
                "{files} files, {} MiB moved into a {} MiB tmpfs, {} squashfs mounted",
                bytes >> 20,
                size >> 20,
                squashfs.len()
            ),
        ),
        Err(e) => fatal("switchroot", &e),
    }
    let e = switchroot::reexec();
    fatal("switchroot", &e)
}

/// Steps 4–7, in the tmpfs root.
fn from_tmpfs_root() -> ! {
    let cmdline = Cmdline::read().unwrap_or_else(|e| fatal("cmdline", &e.0));
    let contract = Contract::load().unwrap_or_else(|e| fatal("contract", &e));
    // Per-node identity, never baked into the image. Not fatal.
    if let Err(e) = machineid::ensure() {
        log::failed("machine-id", &e);
    }
    // Per-node configuration (hostname, labels, taints, kubelet mode). Not fatal, but when it
    // is malformed the kubelet is not started rather than started wrong.
    let node = node::load();
    match &node {
        Ok(Some(n)) => log::ok("node", &node_line(n, &cmdline, &contract)),
        Ok(None) => log::skipped(
            "node",
            &format!(
                "no {} (an entry without a per-node segment)",
                node::NODE_JSON
            ),
        ),
        Err(e) => log::failed("node", &format!("{e}; the kubelet will not be started")),
    }

    // 4–5. Modules, sysctls, cgroup controllers, then the network, in one background thread
    // started once containerd answers: containerd needs only overlayfs (loaded first, here) to
    // start and import the images. Its start is mostly paging its 48 MB binary in, and with
    // the modules loading beside it on an emulated machine's one host CPU it answered 2–3 s
    // later. The thread then overlaps the image import; every other service (kubelet: bridge
    // netfilter, the node's address and hostname) and the check hook wait for it. Not fatal.
    let early = modules::closure(&contract.modules, &["overlay"]);
    if let Err(e) = modules::load_all(&early) {
        log::warn(&format!("overlay for containerd: {e}"));
    }
    let mut system = System::new(&contract, &cmdline);

    // 6. Services in order, each ready before the next; images once containerd is. Not fatal:
    // the supervisor keeps restarting what fails.
    let mut sup = Supervisor::default();
    for (i, svc) in contract.services.iter().enumerate() {
        if svc.name != "containerd" {
            system.wait();
        }
        if svc.name == "kubelet" {
            match node::kubelet_service(svc, &node) {
                Ok(k) => {
                    // Not fatal: without it the kubelet makes its own (slowly).
                    let host =
                        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
                    match servingcert::ensure(&k.command, host.trim()) {
                        Ok(s) => log::ok("kubelet-cert", &s),
                        Err(e) => log::failed("kubelet-cert", &e),
                    }
                    start_service(&mut sup, &k)
                }
                Err(e) => log::failed("kubelet", &e),
            }
        } else {
            start_service(&mut sup, svc);
        }
        if svc.name == "containerd" {
            system.start();
            if contract.segments.iter().any(|s| s.squashfs.is_some()) {
                prefetch::spawn(prefetch::targets(&contract.services[i + 1..]));
            }
            if !contract.images.is_empty() {
                match images::import_all(&contract.images) {
                    Ok(s) => log::ok("images", &s),
                    Err(e) => log::failed("images", &e),
                }
            }
        }
    }
    if !contract.images.is_empty() && !contract.services.iter().any(|s| s.name == "containerd") {
        log::failed(
            "images",
            "the image has preloaded images but no service named containerd",
        );
    }
    system.wait();
    log::ok("boot", &format!("{} ready", contract.name));
    if let Some(mode) = &cmdline.check {
        let check = internal_service("check", vec!["/init".into(), "check".into(), mode.clone()]);
        if let Err(e) = sup.start(check, Output::Console) {
            log::failed("check", &e);
        }
    }

    // 7. Supervise until poweroff/reboot.
    let exit = sup.run();
    sup.shutdown(exit)
}

/// `hostname=s2 mode=join labels=2 taints=1`, plus whatever overrides what: the command line's
/// hostname wins over the node's, the node's kubelet mode over the image's.
fn node_line(n: &node::NodeConfig, cmdline: &Cmdline, contract: &Contract) -> String {
    let mut line = node::summary(n);
    if let Some(h) = cmdline.hostname.as_ref().filter(|h| **h != n.hostname) {
        line.push_str(&format!("; diskless.hostname={h} on the command line wins"));
    }
    match contract.services.iter().find(|s| s.name == "kubelet") {
        Some(k) => {
            let image_mode = node::kubelet_for(k, n).image_mode;
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

/// Steps 4 and 5: modules (on every CPU), sysctls, cgroup controllers, network.
fn system(contract: &Contract, cmdline: &Cmdline) {
    let t = Instant::now();
    match modules::load_all(&contract.modules) {
        Ok(l) => log::ok(
            "modules",
            &format!(
                "{} loaded, {} already present, {} optional failed, {:.2} s on {} CPUs",
                l.loaded,
                l.already,
                l.failed_optional.len(),
                t.elapsed().as_secs_f64(),
                l.workers
            ),
        ),
        Err(e) => log::failed("modules", &e),
    }
    match sysctl::apply_sysctls(&contract.sysctls) {
        Ok(n) => log::ok("sysctls", &format!("{n} set")),
        Err(e) => log::failed("sysctls", &e),
    }
    match sysctl::enable_controllers(&contract.cgroup_controllers) {
        Ok(_) => log::ok("cgroups", &contract.cgroup_controllers.join(" ")),
        Err(e) => log::failed("cgroups", &e),
    }
    match network::configure(&contract.network, cmdline, &contract.name) {
        Ok(s) => log::ok("network", &s),
        Err(e) => log::failed("network", &e),
    }
}

/// The thread of steps 4–5: started once, joined once (its steps log themselves).
struct System {
    args: Option<(Contract, Cmdline)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl System {
    fn new(contract: &Contract, cmdline: &Cmdline) -> Self {
        System {
            args: Some((contract.clone(), cmdline.clone())),
            thread: None,
        }
    }

    /// Starts the thread unless it already ran.
    fn start(&mut self) {
        if let Some((c, cmdline)) = self.args.take() {
            self.thread = Some(std::thread::spawn(move || system(&c, &cmdline)));
        }
    }

    /// Starts the thread if needed and waits for it.
    fn wait(&mut self) {
        self.start();
        if let Some(h) = self.thread.take() {
            if h.join().is_err() {
                log::failed("network", "the modules and network step panicked");
            }
        }
    }
}

fn start_service(sup: &mut Supervisor, svc: &Service) {
    if let Some(p) = &svc.condition_path {
        if !std::path::Path::new(p).exists() {
            log::skipped(&svc.name, &format!("condition_path {p} does not exist"));
            return;
        }
    }
    let t = Instant::now();
    let slot = match sup.start(svc.clone(), Output::Logged) {
        Ok(slot) => slot,
        Err(e) => return log::failed(&svc.name, &e),
    };
    match &svc.ready_path {
        None => log::ok(&svc.name, "started"),
        Some(p) => match sup.wait_ready(slot, p, Duration::from_secs(60)) {
            Ok(()) => log::ok(
                &svc.name,
                &format!("ready ({p}) after {:.2} s", t.elapsed().as_secs_f64()),
            ),
            Err(e) => log::failed(&svc.name, &e),
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
    }
}

/// Stops the boot sequence, keeps the machine up for debugging: PID 1 still reaps and
/// answers poweroff/reboot, and with `diskless.debug` a shell runs on the console.
fn fatal(stage: &str, why: &str) -> ! {
    log::failed(stage, why);
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
    let exit = sup.run();
    sup.shutdown(exit)
}
