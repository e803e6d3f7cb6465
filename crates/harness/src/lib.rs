//! Boots built images in QEMU the way a lab machine does: the NIC's iPXE ROM gets DHCP from
//! slirp, fetches the iPXE script and the objects over HTTP (or TFTP), and boots the kernel
//! with its initrd segments. `diskless run` puts the console on the terminal; `diskless check`
//! adds `diskless.check=1` to the kernel command line and the check hook as one more initrd
//! (`hook.rs`), reads the console, and asserts that every init stage and every in-guest check
//! passed (see `console.rs`, and the init crate's `bin/diskless-check/` for what the guest
//! checks). README.md says more.

pub mod cluster;
pub mod cluster_control_plane;
pub mod clusterdns;
mod console;
pub mod controlplane;
pub mod controlplane_vm;
mod hook;
pub mod join;
pub mod lifecycle;
pub mod logged;
pub mod netns;
mod qemu;
/// A serial console line without ANSI escapes and control characters (for tests that run
/// QEMU themselves).
pub use qemu::clean as clean_console;
pub use qemu::{Accel, Transport};
mod serve;

use anyhow::{bail, Context};
use console::Console;
use diskless_builder::ipxe::words::{BaseUrl, Word, Words};
use diskless_builder::ipxe::Extra;
use diskless_builder::{index::Index, store::object_path};
use diskless_contract::console::{CheckLine, CheckMode};
use diskless_publish::Additions;
use qemu::{Machine, Source};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    /// Kill QEMU after this many seconds.
    pub timeout: u64,
    /// Join a throwaway control plane on the host (`join.rs`): OUT is a build output, published
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
    pub join_fault: Option<join::Fault>,
    /// With `boot.join`: once joined, kill the kubelet, stop the API server for 30 s, and
    /// power-cycle the machine; each time the node must come back (`lifecycle.rs`).
    pub lifecycle: bool,
    /// Fill the node's RAM root past the kubelet's image-filesystem threshold; its image GC
    /// must delete the unpinned preloaded images and keep the pinned ones.
    pub image_pressure: bool,
}

/// What a boot needs: the files of the boot directory (`boot.ipxe`, what DHCP names, among
/// them), the kernel, the image name.
struct Prepared {
    files: Vec<(String, Vec<u8>)>,
    kernel: PathBuf,
    image: String,
}

/// A published boot server: every entry as served, or with `add` (the check hook) rendered
/// into every image and host entry, and a kernel for the KVM probe.
fn prepare_server(args: &BootOptions, add: &Additions) -> anyhow::Result<Prepared> {
    let dest = &args.out;
    let generation = diskless_publish::generations(dest)?
        .pop()
        .with_context(|| {
            format!(
                "{} has no generations/: publish to it first",
                dest.display()
            )
        })?;
    let (name, image) = generation
        .images
        .iter()
        .next()
        .context("the newest generation publishes no image")?;
    let index = Index::load(&dest.join(object_path(&image.index)))?;
    if !dest.join("boot.ipxe").is_file() {
        bail!(
            "{} has no boot.ipxe: is it a published boot server directory?",
            dest.display()
        );
    }
    let scripts = if add.cmdline.is_empty() && add.initrds.is_empty() {
        // Exactly what the lab's boot server serves.
        published_entries(dest)?
    } else {
        diskless_publish::local_entries(dest, add)?
    };
    Ok(Prepared {
        files: scripts
            .into_iter()
            .map(|(rel, text)| (rel, text.into_bytes()))
            .collect(),
        kernel: dest.join(index.kernel.object_path()),
        image: name.to_string(),
    })
}

