//! `diskless-check`: the opt-in check hook. `diskless check` adds this binary to a boot (at
//! `/.diskless/check/diskless-check`, in an extra initrd, so production images carry no test
//! code) and sets `diskless.check=<mode>` on the kernel command line; once the boot sequence is
//! done, PID 1 starts it as a child, and it inspects the running node from the inside, prints
//! one `diskless-check: <name> ok|FAIL …` line per check and one `diskless-check-json: {…}`
//! line of measurements, then asks PID 1 to power off. The harness reads these lines from the
//! serial console. It is a separate process so that PID 1 keeps supervising (and restarting
//! containerd, for `diskless.check=restart`) while the checks run. With `diskless.check=join`
//! (and `lifecycle`, which also kills the kubelet once joined and waits for the init to restart
//! it) the node stays up afterwards: the harness is still watching it join through the API server
//! and stops the machine itself. `diskless.check=image-pressure` adds `pressure.rs`.

mod memory;
mod pressure;
mod watch;

use diskless_contract::console::{CheckLine, CheckMode, CHECK_JSON_PREFIX};
use diskless_contract::image::{ImageContract, Role, Service, IMAGES_IMPORTED};
use diskless_contract::node::{NodeConfig, BOOTSTRAP_KUBECONFIG, CLIENT_CA, NODE_JSON};
use diskless_init::cmdline::Cmdline;
use diskless_init::services::PID_DIR;
use diskless_init::{log, network, node, sys};
use serde_json::json;
use std::time::{Duration, Instant};

const TMPFS_MAGIC: i64 = 0x0102_1994;

fn main() {
    let word = std::env::args().nth(1).unwrap_or_else(|| "1".into());
    let code = match CheckMode::parse(&word) {
        Ok(mode) => check(mode),
        Err(e) => {
            print_result("mode", CheckLine::FAIL, e.to_string());
            finish(1, CheckMode::Once)
        }
    };
    std::process::exit(code);
}

struct Checker {
    failures: usize,
}

impl Checker {
    /// Prints the result; true when it passed.
    fn report(&mut self, name: &str, result: Result<String, String>) -> bool {
        let (status, detail) = match result {
            Ok(detail) => (CheckLine::OK, detail),
            Err(why) => {
                self.failures += 1;
                (CheckLine::FAIL, why)
            }
        };
        print_result(name, status, detail);
        status == CheckLine::OK
    }

    fn skipped(&self, name: &str, why: String) {
        print_result(name, CheckLine::SKIPPED, why);
    }
}

/// One `diskless-check-json:` line, written to the console in one piece: `println!` would
/// hand a line of several kB to the terminal in 1 KiB writes, between which PID 1's relayed
/// service logs (a control plane's are many) can land and break the JSON the harness reads.
fn print_json(value: serde_json::Value) {
    log::line(&format!("{CHECK_JSON_PREFIX}{value}"));
}

fn print_result(name: &str, status: &str, detail: String) {
    let line = CheckLine::Result {
        name: name.into(),
        status: status.into(),
        detail,
    };
    println!("{}", line.render());
}

/// [`diskless_init::run::run`] with the time limit every check needs: a hung containerd must
/// fail a check, not the whole run.
pub(crate) fn run(argv: &[&str], limit: Duration) -> Result<String, String> {
    diskless_init::run::run(argv, Some(limit)).map_err(|e| e.to_string())
}

