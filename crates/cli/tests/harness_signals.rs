//! `diskless run` owns what it starts: stopped by SIGINT, SIGTERM or SIGKILL (as a terminal, a
//! supervisor, a script or `timeout` stops it), it leaves no QEMU and, with
//! `--join`, no etcd or API server behind, and it exits 130 or 143 after SIGINT or SIGTERM.
//! With the pinned stack installed the run joins a throwaway cluster (QEMU and the control
//! plane's daemons); without it, a plain run of a tiny image (QEMU alone, iPXE fetching a
//! kernel that is not one: the machine stays up). The machine needs no KVM: it is stopped
//! while it boots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");

/// One QEMU at a time: the machines this suite runs on have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Why this machine cannot boot images, if it cannot.
fn missing_tools() -> Option<String> {
    let on_path = |b: &str| {
        std::env::var_os("PATH")
            .is_some_and(|ps| std::env::split_paths(&ps).any(|d| d.join(b).is_file()))
    };
    if !on_path("qemu-system-x86_64") {
        return Some("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)".into());
    }
    for (file, pkg) in [
        ("/usr/lib/ipxe/qemu/efi-virtio.rom", "ipxe-qemu"),
        ("/bin/busybox", "busybox-static"),
    ] {
        if !Path::new(file).exists() {
            return Some(format!("{file} missing (apt-get install {pkg})"));
        }
    }
    None
}

/// The kubelet of the pinned stack, if the whole control plane is there to join.
fn stack_kubelet() -> Option<PathBuf> {
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
    ] {
        diskless_kube::stack::binary(b).ok()?;
    }
    diskless_kube::stack::binary("kubelet").ok()
}

/// The image the runs boot, built once: the host worker with the stack's kubelet when it can
/// join (and containerd is there for `build --host`), else a tiny one.
fn image() -> &'static (PathBuf, bool) {
    static IMAGE: OnceLock<(PathBuf, bool)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let kubelet = stack_kubelet().filter(|_| Path::new("/usr/bin/containerd").exists());
        let dir = tmp.join(match kubelet {
            Some(_) => "signals-kubelet",
            None => "signals-tiny",
        });
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(DISKLESS);
        match &kubelet {
            Some(k) => cmd.env("KUBELET", k).args(["build", "--host", "--out"]),
            None => cmd
                .args(["build", "--plan"])
                .arg(tiny_plan(tmp))
                .arg("--out"),
        };
        let out = cmd.arg(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "diskless build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, kubelet.is_some())
    })
}

/// A plan named `worker` with one small component and a kernel image only a boot loader's
/// header check accepts: iPXE fetches everything, then cannot start it, and the machine stays.
fn tiny_plan(tmp: &Path) -> PathBuf {
    let src = tmp.join("signals-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("kernel"),
        diskless_builder::resolve::bzimage::fake_for_tests(),
    )
    .unwrap();
    let plan = serde_json::json!({
        "version": 1, "name": "worker",
        "kernel": {"image": src.join("kernel"), "cmdline": "console=ttyS0"},
        "components": [{"name": "one", "generated": [{"dest": "/init", "contents": "#!/bin/sh\n", "mode": "0755"}]}],
    });
    let path = src.join("plan.json");
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    path
}

/// Every process's (parent, name), from /proc.
fn processes() -> BTreeMap<u32, (u32, String)> {
    let mut all = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        // A zombie has exited: only its parent's wait is left.
        if state != "Z" {
            all.insert(pid, (ppid, name));
        }
    }
    all
}

/// `root`'s descendants that are alive: pid → name.
fn descendants(root: u32) -> BTreeMap<u32, String> {
    let all = processes();
    let mut found = BTreeMap::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, (ppid, name)) in &all {
            if *ppid == parent && !found.contains_key(pid) {
                found.insert(*pid, name.clone());
                parents.push(*pid);
            }
        }
    }
    found
}

/// Which of `pids` still run under the same name.
fn survivors(pids: &BTreeMap<u32, String>) -> Vec<String> {
    let all = processes();
    pids.iter()
        .filter(|(pid, name)| all.get(pid).is_some_and(|(_, n)| n == *name))
        .map(|(pid, name)| format!("{name} ({pid})"))
        .collect()
}

/// Starts `diskless run`, waits until QEMU (and with `--join` etcd and the API server) run,
/// sends `signal` to diskless alone, and requires every process it started gone.
fn stopped_by(signal: libc::c_int, expected_code: Option<i32>) {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (out, join) = image();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(DISKLESS);
    cmd.arg("run")
        .arg(out)
        .args(["--memory", "512", "--accel", "tcg"]);
    if *join {
        cmd.arg("--join");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let wanted: &[&str] = if *join {
        &["qemu-system-x86", "etcd", "kube-apiserver"]
    } else {
        &["qemu-system-x86"]
    };
    let deadline = Instant::now() + Duration::from_secs(if *join { 300 } else { 60 });
    let started = loop {
        let d = descendants(pid);
        if wanted.iter().all(|w| d.values().any(|n| n == w)) {
            break d;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "diskless run exited ({status}) before {wanted:?} ran:\n{}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{wanted:?} not all running; descendants {d:?}:\n{}",
            std::fs::read_to_string(log.path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the machine get going (iPXE's first downloads) before it is interrupted.
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("diskless run (pid {pid}) started {started:?}; sending signal {signal}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
    match expected_code {
        Some(code) => {
            assert_eq!(status.code(), Some(code), "{status}:\n{text}");
            assert!(
                text.contains(&format!("signal {signal}: stopped")),
                "{text}"
            );
        }
        None => assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(signal),
            "{status}"
        ),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = survivors(&started);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after signal {signal} these outlived diskless run: {left:?}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sigint_stops_everything_run_started() {
    stopped_by(libc::SIGINT, Some(130));
}

#[test]
fn sigterm_stops_everything_run_started() {
    stopped_by(libc::SIGTERM, Some(143));
}

#[test]
fn sigkill_leaves_nothing_run_started() {
    stopped_by(libc::SIGKILL, None);
}