/// The `.ipxe` files of a boot server directory and its `hosts/`, as they are.
fn published_entries(dest: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut scripts = Vec::new();
    for dir in ["", "hosts"] {
        let Ok(rd) = std::fs::read_dir(dest.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".ipxe") {
                continue;
            }
            let rel = if dir.is_empty() {
                file
            } else {
                format!("{dir}/{file}")
            };
            scripts.push((rel, std::fs::read_to_string(e.path())?));
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// `add` holds the check hook's kernel argument and initrd; `hook` the segment's bytes.
fn prepare(args: &BootOptions, add: &Additions, hook: Option<Vec<u8>>) -> anyhow::Result<Prepared> {
    let mut prepared = if args.server {
        prepare_server(args, add)?
    } else {
        prepare_build(args, add)?
    };
    if let Some(bytes) = hook {
        prepared.files.push((hook::SEGMENT.to_string(), bytes));
    }
    Ok(prepared)
}

/// A build output directory: its image's entry, or with `add` rendered in.
fn prepare_build(args: &BootOptions, add: &Additions) -> anyhow::Result<Prepared> {
    let index_path = args.out.join(format!("{}.json", args.name));
    let index_bytes = std::fs::read(&index_path).with_context(|| {
        format!(
            "cannot read {}: is {} the output of `diskless build` (and --name right)?",
            index_path.display(),
            args.out.display()
        )
    })?;
    let index = Index::load(&index_path)?;
    let kernel = args.out.join(index.kernel.object_path());
    for path in std::iter::once(kernel.clone()).chain(
        index
            .segments
            .iter()
            .map(|s| args.out.join(s.object_path())),
    ) {
        if !path.is_file() {
            bail!(
                "{} is missing: the output directory is incomplete; rebuild it",
                path.display()
            );
        }
    }
    let sha = diskless_builder::store::sha256_hex(&index_bytes);
    let script = if add.cmdline.is_empty() && add.initrds.is_empty() {
        // Exactly what a lab's boot server would serve.
        let p = args.out.join(format!("{}.ipxe", args.name));
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?
    } else {
        let extra = Extra {
            comment: None,
            cmdline: add.cmdline.clone(),
            initrds: add.initrds.clone(),
        };
        diskless_builder::ipxe::script(&index, &sha, &BaseUrl::default(), &extra)
    };
    Ok(Prepared {
        files: vec![("boot.ipxe".into(), script.into_bytes())],
        kernel,
        image: index.name.into(),
    })
}

/// A running guest with its boot server; dropping it removes the boot directory.
struct Guest {
    child: std::process::Child,
    _boot: serve::BootDir,
    http: Option<serve::HttpServer>,
    accel_note: String,
    started: Instant,
}

/// Starts QEMU and the boot server. `interactive`: the console on this terminal with QEMU's
/// Ctrl-A escapes; otherwise it is piped to the harness.
fn start(
    args: &BootOptions,
    prepared: &Prepared,
    interactive: bool,
    forwards: &[qemu::Forward],
) -> anyhow::Result<Guest> {
    let boot = serve::BootDir::new(&args.out, &prepared.files)?;
    let http = match args.transport {
        Transport::Http => Some(serve::HttpServer::start(boot.dir.path())?),
        Transport::Tftp => None,
    };
    let source = match &http {
        Some(h) => Source::Http { port: h.port },
        None => Source::Tftp {
            dir: boot.dir.path(),
        },
    };
    let (accel, accel_note) = qemu::resolve_accel(args.accel, &prepared.kernel);
    let machine = Machine {
        memory_mib: args.memory,
        cpus: args.cpus,
        mac: args.mac.clone(),
        accel,
        forwards: forwards.to_vec(),
    };
    let mut cmd = machine.command(&source)?;
    if interactive {
        eprintln!(
            "diskless run: {} with {} MiB, accel {accel_note}; QEMU escapes: Ctrl-A x quits, Ctrl-A c monitor",
            prepared.image, args.memory
        );
        cmd.args(["-serial", "mon:stdio"]);
    } else {
        cmd.args(["-serial", "stdio", "-monitor", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
    }
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} (apt-get install qemu-system-x86 ipxe-qemu)",
            qemu::QEMU
        )
    })?;
    Ok(Guest {
        child,
        _boot: boot,
        http,
        accel_note,
        started,
    })
}