pub(crate) fn service_pid(name: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(format!("{PID_DIR}/{name}.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

fn retry<T>(limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn check(mode: CheckMode) -> i32 {
    let contract = match ImageContract::load() {
        Ok(c) => c,
        Err(e) => {
            print_result("contract", CheckLine::FAIL, e.to_string());
            return finish(1, mode);
        }
    };
    let runtime = contract.service(Role::ContainerRuntime);
    let image_kubelet = contract.service(Role::Kubelet);
    // Watched from now on: reported (with when they first held) where the checks reach them.
    let (healthy, pod) = match image_kubelet {
        Some(_) => (
            Some(watch::FirstSeen::start(
                Duration::from_millis(250),
                Duration::from_secs(90),
                kubelet_healthz,
            )),
            Some(watch::FirstSeen::start(
                Duration::from_secs(1),
                Duration::from_secs(180),
                || running_tasks().map(|_| ()),
            )),
        ),
        None => (None, None),
    };
    let mut c = Checker { failures: 0 };
    // Memory first: containerd is idle now, before the checks start containers; and again at
    // the end, with the kubelet's pods (static, and with --join the API pod) running.
    let memory = || memory::report(runtime, image_kubelet, &contract.services);
    print_json(json!({ "memory": memory() }));

    c.report("root-tmpfs", check_root());
    c.report("network", check_network());
    if runtime.is_some() {
        c.report(
            "containerd",
            retry(Duration::from_secs(10), || {
                run(&["ctr", "version"], Duration::from_secs(10))
            })
            .map(|v| {
                v.lines()
                    .find(|l| l.contains("Version"))
                    .unwrap_or("")
                    .trim()
                    .to_string()
            }),
        );
        // The test container would compete with the kubelet starting its first pod for the
        // guest's CPU (one host thread under TCG): it waits until the watcher saw that pod
        // (or gave up), so the timeline is the node's, not the node's plus the test's.
        if let Some(pod) = &pod {
            let _ = pod.wait();
        }
        c.report("container-runc", check_container());
    }
    let node = node::load();
    match check_node(&node) {
        Ok(None) => c.skipped("node", format!("no {NODE_JSON}")),
        Ok(Some(detail)) => _ = c.report("node", Ok(detail)),
        Err(e) => _ = c.report("node", Err(e)),
    }
    if let Some(image_kubelet) = image_kubelet {
        // What the init started: the image's service with this node's flags.
        match node::kubelet_service(image_kubelet, &node) {
            Err(why) => c.skipped("kubelet", why.to_string()),
            Ok(kubelet) => match &kubelet.service.condition_path {
                Some(p) if !std::path::Path::new(p).exists() => {
                    c.skipped("kubelet", format!("condition_path {p} missing"))
                }
                _ => {
                    c.report("kubelet-args", check_kubelet_args(&kubelet.service));
                    c.report("kubelet-config", check_kubelet_config(&kubelet));
                    let (healthy, pod) = (healthy.as_ref().unwrap(), pod.as_ref().unwrap());
                    c.report("kubelet-healthz", check_kubelet_healthz(healthy));
                    // A node that cannot join runs no pods worth waiting for.
                    match joined_cert(&kubelet.service) {
                        None => _ = c.report("static-pod", check_pod_running(&contract, pod)),
                        // Joined, the image's static pods are off (kubeletconf.rs): the
                        // pod that runs is the one the cluster sends.
                        Some(cert) => {
                            if c.report("kubelet-join", check_kubelet_join(&cert)) {
                                c.report("api-pod", check_pod_running(&contract, pod));
                            } else {
                                c.skipped("api-pod", "the kubelet has not joined".into());
                            }
                        }
                    }
                }
            },
        }
    }
    if !contract.images.is_empty() {
        // The deferred images are imported while the kubelet starts: wait until the init is done.
        c.report(
            "preloaded-refs",
            retry(Duration::from_secs(180), imports_done).and_then(|_| check_refs(&contract)),
        );
        if contract
            .images
            .iter()
            .any(|i| i.labels.contains_key(PINNED))
        {
            c.report("preloaded-pinned", check_pinned(&contract));
        }
        c.report(
            "preloaded-run",
            check_image_run(&contract.images[0].refs[0]),
        );
    }
    // `lifecycle` (`diskless check --join --lifecycle`): the kubelet is killed once joined, and
    // must come back; the harness then sees the node renew its lease through the API.
    if let Some(kubelet) = image_kubelet.filter(|_| mode == CheckMode::Lifecycle) {
        c.report("kubelet-restart", check_kubelet_restart(kubelet));
    }
    if mode == CheckMode::ControlPlane {
        c.report("control-plane-ports", check_control_plane_ports());
    }
    print_json(json!({ "memory_after": memory() }));
    if mode == CheckMode::ImagePressure {
        c.report("image-pressure", pressure::check(&contract));
    }
    if let Some(runtime) = runtime.filter(|_| mode == CheckMode::Restart) {
        c.report("containerd-restart", check_restart(runtime));
    }
    finish(c.failures, mode)
}

/// A control plane's ports accept connections on the node's loopback: etcd's clients, the API
/// server, the controller-manager's and the scheduler's secure ports (each binds once it has
/// reached the API server). Then a moment for the first work to settle before the memory.
fn check_control_plane_ports() -> Result<String, String> {
    use diskless_contract::controlplane::{
        API_PORT, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, SCHEDULER_PORT,
    };
    let t = Instant::now();
    let ports = [
        ("etcd", ETCD_CLIENT_PORT),
        ("kube-apiserver", API_PORT),
        ("kube-controller-manager", CONTROLLER_MANAGER_PORT),
        ("kube-scheduler", SCHEDULER_PORT),
    ];
    let mut seen = Vec::new();
    for (name, port) in ports {
        retry(Duration::from_secs(300), || {
            std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_secs(1),
            )
            .map_err(|e| {
                format!(
                    "{name} on 127.0.0.1:{port}: {e} after {:.0} s",
                    t.elapsed().as_secs_f64()
                )
            })
        })?;
        seen.push(format!("{name}:{port} {:.1} s", t.elapsed().as_secs_f64()));
    }
    std::thread::sleep(Duration::from_secs(10));
    Ok(format!("listening: {}", seen.join(", ")))
}

fn finish(failures: usize, mode: CheckMode) -> i32 {
    println!("{}", CheckLine::Done { failures }.render());
    // Ask PID 1 for an orderly poweroff (busybox `poweroff` does the same), so QEMU exits;
    // only when PID 1 started us (the hook), not when someone runs it by hand.
    if std::os::unix::process::parent_id() == 1 && !mode.stays_up() {
        // SAFETY: sending a signal to PID 1 has no memory-safety implications.
        unsafe { libc::kill(1, libc::SIGUSR2) };
    }
    i32::from(failures > 0)
}

fn check_root() -> Result<String, String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|e| e.to_string())?;
    let fstype = mounts
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"/")).then(|| f.get(2).copied().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    let (magic, bsize, blocks, bfree) = sys::statfs("/").map_err(|e| e.to_string())?;
    if fstype == "tmpfs" && magic == TMPFS_MAGIC {
        Ok(format!(
            "tmpfs size={}MiB used={}MiB",
            (blocks * bsize) >> 20,
            ((blocks - bfree) * bsize) >> 20
        ))
    } else {
        Err(format!("/ is {fstype:?} (magic {magic:#x}), not a tmpfs"))
    }
}

