//! Boots the host reference worker in QEMU through `diskless check`, the way a lab machine
//! network-boots it (iPXE ROM, slirp DHCP, HTTP), and judges the node from its console.
//! One image is built per test binary and shared; boots run one at a time (the machines
//! running this suite are small). Each boot takes about a minute under TCG.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");
/// One QEMU at a time.
static QEMU: Mutex<()> = Mutex::new(());

/// Why this machine cannot boot images, if it cannot.
fn missing_tools() -> Option<String> {
    let have = |p: &str| Path::new(p).exists();
    let on_path = |b: &str| {
        std::env::var_os("PATH")
            .map(|ps| std::env::split_paths(&ps).any(|d| d.join(b).is_file()))
            .unwrap_or(false)
    };
    if !on_path("qemu-system-x86_64") {
        return Some("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)".into());
    }
    if !have("/usr/lib/ipxe/qemu/efi-virtio.rom") {
        return Some("iPXE ROM missing (apt-get install ipxe-qemu)".into());
    }
    if !have("/usr/bin/containerd") || !have("/bin/busybox") {
        return Some("containerd or busybox-static missing on the host".into());
    }
    None
}

/// Builds the reference image into cargo's scratch directory for tests (reused, so no
/// temporary directories pile up; the builder's cache keeps rebuilds quick).
fn build(kubelet: Option<&str>) -> PathBuf {
    let name = if kubelet.is_some() {
        "boot-kubelet"
    } else {
        "boot-reference"
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(DISKLESS);
    cmd.args(["build", "--host", "--out"]).arg(&dir);
    match kubelet {
        Some(k) => cmd.env("KUBELET", k),
        None => cmd.env_remove("KUBELET"),
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "diskless build --host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn reference_image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(None))
}

/// Runs `diskless check --json`; returns (success, report).
fn check(out: &Path, extra: &[&str]) -> (bool, Value) {
    let _one = QEMU.lock().unwrap_or_else(|e| e.into_inner());
    let output = Command::new(DISKLESS)
        .arg("check")
        .arg(out)
        .args(["--json", "--timeout", "400"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "diskless check printed no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    // The numbers a benchmark report needs, in the test log.
    eprintln!(
        "check {extra:?}: ok={} timeline={} memory={}",
        report["ok"], report["timeline"], report["memory"]
    );
    (output.status.success(), report)
}

fn check_status<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    report["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["status"].as_str())
}

fn unpacked_mib(out: &Path) -> u64 {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("worker.json")).unwrap()).unwrap();
    index["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["unpacked_size"].as_u64().unwrap())
        .sum::<u64>()
        >> 20
}

#[test]
fn reference_worker_passes_check_in_512_mib() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = reference_image();
    let (ok, r) = check(out, &["--memory", "512"]);
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    for stage in [
        "mounts",
        "integrity",
        "switchroot",
        "modules",
        "network",
        "containerd",
        "boot",
    ] {
        let s = r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == stage);
        assert_eq!(s.map(|s| &s["status"]), Some(&Value::from("ok")), "{stage}");
    }
    for c in ["root-tmpfs", "network", "containerd", "container-runc"] {
        assert_eq!(check_status(&r, c), Some("ok"), "{c}");
    }
    let index = std::fs::read_to_string(out.join("worker.json")).unwrap();
    if index.contains("\"image-") {
        for c in ["preloaded-refs", "preloaded-run"] {
            assert_eq!(check_status(&r, c), Some("ok"), "{c}");
        }
    }
    assert!(r["memory"]["mem_used_kb"].as_u64().unwrap() > 0);
    assert!(
        r["timeline"]["qemu_exit"].is_number(),
        "the guest powered off"
    );
}

#[test]
fn too_little_ram_stops_with_a_clear_message() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = reference_image();
    // With RAM about the image's unpacked size, the kernel's initramfs (half of RAM) overflows.
    let memory = unpacked_mib(out).max(176).to_string();
    let (ok, r) = check(out, &["--memory", &memory]);
    assert!(!ok && r["ok"] == false, "check passed with {memory} MiB");
    let failures = r["failures"].to_string();
    assert!(failures.contains("stage integrity FAILED"), "{failures}");
    assert!(failures.contains("is missing"), "{failures}");
    assert!(failures.contains("too little RAM"), "{failures}");
    assert!(
        r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "switchroot"),
        "the init went on after the integrity failure"
    );
}