/// `diskless run`: the console on this terminal until the guest powers off or the timeout.
/// With `join`, a throwaway cluster runs beside it until QEMU exits; its admin kubeconfig is
/// printed for `kubectl`.
pub fn run(a: &BootOptions) -> anyhow::Result<()> {
    let lab = if a.join {
        Some(join::Lab::start(&a.out, &a.name, &a.mac)?)
    } else {
        None
    };
    let joined = lab.as_ref().map(|l| l.boot_options(a));
    let (a, forwards) = match (&lab, &joined) {
        (Some(lab), Some(joined)) => {
            eprintln!(
                "diskless run: cluster up; the machine joins as node {}. In another terminal:\n  \
                 export KUBECONFIG={}\n  kubectl get nodes   # kubectl: {}",
                join::HOSTNAME,
                lab.cluster.admin_kubeconfig().display(),
                lab.cluster.kubectl_path().display()
            );
            (joined, lab.forwards()?)
        }
        _ => (a, Vec::new()),
    };
    let add = Additions {
        cmdline: a.append.clone(),
        initrds: Vec::new(),
    };
    let prepared = prepare(a, &add, None)?;
    let mut guest = start(a, &prepared, true, &forwards)?;
    let status = wait_bounded(&mut guest.child, Duration::from_secs(a.timeout))?;
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!("QEMU exited with {s}"),
        None => bail!("timeout: killed QEMU after {} s (--timeout)", a.timeout),
    }
}

fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Debug, Serialize)]
pub struct Timeline {
    /// Host seconds since QEMU started. iPXE's banner, if it reaches the serial console
    /// (Debian's build prints to VGA only: then its first HTTP request marks it).
    pub ipxe_start: Option<f64>,
    /// First and last byte served by the harness's HTTP server (not measured with TFTP).
    pub download_start: Option<f64>,
    pub download_done: Option<f64>,
    pub kernel_start: Option<f64>,
    pub check_done: Option<f64>,
    pub qemu_exit: Option<f64>,
    /// Guest seconds since kernel start.
    pub root_switched: Option<f64>,
    pub network_up: Option<f64>,
    pub containerd_ready: Option<f64>,
    pub images_imported: Option<f64>,
    pub kubelet_started: Option<f64>,
    /// First `/healthz` ok and static pod running, as seen by the check hook.
    pub kubelet_healthy: Option<f64>,
    pub static_pod_running: Option<f64>,
    pub boot_done: Option<f64>,
    /// With --join, as the API server showed them (polled every 0.3 s): the Node object
    /// exists, its Ready condition is True, the API-created pod is Running with a pod IP.
    pub node_registered: Option<f64>,
    pub node_ready: Option<f64>,
    pub api_pod_running: Option<f64>,
    /// From inside the API pod: the `kubernetes` Service answered through its ClusterIP, and
    /// its name resolved through the cluster DNS (CoreDNS on the node).
    pub service_reached: Option<f64>,
    pub cluster_dns: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub image: String,
    pub memory_mib: u32,
    pub accel: String,
    pub failures: Vec<String>,
    pub timeline: Timeline,
    pub download_bytes: Option<u64>,
    pub stages: Vec<console::Stage>,
    pub checks: Vec<console::CheckResult>,
    /// From the guest with containerd idle: mem_used_kb (MemTotal − MemAvailable), by kind
    /// (`meminfo_kb`, the zones' reserves), by filesystem (`initramfs_used_bytes`,
    /// `squashfs_images`, `filesystems`) and by process (`processes`, `rss_services_kb`).
    pub memory: Option<serde_json::Value>,
    /// The same once the checks are done: the kubelet's pods (static; with --join the API pod)
    /// running.
    pub memory_after: Option<serde_json::Value>,
    pub restarts: Vec<String>,
    /// With --join --lifecycle: kubelet killed, API server away, reboot and rejoin.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<lifecycle::Step>,
}