fn check_network() -> Result<String, String> {
    let state = std::fs::read_to_string(network::STATE_FILE)
        .map_err(|e| format!("no {}: {e}", network::STATE_FILE))?;
    let get = |k: &str| {
        state
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
    };
    let (iface, address) = (get("interface"), get("address"));
    let shown = run(
        &["ip", "-4", "addr", "show", "dev", iface],
        Duration::from_secs(5),
    )?;
    let ip = address.split('/').next().unwrap_or("");
    if ip.is_empty() || !shown.contains(ip) {
        return Err(format!(
            "{iface} does not carry {address}: {}",
            shown.trim()
        ));
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // busybox `ip route show default` lists every route: filter ourselves.
    let routes = run(&["ip", "route"], Duration::from_secs(5)).unwrap_or_default();
    let route = routes
        .lines()
        .find(|l| l.starts_with("default"))
        .unwrap_or("none");
    Ok(format!(
        "{iface} {address} source={} hostname={} default-route={:?}",
        get("source"),
        hostname.trim(),
        route.trim()
    ))
}

/// A throwaway container from a one-binary rootfs (static busybox), without any image:
/// proves runc can create namespaces and pivot_root from our root.
fn check_container() -> Result<String, String> {
    let root = "/tmp/diskless-check/rootfs";
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(format!("{root}/{d}")).map_err(|e| e.to_string())?;
    }
    std::fs::copy("/usr/bin/busybox", format!("{root}/bin/busybox"))
        .map_err(|e| format!("copy /usr/bin/busybox into the check rootfs: {e}"))?;
    let t = Instant::now();
    let out = run(
        &[
            "ctr",
            "run",
            "--rm",
            "--rootfs",
            root,
            "diskless-check",
            "/bin/busybox",
            "sh",
            "-c",
            "echo container-ok pid=$$",
        ],
        Duration::from_secs(60),
    )?;
    let _ = std::fs::remove_dir_all("/tmp/diskless-check");
    if out.contains("container-ok pid=1") {
        Ok(format!("ran in {:.2} s", t.elapsed().as_secs_f64()))
    } else {
        Err(format!("unexpected output {:?}", out.trim()))
    }
}