#[test]
fn killed_containerd_is_restarted_by_the_init() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    // Also exercises the command line's static address and hostname instead of DHCP.
    let (ok, r) = check(
        reference_image(),
        &[
            "--memory",
            "512",
            "--kill-containerd",
            "--append",
            "diskless.ip=10.0.2.15/24,10.0.2.2",
            "--append",
            "diskless.hostname=node-7",
        ],
    );
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    assert_eq!(check_status(&r, "containerd-restart"), Some("ok"));
    let network = r["checks"].to_string();
    assert!(
        network.contains("source=static hostname=node-7"),
        "{network}"
    );
    let restarts = r["restarts"].to_string();
    assert!(
        restarts.contains("service containerd was killed by signal 9"),
        "{restarts}"
    );
    assert!(
        restarts.contains("service containerd restarted"),
        "{restarts}"
    );
}

#[test]
fn kubelet_standalone_runs_a_static_pod() {
    let Some(kubelet) = std::env::var_os("KUBELET") else {
        eprintln!("skipped: no kubelet binary ($KUBELET unset)");
        return;
    };
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = build(Some(kubelet.to_str().expect("$KUBELET is UTF-8")));
    let (ok, r) = check(&out, &["--memory", "1024"]);
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    assert_eq!(check_status(&r, "kubelet-healthz"), Some("ok"));
    assert_eq!(check_status(&r, "static-pod"), Some("ok"));
}

/// The lab path end to end: publish to a boot server directory with an inventory, then boot
/// through its `boot.ipxe` as machines with different MACs. A publish of a second image is
/// killed half-way first: the known host keeps its (old) entry, the unknown one gets the
/// default image's (new) entry, and both boot.
#[test]
fn published_server_boots_the_entry_for_each_mac() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = reference_image();
    let lab = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-server");
    let _ = std::fs::remove_dir_all(&lab);
    std::fs::create_dir_all(&lab).unwrap();
    let inventory = lab.join("lab.toml");
    std::fs::write(
        &inventory,
        "default_image = \"worker\"\n\n[[hosts]]\nmac = \"52:54:00:aa:bb:01\"\nhostname = \"s2\"\nimage = \"worker\"\n",
    )
    .unwrap();
    let dest = lab.join("srv");
    let publish = |out: &Path, failpoint: Option<&str>| {
        let mut cmd = Command::new(DISKLESS);
        cmd.arg("publish")
            .arg(out)
            .arg("--to")
            .arg(&dest)
            .arg("--inventory")
            .arg(&inventory);
        if let Some(f) = failpoint {
            cmd.env("DISKLESS_FAILPOINT", f);
        }
        cmd.output().unwrap()
    };
    assert!(publish(out, None).status.success());
    let host_entry = std::fs::read_to_string(dest.join("hosts/52-54-00-aa-bb-01.ipxe")).unwrap();

    // A second build of the worker with another command line, published and killed after the
    // image entries were replaced but before the host entries were.
    let plan = lab.join("b.json");
    let o = Command::new(DISKLESS)
        .args(["plan", "--host", "-o"])
        .arg(&plan)
        .env_remove("KUBELET")
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut p: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    p["kernel"]["cmdline"] = Value::from("console=ttyS0,115200 panic=10 variant=b");
    std::fs::write(&plan, p.to_string()).unwrap();
    let b = lab.join("b");
    let o = Command::new(DISKLESS)
        .args(["build", "--plan"])
        .arg(&plan)
        .arg("--out")
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!publish(&b, Some("images-rendered")).status.success());
    let o = Command::new(DISKLESS)
        .args(["verify", "--to"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(
        std::fs::read_to_string(dest.join("hosts/52-54-00-aa-bb-01.ipxe")).unwrap(),
        host_entry,
        "the host entry was not yet replaced"
    );
    assert!(std::fs::read_to_string(dest.join("worker.ipxe"))
        .unwrap()
        .contains("variant=b"));

    // The known machine: its own entry, its inventory hostname, the old image.
    let (ok, r) = check(
        &dest,
        &["--server", "--mac", "52:54:00:aa:bb:01", "--memory", "512"],
    );
    assert!(ok && r["ok"] == true, "known host: {:#}", r["failures"]);
    let checks = r["checks"].to_string();
    assert!(checks.contains("hostname=s2"), "{checks}");
    // An unknown machine: the default image's entry (the new one), a generated hostname.
    let (ok, r) = check(
        &dest,
        &["--server", "--mac", "52:54:00:aa:bb:02", "--memory", "512"],
    );
    assert!(ok && r["ok"] == true, "unknown host: {:#}", r["failures"]);
    let checks = r["checks"].to_string();
    assert!(
        !checks.contains("hostname=s2") && checks.contains("hostname=worker-525400aabb02"),
        "{checks}"
    );
}