/// `diskless check`: boots with the check hook and judges the console. Err on any failure
/// (after printing the report).
pub fn check(args: &CheckOptions) -> anyhow::Result<()> {
    let report = check_report(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if report.ok {
        Ok(())
    } else {
        bail!("check failed: {}", report.failures.join("; "))
    }
}

pub fn check_report(args: &CheckOptions) -> anyhow::Result<CheckReport> {
    // With --join: the cluster and the boot server the machine boots from, kept until the end.
    let mut lab = if args.boot.join {
        Some(match (args.lifecycle, args.join_fault) {
            // A reboot must rejoin after the token it first booted with expired.
            (true, None) => join::Lab::start_minting(
                &args.boot.out,
                &args.boot.name,
                &args.boot.mac,
                lifecycle::MINTED_TOKEN_TTL,
            )?,
            (_, fault) => {
                join::Lab::start_with(&args.boot.out, &args.boot.name, &args.boot.mac, fault)?
            }
        })
    } else {
        None
    };
    let joined = lab.as_ref().map(|l| l.boot_options(&args.boot));
    let a = joined.as_ref().unwrap_or(&args.boot);
    let mode = match (args.kill_containerd, lab.is_some(), args.lifecycle) {
        (true, _, _) => CheckMode::Restart,
        (false, true, true) => CheckMode::Lifecycle,
        (false, true, false) => CheckMode::Join,
        (false, false, _) if args.image_pressure => CheckMode::ImagePressure,
        (false, false, _) => CheckMode::Once,
    };
    let add = |mode: CheckMode| Additions {
        cmdline: std::iter::once(
            Words::new(format!("diskless.check={}", mode.as_str())).expect("a check mode word"),
        )
        .chain(a.append.iter().cloned())
        .collect(),
        initrds: vec![Word::new(hook::SEGMENT).expect("the hook segment's path")],
    };
    let binary = match &args.hook {
        Some(p) => p.clone(),
        None => hook::default_binary()?,
    };
    let hook_segment = hook::segment(&binary)?;
    let prepared = prepare(a, &add(mode), Some(hook_segment.clone()))?;
    let forwards = match &lab {
        Some(lab) => lab.forwards()?,
        None => Vec::new(),
    };
    let Guest {
        child,
        _boot,
        http,
        accel_note,
        started,
    } = start(a, &prepared, false, &forwards)?;
    let watch = lab.as_ref().map(|l| l.watch());
    let (lines, mut child) = qemu::console_lines(child);
    let mut console = Console::default();
    let deadline = started + Duration::from_secs(a.timeout);
    let mut timed_out = false;
    let mut exited = None;
    let feed = |console: &mut Console, t: Instant, line: &str| {
        if args.verbose {
            eprintln!("{line}");
        }
        console.feed(t.duration_since(started).as_secs_f64(), line);
    };
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            timed_out = true;
            break;
        };
        match lines.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok((t, line)) => {
                feed(&mut console, t, &line);
                if console.stopped.is_some() {
                    // Let the init finish its explanation, then stop the machine.
                    std::thread::sleep(Duration::from_millis(500));
                    while let Ok((t, line)) = lines.try_recv() {
                        feed(&mut console, t, &line);
                    }
                    let _ = child.kill();
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                exited = Some(started.elapsed().as_secs_f64());
                break;
            }
        }
        // A joining machine stays up after its check hook: it is done once the API shows the
        // pod running too (or the hook failed, when the API will show nothing more).
        if let Some(w) = &watch {
            let hook_failed = console.checks.iter().any(|c| c.status == CheckLine::FAIL);
            if console.check_done && (w.done() || hook_failed) {
                break;
            }
        }
        if child.try_wait()?.is_some() {
            // Drain what is left of the console.
            while let Ok((t, line)) = lines.recv_timeout(Duration::from_millis(200)) {
                feed(&mut console, t, &line);
            }
            exited = Some(started.elapsed().as_secs_f64());
            break;
        }
    }
    let seen = watch.as_ref().map(|w| w.seen());
    drop(watch);
    let joined_ok = seen.as_ref().is_some_and(|s| join::failures(s).is_empty())
        && !console.checks.iter().any(|c| c.status == CheckLine::FAIL);
    let mut steps = Vec::new();
    if let Some(lab) = lab.as_mut().filter(|_| args.lifecycle && joined_ok) {
        let api = join::Api::for_lab(lab);
        let restarted = console
            .checks
            .iter()
            .find(|c| c.name == "kubelet-restart" && c.status == CheckLine::OK)
            .map(|c| c.detail.clone());
        steps.push(lifecycle::kubelet_restarted(&api, restarted.as_deref()));
        steps.push(lifecycle::api_server_away(lab, &api));
        if lab.first_token.is_some() {
            steps.push(lifecycle::token_expired_and_reminted(lab));
        }
        // A power cycle: the machine loses everything and boots again through the boot server.
        let old_boot = api.node_boot().ok().flatten().unwrap_or_default().0;
        let _ = child.kill();
        let _ = child.wait();
        let t = Instant::now();
        let again = prepare(a, &add(CheckMode::Join), Some(hook_segment))?;
        let guest = start(a, &again, false, &forwards)?;
        let (lines, mut second) = qemu::console_lines(guest.child);
        let mut console2 = Console::default();
        let limit = Duration::from_secs(a.timeout.min(400));
        let result = lifecycle::wait_for(limit, || {
            while let Ok((t2, line)) = lines.try_recv() {
                feed(&mut console2, t2, &line);
            }
            match &console2.stopped {
                Some(why) => lifecycle::Poll::Failed(format!("the second boot stopped: {why}")),
                None => lifecycle::rejoined(&api, &old_boot).into(),
            }
        });
        let _ = second.kill();
        let _ = second.wait();
        steps.push(lifecycle::Step {
            name: "reboot-rejoin".into(),
            ok: result.is_ok(),
            detail: result.unwrap_or_else(|e| e),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let _ = child.kill();
    let _ = child.wait();

    let mut failures = console.failures();
    if timed_out {
        failures.push(format!(
            "timeout: QEMU killed after {} s (--timeout)",
            a.timeout
        ));
    }
    if console.stopped.is_none() && !console.check_done {
        failures
            .push("the check hook never finished (see the console above with --verbose)".into());
    }
    if console.check_done && console.landmarks.power_off.is_none() && lab.is_none() {
        failures.push("the guest did not power off after the check".into());
    }
    if let Some(seen) = &seen {
        failures.extend(join::failures(seen));
    }
    if args.lifecycle && lab.is_some() && steps.is_empty() && failures.is_empty() {
        failures.push("--lifecycle: the node never joined, so nothing was tried".into());
    }
    for s in steps.iter().filter(|s| !s.ok) {
        failures.push(format!("lifecycle {} FAILED: {}", s.name, s.detail));
    }
    if args.kill_containerd
        && !console
            .checks
            .iter()
            .any(|c| c.name == "containerd-restart")
    {
        failures.push("no containerd-restart result although --kill-containerd was given".into());
    }
    if console.landmarks.kernel_start.is_none() && console.stages.is_empty() {
        failures.push(
            "the kernel never started: did iPXE fetch the script? (run with --verbose)".into(),
        );
    }
    let since = |i: Instant| i.saturating_duration_since(started).as_secs_f64();
    let (download_bytes, download_start, download_done) = match &http {
        Some(h) => {
            let t = h.transfers.lock().unwrap();
            let bytes = t.iter().map(|x| x.bytes).sum::<u64>();
            let first = t.iter().map(|x| since(x.start)).reduce(f64::min);
            let last = t.iter().map(|x| since(x.end)).reduce(f64::max);
            (Some(bytes), first, last)
        }
        None => (None, None, None),
    };
    let g = |n: &str| console.stage(n).map(|s| s.guest_t);
    // API observations in guest seconds: host time since QEMU start, less the kernel's start.
    let guest = |i: Option<Instant>| Some(since(i?) - console.kernel_start()?);
    let seen = seen.unwrap_or_default();
    let timeline = Timeline {
        ipxe_start: console.landmarks.ipxe_start.or(download_start),
        download_start,
        download_done,
        kernel_start: console.kernel_start(),
        check_done: console.landmarks.check_done,
        qemu_exit: exited,
        root_switched: g("switchroot"),
        network_up: g("network"),
        containerd_ready: g("containerd"),
        images_imported: g("images"),
        kubelet_started: g("kubelet"),
        kubelet_healthy: console.check_time("kubelet-healthz"),
        static_pod_running: console.check_time("static-pod"),
        boot_done: g("boot"),
        node_registered: guest(seen.node_registered),
        node_ready: guest(seen.node_ready),
        api_pod_running: guest(seen.api_pod_running),
        service_reached: guest(seen.service_reached),
        cluster_dns: guest(seen.cluster_dns),
    };
    if !failures.is_empty() && !args.verbose {
        eprintln!("--- last console lines ---");
        let n = console.lines.len();
        for l in &console.lines[n.saturating_sub(40)..] {
            eprintln!("{l}");
        }
        eprintln!("---");
    }
    Ok(CheckReport {
        ok: failures.is_empty(),
        image: prepared.image,
        memory_mib: a.memory,
        accel: accel_note,
        failures,
        timeline,
        download_bytes,
        stages: console.stages,
        checks: console.checks,
        memory: console.memory,
        memory_after: console.memory_after,
        restarts: console.restarts,
        lifecycle: steps,
    })
}

fn print_report(r: &CheckReport) {
    let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    println!(
        "image {} · {} MiB · accel {}",
        r.image, r.memory_mib, r.accel
    );
    let t = &r.timeline;
    println!("timeline (host s since QEMU start): iPXE {} · download {}–{} · kernel {} · check done {} · QEMU exit {}",
        f(t.ipxe_start), f(t.download_start), f(t.download_done), f(t.kernel_start), f(t.check_done), f(t.qemu_exit));
    println!("timeline (guest s since kernel start):");
    for s in &r.stages {
        println!(
            "  {:>8.3}  {:<12} {:<7} {}",
            s.guest_t, s.name, s.status, s.detail
        );
    }
    println!("checks:");
    for c in &r.checks {
        println!("  {:<20} {:<5} {}", c.name, c.status, c.detail);
    }
    for (when, m) in [
        ("containerd idle", &r.memory),
        ("checks done, pods running", &r.memory_after),
    ] {
        if let Some(m) = m {
            print_memory(when, m);
            print_memory_accounting(r.memory_mib, m);
        }
    }
    for s in &r.lifecycle {
        println!(
            "lifecycle {:<16} {:<5} {:.1} s  {}",
            s.name,
            if s.ok { "ok" } else { "FAIL" },
            s.seconds,
            s.detail
        );
    }
    for x in &r.restarts {
        println!("restart: {x}");
    }
    if r.ok {
        println!("check: ok");
    } else {
        for x in &r.failures {
            println!("FAIL: {x}");
        }
    }
}

/// MemTotal − MemAvailable split the way the kernel computes MemAvailable (6.1
/// `si_mem_available`: free pages, minus the watermark reserve, plus page cache and reclaimable
/// slab beyond the low watermark): what holds pages (tmpfs, anonymous, kernel), what the
/// estimate withholds (reserve, cache below the watermark), and the rest; then the RAM the
/// kernel never counted in MemTotal (struct pages, its image, firmware).
fn print_memory_accounting(memory_mib: u32, m: &serde_json::Value) {
    let Some(info) = m.get("meminfo_kb").and_then(|v| v.as_object()) else {
        return;
    };
    let kb = |k: &str| info.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let low = m
        .get("low_watermark_kb")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let reserve = m.get("reserve_kb").and_then(|v| v.as_u64()).unwrap_or(0);
    let used = kb("MemTotal").saturating_sub(kb("MemAvailable"));
    let pagecache = kb("Active(file)") + kb("Inactive(file)");
    let parts = [
        ("shmem (tmpfs roots, containerd data)", kb("Shmem")),
        ("anon (processes)", kb("AnonPages")),
        ("slab unreclaimable", kb("SUnreclaim")),
        ("kernel stacks", kb("KernelStack")),
        ("page tables", kb("PageTables")),
        ("vmalloc (modules…)", kb("VmallocUsed")),
        ("percpu", kb("Percpu")),
        ("watermark reserve", reserve),
        ("page cache below low wmark", (pagecache / 2).min(low)),
        (
            "reclaimable slab below low wmark",
            (kb("KReclaimable") / 2).min(low),
        ),
    ];
    let named: u64 = parts.iter().map(|(_, v)| v).sum();
    let mut line: Vec<String> = parts
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1024.0))
        .collect();
    line.push(format!("rest {:.1}", (used as f64 - named as f64) / 1024.0));
    println!(
        "memory accounted (MB of {:.1} used): {}",
        used as f64 / 1024.0,
        line.join(" · ")
    );
    println!(
        "memory outside MemTotal: {:.1} MB of the VM's {memory_mib} MiB (struct pages, kernel image, firmware); page cache {:.1} MB, buffers {:.1} MB, unevictable {:.1} MB",
        (u64::from(memory_mib) * 1024).saturating_sub(kb("MemTotal")) as f64 / 1024.0,
        kb("Cached") as f64 / 1024.0,
        kb("Buffers") as f64 / 1024.0,
        kb("Unevictable") as f64 / 1024.0,
    );
}