/// The node configuration the init applied, as the running system shows it: the hostname
/// (the command line's `diskless.hostname=` wins over the node's) and secret files still 0600
/// after the root switch. `Ok(None)` without a per-node segment.
fn check_node(
    node: &Result<Option<NodeConfig>, node::NodeFileError>,
) -> Result<Option<String>, String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let n = match node {
        Ok(None) => return Ok(None),
        Ok(Some(n)) => n,
        Err(e) => return Err(e.to_string()),
    };
    let cmdline = Cmdline::read().ok().and_then(|c| c.hostname);
    let wanted = node::fixed_hostname(cmdline.as_deref(), Some(n)).unwrap_or_default();
    let actual = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    if actual.trim() != wanted {
        return Err(format!(
            "hostname is {:?}, the node configuration says {wanted:?}",
            actual.trim()
        ));
    }
    let mut modes = Vec::new();
    for path in [NODE_JSON, BOOTSTRAP_KUBECONFIG, CLIENT_CA] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 || meta.uid() != 0 {
            return Err(format!(
                "{path} is mode {mode:04o} owned by uid {}: secrets must be 0600 root",
                meta.uid()
            ));
        }
        let name = path.rsplit('/').next().unwrap_or(path);
        modes.push(format!("{name}:{mode:04o}"));
    }
    let n = NodeConfig {
        hostname: actual.trim().to_string(),
        ..n.clone()
    };
    Ok(Some(format!("{} files={}", n.summary(), modes.join(","))))
}

/// The running kubelet's command line (`/proc/<pid>/cmdline`) is exactly what the init means
/// to start for this node; printed, so the per-node flags are in the console log.
fn check_kubelet_args(kubelet: &Service) -> Result<String, String> {
    let expected = &kubelet.command;
    retry(Duration::from_secs(30), || {
        let pid = service_pid(&kubelet.name).ok_or("kubelet is not running")?;
        let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map_err(|e| format!("read /proc/{pid}/cmdline: {e}"))?;
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args == *expected {
            Ok(format!("pid={pid} {}", args.join(" ")))
        } else {
            Err(format!(
                "kubelet (pid {pid}) runs {args:?}, expected {expected:?}"
            ))
        }
    })
}

/// The drop-in the kubelet reads holds exactly the node's settings the init meant to write.
fn check_kubelet_config(kubelet: &node::Kubelet) -> Result<String, String> {
    let path = kubelet.drop_in_path();
    let on_disk =
        std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let expected = kubelet.drop_in.to_bytes();
    if on_disk != expected {
        return Err(format!(
            "{} holds {:?}, expected {:?}",
            path.display(),
            String::from_utf8_lossy(&on_disk),
            String::from_utf8_lossy(&expected)
        ));
    }
    let compact: serde_json::Value =
        serde_json::from_slice(&on_disk).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(format!("{} {compact}", path.display()))
}

/// In join mode, the client certificate the kubelet's certificate manager writes once the
/// cluster signed its bootstrap CSR. (Not its kubeconfig: with certificate rotation the kubelet
/// writes that, pointing at this file, before it has a certificate.)
fn joined_cert(kubelet: &Service) -> Option<String> {
    node::flag_value(&kubelet.command, "--bootstrap-kubeconfig")?;
    let dir = node::flag_value(&kubelet.command, "--cert-dir")
        .unwrap_or_else(|| "/var/lib/kubelet/pki".into());
    Some(format!("{dir}/kubelet-client-current.pem"))
}

/// Why a join fails, from the kubelet's log: the first pattern found in its newest error lines.
/// The first [`DEFINITIVE_JOIN_ERRORS`] do not heal by waiting.
const DEFINITIVE_JOIN_ERRORS: usize = 2;
const JOIN_ERRORS: &[(&str, &str)] = &[
    (
        "certificate signed by unknown authority",
        "the cluster CA in the node segment does not match the API server's certificate",
    ),
    (
        "Unauthorized",
        "the API server refuses the bootstrap token (expired, unknown or malformed)",
    ),
    (
        "connection refused",
        "nothing answers at the bootstrap kubeconfig's API server address",
    ),
    (
        "no route to host",
        "the bootstrap kubeconfig's API server address is unreachable",
    ),
    (
        "i/o timeout",
        "the bootstrap kubeconfig's API server address does not answer",
    ),
    (
        "no such host",
        "the bootstrap kubeconfig's API server name does not resolve",
    ),
];