fn print_memory(when: &str, m: &serde_json::Value) {
    let kb = |k: &str| m.get(k).and_then(|v| v.as_u64());
    let mb = |v: Option<u64>, div: f64| v.map_or("-".into(), |v| format!("{:.1}", v as f64 / div));
    println!(
        "memory ({when}): used {} MB (MemTotal − MemAvailable) · image on tmpfs and initramfs {} MB · RSS containerd {} MB · kubelet {} MB",
        mb(kb("mem_used_kb"), 1024.0),
        mb(kb("rootfs_used_bytes"), 1048576.0),
        mb(kb("rss_containerd_kb"), 1024.0),
        mb(kb("rss_kubelet_kb"), 1024.0),
    );
    if let (Some(shmem), Some(anon), Some(slab)) = (kb("shmem_kb"), kb("anon_kb"), kb("slab_kb")) {
        println!(
            "memory by kind: shmem (tmpfs) {:.1} MB · anon {:.1} MB · slab {:.1} MB · kernel stacks + page tables {:.1} MB",
            shmem as f64 / 1024.0,
            anon as f64 / 1024.0,
            slab as f64 / 1024.0,
            (kb("kernel_stack_kb").unwrap_or(0) + kb("page_tables_kb").unwrap_or(0)) as f64 / 1024.0,
        );
    }
    if let Some(line) = memory_by_filesystem(m) {
        println!("{line}");
    }
    if let Some(line) = memory_by_process(m) {
        println!("{line}");
    }
}

/// Shmem by where its pages are: the initramfs (the squashfs images itemised) and each tmpfs.
fn memory_by_filesystem(m: &serde_json::Value) -> Option<String> {
    let mb = |b: u64| format!("{:.1}", b as f64 / 1048576.0);
    let initramfs = m.get("initramfs_used_bytes")?.as_u64()?;
    let images: Vec<String> = m
        .get("squashfs_images")?
        .as_array()?
        .iter()
        .filter_map(|i| {
            let file = i.get("file")?.as_str()?;
            let name = file.rsplit('/').next().unwrap_or(file);
            Some(format!("{name} {}", mb(i.get("bytes")?.as_u64()?)))
        })
        .collect();
    let mut parts = vec![format!(
        "initramfs {} (squashfs: {})",
        mb(initramfs),
        images.join(", ")
    )];
    let mut total = initramfs;
    for f in m.get("filesystems")?.as_array()? {
        let used = f.get("used_bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        total += used;
        parts.push(format!(
            "{} {}",
            f.get("mount").and_then(|v| v.as_str()).unwrap_or("?"),
            mb(used)
        ));
    }
    let shmem = m.get("shmem_kb")?.as_u64()? * 1024;
    Some(format!(
        "memory by filesystem (MB): {} · Σ {} of shmem {}",
        parts.join(" · "),
        mb(total),
        mb(shmem)
    ))
}

/// Anonymous memory by process, largest first; the sum next to AnonPages.
fn memory_by_process(m: &serde_json::Value) -> Option<String> {
    let procs = m.get("processes")?.as_array()?;
    let kb = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let total: u64 = procs.iter().map(|p| kb(p, "anon_kb")).sum();
    let parts: Vec<String> = procs
        .iter()
        .filter(|p| kb(p, "anon_kb") >= 512)
        .map(|p| {
            format!(
                "{} {:.1}",
                p.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                kb(p, "anon_kb") as f64 / 1024.0
            )
        })
        .collect();
    Some(format!(
        "memory by process (anon MB, ≥ 0.5): {} · Σ {:.1} of {} processes, AnonPages {:.1}",
        parts.join(" · "),
        total as f64 / 1024.0,
        procs.len(),
        m.get("anon_kb")?.as_u64()? as f64 / 1024.0
    ))
}