/// Joined: the kubelet's bootstrap CSR was signed and it holds its own certificate. A kubelet
/// that cannot join still answers /healthz, so this is the check that can fail on the one thing
/// join mode is for; the failure says why, from the kubelet's own log.
fn check_kubelet_join(cert: &str) -> Result<String, String> {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(60);
    loop {
        if std::path::Path::new(cert).exists() {
            return Ok(format!(
                "t={:.3} client certificate issued after {:.1} s of checking",
                log::uptime(),
                t.elapsed().as_secs_f64()
            ));
        }
        // A CA that does not match, or a token the API server refuses, will not heal by
        // waiting: say so at once. An API server that does not answer may yet come.
        let why = join_error();
        let definitive = why.as_ref().is_some_and(|(final_, _)| *final_);
        if definitive || Instant::now() > deadline {
            return Err(format!(
                "not joined after {:.0} s: {}",
                t.elapsed().as_secs_f64(),
                why.map(|(_, w)| w)
                    .unwrap_or_else(|| format!("{cert} never written; see /var/log/kubelet.log"))
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The first of [`JOIN_ERRORS`] in the kubelet's newest log lines: (whether waiting cannot
/// help, why in words with the line).
fn join_error() -> Option<(bool, String)> {
    let log = std::fs::read_to_string("/var/log/kubelet.log").unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(400).collect();
    JOIN_ERRORS
        .iter()
        .enumerate()
        .find_map(|(i, (needle, why))| {
            let line = lines.iter().find(|l| l.contains(needle))?;
            Some((
                i < DEFINITIVE_JOIN_ERRORS,
                format!("{why} (kubelet: {})", line.trim()),
            ))
        })
}

/// The kubelet's healthz endpoint says ok.
fn kubelet_healthz() -> Result<(), String> {
    let b = run(
        &["wget", "-q", "-O", "-", "http://127.0.0.1:10248/healthz"],
        Duration::from_secs(5),
    )?;
    if b.trim() == "ok" {
        Ok(())
    } else {
        Err(format!("healthz says {b:?}"))
    }
}

/// `t=` is guest uptime when healthz first said ok (watched from the hook's start), like the
/// init's stage lines: the harness puts it in the timeline.
fn check_kubelet_healthz(healthy: &watch::FirstSeen) -> Result<String, String> {
    let t = Instant::now();
    let at = healthy.wait()?;
    Ok(format!(
        "t={at:.3} (waited {:.1} s for it here)",
        t.elapsed().as_secs_f64()
    ))
}

/// The running tasks of CRI's namespace once there is a pod's (sandbox + container ≥ 2).
fn running_tasks() -> Result<Vec<String>, String> {
    let out = run(
        &["ctr", "-n", "k8s.io", "tasks", "ls"],
        Duration::from_secs(10),
    )?;
    let running: Vec<String> = out
        .lines()
        .filter(|l| l.contains("RUNNING"))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    if running.len() >= 2 {
        Ok(running)
    } else {
        Err(format!(
            "{} running tasks in k8s.io: {}",
            running.len(),
            out.trim()
        ))
    }
}

/// A pod (standalone: the image's static pod; joined: the cluster's) is running when CRI has at
/// least one running task besides sandboxes (sandbox + container ≥ 2). When the image preloads images, every running container, the pod sandbox
/// included, must come from a preloaded reference: the guest has no route out, and this shows
/// that the sandbox uses the preloaded pause image rather than anything else.
/// `t=` is when the watcher first saw the pod's tasks running.
fn check_pod_running(contract: &ImageContract, pod: &watch::FirstSeen) -> Result<String, String> {
    let t = Instant::now();
    let at = pod.wait()?;
    let running = running_tasks()?;
    // `ctr containers ls`: CONTAINER IMAGE RUNTIME
    let out = run(
        &["ctr", "-n", "k8s.io", "containers", "ls"],
        Duration::from_secs(10),
    )?;
    let images: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (id, image) = (w.next()?, w.next()?);
            running.iter().any(|r| r == id).then(|| image.to_string())
        })
        .collect();
    let preloaded: Vec<&String> = contract.images.iter().flat_map(|i| &i.refs).collect();
    if !preloaded.is_empty() {
        if let Some(other) = images.iter().find(|i| !preloaded.contains(i)) {
            return Err(format!(
                "running container image {other} is not preloaded (running: {images:?})"
            ));
        }
    }
    Ok(format!(
        "t={at:.3} {} running tasks ({}) (waited {:.1} s for it here)",
        running.len(),
        images.join(", "),
        t.elapsed().as_secs_f64()
    ))
}

fn imports_done() -> Result<String, String> {
    std::fs::read_to_string(IMAGES_IMPORTED)
        .map_err(|e| format!("the init has not finished importing images ({IMAGES_IMPORTED}: {e})"))
}

fn check_refs(contract: &ImageContract) -> Result<String, String> {
    let out = run(
        &["ctr", "-n", "k8s.io", "images", "ls", "-q"],
        Duration::from_secs(20),
    )?;
    let have: Vec<&str> = out.lines().collect();
    // An image whose condition does not hold on this node was left out by the init.
    let missing: Vec<&String> = contract
        .images
        .iter()
        .filter(|i| i.wanted())
        .flat_map(|i| &i.refs)
        .filter(|r| !have.contains(&r.as_str()))
        .collect();
    if missing.is_empty() {
        Ok(format!("{} refs", have.len()))
    } else {
        Err(format!("missing in k8s.io: {missing:?}; present: {have:?}"))
    }
}

/// The label containerd's CRI reads as "never garbage-collect this image".
pub(crate) const PINNED: &str = "io.cri-containerd.pinned";

/// Every ref of an image labelled pinned is pinned as the CRI reports it to the kubelet
/// (`crictl inspecti`: `status.pinned`), which is what keeps the kubelet's image GC off it.
fn check_pinned(contract: &ImageContract) -> Result<String, String> {
    let refs: Vec<&String> = contract
        .images
        .iter()
        .filter(|i| i.wanted() && i.labels.contains_key(PINNED))
        .flat_map(|i| &i.refs)
        .collect();
    for r in &refs {
        let out = run(
            &["crictl", "inspecti", "-o", "json", r],
            Duration::from_secs(20),
        )?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("crictl inspecti {r}: {e}"))?;
        if v["status"]["pinned"] != true {
            return Err(format!("{r} is not pinned for the CRI: {}", v["status"]));
        }
    }
    Ok(format!("{} refs pinned", refs.len()))
}

/// Starts the first preloaded ref as a container; ctr never pulls, and the guest has no route
/// out, so this succeeds only from preloaded content.
fn check_image_run(image: &str) -> Result<String, String> {
    let id = "diskless-check-image";
    let t = Instant::now();
    let result = run(
        &["ctr", "-n", "k8s.io", "run", "-d", image, id],
        Duration::from_secs(60),
    )
    .and_then(|_| {
        run(
            &["ctr", "-n", "k8s.io", "tasks", "ls"],
            Duration::from_secs(10),
        )
    })
    .and_then(|ls| {
        let line = ls
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or("")
            .to_string();
        if line.contains("RUNNING") || line.contains("STOPPED") {
            Ok(format!(
                "{image} started in {:.2} s",
                t.elapsed().as_secs_f64()
            ))
        } else {
            Err(format!("task of {image} not found: {}", ls.trim()))
        }
    });
    let _ = run(
        &["ctr", "-n", "k8s.io", "tasks", "kill", "-s", "KILL", id],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = run(
        &["ctr", "-n", "k8s.io", "tasks", "rm", "-f", id],
        Duration::from_secs(10),
    );
    let _ = run(
        &["ctr", "-n", "k8s.io", "containers", "rm", id],
        Duration::from_secs(10),
    );
    result
}

/// SIGKILLs a service and waits for PID 1 to start it again: (old pid, new pid).
fn kill_and_await_restart(service: &Service, what: &str) -> Result<(i32, i32), String> {
    let old = service_pid(&service.name).ok_or(format!("{what} is not running"))?;
    // SAFETY: signalling a process id we just read; no memory involved.
    unsafe { libc::kill(old, libc::SIGKILL) };
    let new = retry(Duration::from_secs(30), || {
        match service_pid(&service.name) {
            Some(p) if p != old => Ok(p),
            _ => Err(format!("{what} (pid {old}) was not restarted")),
        }
    })?;
    Ok((old, new))
}

/// Kills the kubelet and waits for PID 1 to restart it and for the new one's /healthz.
fn check_kubelet_restart(kubelet: &Service) -> Result<String, String> {
    let t = Instant::now();
    let (old, new) = kill_and_await_restart(kubelet, "the kubelet")?;
    retry(Duration::from_secs(60), kubelet_healthz)?;
    Ok(format!(
        "t={:.3} killed pid {old}, pid {new} healthy after {:.1} s",
        log::uptime(),
        t.elapsed().as_secs_f64()
    ))
}

/// Kills containerd and waits for PID 1 to restart it and for the new one to answer.
fn check_restart(runtime: &Service) -> Result<String, String> {
    let t = Instant::now();
    let (old, new) = kill_and_await_restart(runtime, "containerd")?;
    retry(Duration::from_secs(30), || {
        run(&["ctr", "version"], Duration::from_secs(10))
    })?;
    Ok(format!(
        "killed pid {old}, pid {new} answering after {:.1} s",
        t.elapsed().as_secs_f64()
    ))
}
