//! Boots the host reference worker in QEMU through `diskless check`, the way a lab machine
//! network-boots it (iPXE ROM, slirp DHCP, HTTP), and judges the node from its console.
//! One image is built per test binary and shared. Each boot takes about a minute under TCG,
//! where a machine's CPUs run on one host thread: `scripts/test` runs these tests two at a
//! time (`--test-threads=2`), one QEMU per core of the machines this suite runs on.
//!
//! Why one file of over 800 lines: its tests must stay one test binary. The images are built
//! once per binary (`OnceLock`) and shared, and the two-at-a-time pairing works across all of
//! them; split into several binaries, each would build its images again and Cargo would run
//! the binaries one after another, a lone long boot leaving a core idle.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const DISKLESS: &str = env!("CARGO_BIN_EXE_diskless");

/// Why this machine cannot boot images, if it cannot.
fn missing_tools() -> Option<String> {
    let have = |p: &str| Path::new(p).exists();
    let Some(qemu) = which("qemu-system-x86_64") else {
        return Some("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)".into());
    };
    // QEMU loads the virtio NIC's iPXE ROM from its firmware path: Debian's includes
    // ipxe-qemu's /usr/lib/ipxe/qemu, nixpkgs' QEMU carries the ROM in its own share/qemu.
    let rom = "efi-virtio.rom";
    let datadir = qemu
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("share/qemu"));
    if !have(&format!("/usr/lib/ipxe/qemu/{rom}")) && !datadir.is_some_and(|d| d.join(rom).exists())
    {
        return Some("iPXE ROM missing (apt-get install ipxe-qemu)".into());
    }
    // The images these tests boot come from `plan --host`, which resolves Debian's packages.
    // (Inside a Nix build there are none: the flake's vm-* checks boot the Nix-built images.)
    if !have("/usr/bin/containerd") || !have("/bin/busybox") {
        return Some(
            "the host plan needs Debian's containerd and busybox-static (/usr/bin/containerd, \
             /bin/busybox); none here (in the Nix sandbox, `nix flake check`'s vm-* checks \
             boot the Nix-built images instead)"
                .into(),
        );
    }
    None
}

/// A program's path on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Builds the reference image into cargo's scratch directory for tests (reused, so no
/// temporary directories pile up; the builder's cache keeps rebuilds quick).
fn build(kubelet: Option<&str>, packing: &str) -> PathBuf {
    let name = match kubelet {
        Some(_) => format!("boot-kubelet-{packing}"),
        None => format!("boot-reference-{packing}"),
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(DISKLESS);
    cmd.args(["build", "--host", "--packing", packing, "--out"])
        .arg(&dir);
    match kubelet {
        Some(k) => cmd.env("KUBELET", k),
        None => cmd.env_remove("KUBELET").arg("--no-kubelet"),
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "diskless build --host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The reference worker as built by default (containerd squashfs-packed).
fn reference_image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(None, "squashfs"))
}

/// The reference worker with every file unpacked by the kernel (`--packing cpio`): the init's
/// other root-switch path (plain read-only bind of /usr), and big enough to overflow the
/// kernel's initramfs on a small machine.
fn cpio_image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(None, "cpio"))
}

/// The kubelet the kubelet tests run: `$KUBELET`, else the pinned stack's (scripts/install-deps
/// builds it; CI always has it).
fn kubelet_binary() -> Result<String, String> {
    if let Some(k) = std::env::var_os("KUBELET") {
        return Ok(k.to_str().expect("$KUBELET is UTF-8").to_string());
    }
    diskless_kube::stack::binary("kubelet")
        .map(|p| p.display().to_string())
        .map_err(|e| format!("no kubelet binary ($KUBELET unset, {e:#})"))
}

/// The kubelet image, or None after printing why this machine cannot boot it.
fn kubelet_image_or_skip() -> Option<&'static Path> {
    let why = match (missing_tools(), kubelet_binary()) {
        (Some(why), _) | (None, Err(why)) => why,
        (None, Ok(kubelet)) => return Some(kubelet_image(&kubelet)),
    };
    eprintln!("skipped: {why}");
    None
}

/// The reference image with that kubelet, built once for every test that needs it.
fn kubelet_image(kubelet: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(Some(kubelet), "squashfs"))
}

/// Join material for an inventory in `lab`: a throwaway self-signed CA (real PEM, because the
/// kubelet loads it) and a bootstrap token. The API server URL points nowhere reachable.
/// Returns the inventory's `[join]` section, or why it cannot be made.
fn throwaway_join(lab: &Path) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=diskless-throwaway-ca", "-keyout"])
        .arg(lab.join("ca.key"))
        .arg("-out")
        .arg(lab.join("ca.crt"))
        .output()
        .map_err(|e| format!("openssl not runnable ({e}): apt-get install openssl"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(lab.join("token"), "abcdef.0123456789abcdef\n").unwrap();
    Ok("[join]\napi_server = \"https://10.0.2.100:6443\"\nca_file = \"ca.crt\"\ntoken_file = \"token\"\n\
        cluster_dns = [\"10.96.0.10\"]\ncluster_domain = \"cluster.local\"\n"
        .into())
}

/// The inventory host of the node tests: labels, taints, join mode.
const S2_HOST: &str =
    "[[hosts]]\nmac = \"52:54:00:aa:bb:01\"\nhostname = \"s2\"\nimage = \"worker\"\n\
    labels = { \"zone\" = \"lab-a\", \"node.kubernetes.io/pool\" = \"ci\" }\n\
    taints = [\"dedicated=ci:NoSchedule\"]\nkubelet_mode = \"join\"\npod_cidr = \"10.244.9.0/24\"\n";

/// Asserts the node lines of a boot of host s2 (`S2_HOST`): the init's stage line, and the check
/// hook's view of the running node (hostname set, secrets still 0600 after the root switch).
fn assert_s2_node(r: &Value) {
    let stage =
        named(r, "stages", "node").unwrap_or_else(|| panic!("no node stage: {:#}", r["stages"]));
    eprintln!("stage node {} {}", stage["status"], stage["detail"]);
    assert_eq!(stage["status"], "ok", "{stage}");
    let detail = stage["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("hostname=s2 mode=join labels=2 taints=1"),
        "{detail}"
    );
    let check =
        named(r, "checks", "node").unwrap_or_else(|| panic!("no node check: {:#}", r["checks"]));
    eprintln!("check node {} {}", check["status"], check["detail"]);
    assert_eq!(check["status"], "ok", "{check}");
    assert_eq!(
        check["detail"],
        "hostname=s2 mode=join labels=2 taints=1 \
         files=node.json:0600,bootstrap-kubeconfig:0600,ca.crt:0600"
    );
}

/// Runs `diskless check --json`; returns (success, report).
fn check(out: &Path, extra: &[&str]) -> (bool, Value) {
    let (ok, report, _) = check_with_console(out, extra);
    (ok, report)
}

/// [`check`], and the guest's console (from `--verbose`).
fn check_with_console(out: &Path, extra: &[&str]) -> (bool, Value, String) {
    let output = Command::new(DISKLESS)
        .arg("check")
        .arg(out)
        .args(["--json", "--verbose", "--timeout", "400"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let console = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "diskless check printed no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    if report["ok"] != true {
        // The guest's console (from --verbose) is what explains a failure: its last lines.
        let lines: Vec<&str> = console.lines().collect();
        eprintln!(
            "--- console (last 120 lines) ---\n{}\n---",
            lines[lines.len().saturating_sub(120)..].join("\n")
        );
    }
    // The numbers a benchmark report needs, in the test log.
    eprintln!(
        "check {extra:?}: ok={} timeline={} memory={}",
        report["ok"], report["timeline"], report["memory"]
    );
    (output.status.success(), report, console.into_owned())
}

/// The entry named `name` in a report's `stages` or `checks` list.
fn named<'a>(report: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    report[list].as_array()?.iter().find(|c| c["name"] == name)
}

fn check_status<'a>(report: &'a Value, name: &str) -> Option<&'a str> {
    named(report, "checks", name).and_then(|c| c["status"].as_str())
}

/// The sum of a field over the image's segments, in MiB (`unpacked_size` or `size`).
fn segments_mib(out: &Path, field: &str) -> u64 {
    let index: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("worker.json")).unwrap()).unwrap();
    index["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
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
        let s = named(&r, "stages", stage);
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
    // The squashfs-packed image boots in 176 MiB; the cpio one does not fit.
    let out = cpio_image();
    // The kernel's initramfs is capped at half of RAM, so it overflows when RAM/2 is under the
    // unpacked size; the other half must still hold the compressed initrd and the kernel's own
    // ≈ 40 MiB, or the kernel dies of OOM while unpacking instead (it did at 176 MiB once the
    // debug init grew). Unpacked + compressed + 40 puts RAM/2 between the two.
    let memory = (segments_mib(out, "unpacked_size") + segments_mib(out, "size") + 40).to_string();
    let (ok, r) = check(out, &["--memory", &memory]);
    assert!(!ok && r["ok"] == false, "check passed with {memory} MiB");
    let failures = r["failures"].to_string();
    assert!(failures.contains("stage integrity FAILED"), "{failures}");
    assert!(failures.contains("is missing"), "{failures}");
    assert!(failures.contains("too little RAM"), "{failures}");
    assert!(
        named(&r, "stages", "switchroot").is_none(),
        "the init went on after the integrity failure"
    );
}

#[test]
fn killed_containerd_is_restarted_by_the_init() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    // Also exercises the command line's static address and hostname instead of DHCP, and the
    // cpio-packed image's root switch.
    let (ok, r) = check(
        cpio_image(),
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
    let Some(out) = kubelet_image_or_skip() else {
        return;
    };
    let (ok, r, console) = check_with_console(out, &["--memory", "1024"]);
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    assert_eq!(check_status(&r, "kubelet-healthz"), Some("ok"));
    assert_eq!(check_status(&r, "static-pod"), Some("ok"));
    // kube-proxy's segment is only mounted where the node joins: this one does not, so its
    // init deleted the squashfs image unmounted.
    let left_out = format!(
        "segments left out: kube-proxy ({} absent); ",
        diskless_contract::node::BOOTSTRAP_KUBECONFIG
    );
    assert!(
        console.contains(&left_out),
        "no {left_out:?} line on the console"
    );
}

/// Preloaded images are pinned, so the kubelet's image GC cannot take them from a node that
/// has no registry to get them back from. The image carries two more images no pod uses, one
/// pinned and one not; the check hook fills the RAM root to 95 % (past the kubelet's
/// `imagefs.available` threshold) and passes only when the kubelet has deleted the unpinned one
/// and kept every pinned one.
#[test]
fn pinned_images_survive_image_pressure() {
    let kubelet = match (missing_tools(), kubelet_binary()) {
        (Some(why), _) | (None, Err(why)) => return eprintln!("skipped: {why}"),
        (None, Ok(kubelet)) => kubelet,
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-image-pressure");
    let _ = std::fs::remove_dir_all(&dir);
    // Two images no pod uses: one pinned (must stay), one not (must go: the GC ran).
    let (idle_ref, drop_ref) = ("docker.io/library/idle:1", "docker.io/library/unpinned:1");
    let mut images = Vec::new();
    for (name, reference, labels) in [
        (
            "idle",
            idle_ref,
            serde_json::json!({"io.cri-containerd.pinned": "pinned"}),
        ),
        ("unpinned", drop_ref, serde_json::json!({})),
    ] {
        let rootfs = dir.join(name);
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::write(rootfs.join(name), format!("{reference}\n")).unwrap();
        let archive = dir.join(format!("{name}.tar"));
        run_ok(
            Command::new(DISKLESS)
                .args(["oci", "build", "--ref", reference, "--from"])
                .arg(&rootfs)
                .arg("--out")
                .arg(&archive),
        );
        images.push(serde_json::json!({
            "name": name, "archive": archive, "refs": [reference], "labels": labels,
        }));
    }
    // The reference worker's plan, with the kubelet, plus those images.
    let plan = run_ok(
        Command::new(DISKLESS)
            .args(["plan", "--host"])
            .env("KUBELET", &kubelet),
    );
    let mut plan: Value = serde_json::from_str(&plan).unwrap();
    // The kubelet deletes no image it first saw under imageMinimumGCAge (2 min) ago, counted
    // from its own start for preloaded images: 1 s (0 means the default) lets the GC act at once.
    let config = plan["components"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .filter_map(|c| c.get_mut("generated").and_then(Value::as_array_mut))
        .flatten()
        .find(|g| g["dest"] == "/etc/kubernetes/kubelet.yaml")
        .expect("the plan generates /etc/kubernetes/kubelet.yaml");
    let yaml = format!(
        "{}imageMinimumGCAge: 1s\n",
        config["contents"].as_str().unwrap()
    );
    config["contents"] = yaml.into();
    plan["images"].as_array_mut().unwrap().extend(images);
    // The host plan's own (pause, busybox) and `idle`; not coredns, which has a
    // `condition_path` (the join material) that this standalone node lacks: never imported.
    let pinned = plan["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["labels"]["io.cri-containerd.pinned"] == "pinned" && i["condition_path"].is_null()
        })
        .count();
    let out = build_plan(&plan, &dir);

    // 1536 MiB: filling the RAM root to 95 % must leave the guest RAM to spare, and the
    // preloaded CoreDNS (72 MB on the root) left too little of 1024 MiB.
    let (ok, r) = check(&out, &["--memory", "1536", "--image-pressure"]);
    let pressure = named(&r, "checks", "image-pressure")
        .unwrap_or_else(|| panic!("no image-pressure check: {:#}", r["checks"]));
    eprintln!(
        "image-pressure {} {}",
        pressure["status"], pressure["detail"]
    );
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    let detail = pressure["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("removed [\"{drop_ref}\"]"))
            && detail.contains(&format!("kept {pinned} pinned")),
        "{detail}"
    );
}

/// Distributions compress their kernel modules (nixpkgs and Debian 13 `.ko.xz`, Ubuntu
/// `.ko.zst`). A module tree like theirs, made from this machine's modules with the real `xz`
/// and `zstd` and indexed by `depmod`, must build into an image that boots to containerd
/// ready: the builder stores the modules decompressed and the init loads every one (a module
/// the kernel refused would fail the `modules` stage; without virtio_net there is no network).
/// The `.ko.zst` image also packs containerd's squashfs with LZ4-HC blocks instead of the
/// default zstd (the plan's `squashfs`): containerd runs from an image the guest kernel
/// decompresses so.
#[test]
fn compressed_module_trees_boot() {
    if let Some(why) = missing_tools() {
        return eprintln!("skipped: {why}");
    }
    for tool in ["xz", "zstd", "/usr/sbin/depmod"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return eprintln!("skipped: {tool} not installed (apt-get install xz-utils zstd kmod)");
        }
    }
    let plan = run_ok(Command::new(DISKLESS).args(["plan", "--host", "--no-kubelet"]));
    let plan: Value = serde_json::from_str(&plan).unwrap();
    let host_tree = PathBuf::from(plan["kernel"]["modules_dir"].as_str().unwrap());
    let version = host_tree.file_name().unwrap().to_str().unwrap().to_string();
    let requests: Vec<(String, String)> = plan["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.get("modules").and_then(Value::as_array))
        .flatten()
        .map(|m| ("plan".to_string(), m.as_str().unwrap().to_string()))
        .collect();
    let tree = diskless_builder::resolve::kmod::ModuleTree::load(&host_tree).unwrap();
    let modules = tree.resolve(&requests).unwrap();
    // As the kernel's own `make modules_install` does (xz replaces its input; zstd is told to).
    let tools: [(&str, &[&str]); 2] = [
        ("xz", &["xz", "--check=crc32"]),
        ("zst", &["zstd", "-q", "--rm"]),
    ];
    for (ext, compress) in tools {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("boot-modules-{ext}"));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("lib/modules").join(&version);
        for m in &modules {
            let dest = dir.join(&m.relpath);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(host_tree.join(&m.relpath), &dest).unwrap();
            run_ok(Command::new(compress[0]).args(&compress[1..]).arg(&dest));
        }
        for index in [
            "modules.builtin",
            "modules.builtin.modinfo",
            "modules.order",
        ] {
            if host_tree.join(index).exists() {
                std::fs::copy(host_tree.join(index), dir.join(index)).unwrap();
            }
        }
        run_ok(
            Command::new("/usr/sbin/depmod")
                .arg("-b")
                .arg(&root)
                .arg(&version),
        );
        let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap();
        assert!(dep.contains(&format!("virtio_net.ko.{ext}:")), "{dep}");

        let mut plan = plan.clone();
        plan["kernel"]["modules_dir"] = dir.to_str().unwrap().into();
        if ext == "zst" {
            plan["squashfs"] = serde_json::json!({"algorithm": "lz4hc"});
        }
        let out = build_plan(&plan, &root);
        let (ok, r) = check(&out, &["--memory", "512"]);
        let stage = named(&r, "stages", "modules")
            .unwrap_or_else(|| panic!(".ko.{ext}: no modules stage: {:#}", r["stages"]));
        eprintln!(".ko.{ext}: modules {} {}", stage["status"], stage["detail"]);
        assert!(
            ok && r["ok"] == true,
            ".ko.{ext}: check failed: {:#}",
            r["failures"]
        );
        assert_eq!(stage["status"], "ok", ".ko.{ext}: {stage}");
        assert_eq!(check_status(&r, "containerd"), Some("ok"), ".ko.{ext}");
    }
}

/// Writes `plan` to `dir/plan.json` and builds it into `dir/out`, which it returns.
fn build_plan(plan: &Value, dir: &Path) -> PathBuf {
    let (path, out) = (dir.join("plan.json"), dir.join("out"));
    std::fs::write(&path, plan.to_string()).unwrap();
    run_ok(
        Command::new(DISKLESS)
            .args(["build", "--plan"])
            .arg(&path)
            .arg("--out")
            .arg(&out),
    );
    out
}

/// Runs a command that must succeed; its standard output.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
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
    let join = match throwaway_join(&lab) {
        Ok(j) => j,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    std::fs::write(
        &inventory,
        format!("default_image = \"worker\"\n{join}\n{S2_HOST}"),
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
        .args(["plan", "--host", "--no-kubelet", "-o"])
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
    // Its per-node segment (join mode, labels, taints); this image has no kubelet to give them to.
    assert_s2_node(&r);
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
    let node = named(&r, "stages", "node");
    assert_eq!(
        node.map(|s| &s["status"]),
        Some(&Value::from("skipped")),
        "a shared entry has no node segment"
    );
}

/// A machine in join mode on the standalone reference image with a real kubelet: the node's
/// configuration wins, so the kubelet runs with the bootstrap kubeconfig, the cluster's client
/// CA, webhook authentication/authorization, and the node's labels and taints. The API server
/// is unreachable, so the kubelet never registers: this checks that it was started with the
/// right flags (`/proc/<pid>/cmdline`), and that `check --server` fails on the join, naming why
/// (the kubeconfig points nowhere). The real join is `join_node_becomes_ready_and_runs_an_api_pod`.
#[test]
fn join_node_runs_the_kubelet_with_its_flags() {
    if let Some(why) = missing_tools() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-join");
    let _ = std::fs::remove_dir_all(&lab);
    std::fs::create_dir_all(&lab).unwrap();
    let join = match throwaway_join(&lab) {
        Ok(j) => j,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let Some(out) = kubelet_image_or_skip() else {
        return;
    };
    let inventory = lab.join("lab.toml");
    // s3 asks for a label the kubelet refuses at startup: publish refuses the inventory,
    // naming it, and leaves DEST alone (the init refuses it too: node.rs unit tests).
    let s3 = S2_HOST
        .replace("aa:bb:01", "aa:bb:03")
        .replace("\"s2\"", "\"s3\"")
        .replace("node.kubernetes.io/pool", "node-role.kubernetes.io/worker");
    std::fs::write(&inventory, format!("{join}\n{S2_HOST}\n{s3}")).unwrap();
    let dest = lab.join("srv");
    let publish = || {
        Command::new(DISKLESS)
            .arg("publish")
            .arg(out)
            .arg("--to")
            .arg(&dest)
            .arg("--inventory")
            .arg(&inventory)
            .output()
            .unwrap()
    };
    let o = publish();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !dest.exists(), "{e}");
    assert!(
        e.contains("hosts[1].labels.\"node-role.kubernetes.io/worker\"") && e.contains("refuses"),
        "{e}"
    );
    std::fs::write(&inventory, format!("{join}\n{S2_HOST}")).unwrap();
    let o = publish();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (ok, r) = check(
        &dest,
        &["--server", "--mac", "52:54:00:aa:bb:01", "--memory", "1024"],
    );
    eprintln!("restarts: {}", r["restarts"]);
    // With --rotate-certificates the kubelet does not wait for its certificate: it serves
    // healthz while the API server is unreachable. But it never joins, and the check says so,
    // naming why from the kubelet's log.
    let join = named(&r, "checks", "kubelet-join")
        .unwrap_or_else(|| panic!("no kubelet-join check: {:#}", r["checks"]));
    eprintln!("check kubelet-join {} {}", join["status"], join["detail"]);
    assert!(
        !ok && r["ok"] == false,
        "a join host that cannot join passed"
    );
    assert_eq!(join["status"], "FAIL", "{join}");
    assert!(
        join["detail"]
            .as_str()
            .unwrap()
            .starts_with("not joined after"),
        "{join}"
    );
    let failures = r["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "only the join fails: {failures:#?}");
    assert_eq!(check_status(&r, "kubelet-healthz"), Some("ok"));
    // A node that has not joined runs no pods worth waiting for.
    assert_eq!(check_status(&r, "api-pod"), Some("skipped"));
    assert_s2_node(&r);
    let stage = named(&r, "stages", "node").unwrap();
    assert!(
        stage["detail"]
            .as_str()
            .unwrap()
            .ends_with("the image's kubelet is standalone, the node's mode wins"),
        "{stage}"
    );
    let args = named(&r, "checks", "kubelet-args")
        .unwrap_or_else(|| panic!("no kubelet-args check: {:#}", r["checks"]));
    eprintln!("check kubelet-args {} {}", args["status"], args["detail"]);
    assert_eq!(args["status"], "ok", "{args}");
    let detail = args["detail"].as_str().unwrap();
    // Flags only for what has no configuration field…
    for flag in [
        "--bootstrap-kubeconfig=/.diskless/node/kubelet/bootstrap-kubeconfig",
        "--kubeconfig=/var/lib/kubelet/kubeconfig",
        "--cert-dir=/var/lib/kubelet/pki",
        "--config-dir=/etc/kubernetes/kubelet.conf.d",
        "--node-labels=node.kubernetes.io/pool=ci,zone=lab-a",
    ] {
        assert!(
            detail.split(' ').any(|a| a == flag),
            "{flag} missing: {detail}"
        );
    }
    for deprecated in [
        "--client-ca-file",
        "--authorization-mode",
        "--register-with-taints",
        "--rotate-certificates",
        "--cluster-dns",
    ] {
        assert!(!detail.contains(deprecated), "{deprecated} in {detail}");
    }
    // …and the rest in the drop-in the kubelet read, as the init wrote it.
    let config = named(&r, "checks", "kubelet-config")
        .unwrap_or_else(|| panic!("no kubelet-config check: {:#}", r["checks"]));
    eprintln!(
        "check kubelet-config {} {}",
        config["status"], config["detail"]
    );
    assert_eq!(config["status"], "ok", "{config}");
    let detail = config["detail"].as_str().unwrap();
    for setting in [
        r#""clientCAFile":"/.diskless/node/kubelet/ca.crt""#,
        r#""mode":"Webhook""#,
        r#""registerWithTaints":[{"effect":"NoSchedule","key":"dedicated","value":"ci"}]"#,
        r#""podCIDR":"10.244.9.0/24""#,
        r#""clusterDNS":["10.96.0.10"]"#,
        r#""clusterDomain":"cluster.local""#,
        r#""staticPodPath":"/run/diskless/no-static-pods""#,
    ] {
        assert!(detail.contains(setting), "{setting} missing: {detail}");
    }
}

/// The join for real: `diskless check --join` starts a throwaway control plane (etcd,
/// kube-apiserver, controller-manager, scheduler from the pinned stack) on the host, publishes
/// the worker for one join host, network-boots it through the boot server, and passes only when
/// the API server shows the node Ready and a pod created through the API (preloaded image,
/// `imagePullPolicy: Never`, no registry reachable) Running on it with a pod IP, reaching the
/// `kubernetes` Service and resolving its name through the preloaded CoreDNS.
#[test]
fn join_node_becomes_ready_and_runs_an_api_pod() {
    let Some(out) = kubelet_image_or_skip() else {
        return;
    };
    let (ok, r, console) = check_with_console(
        out,
        &["--join", "--mac", "52:54:00:aa:bb:09", "--memory", "1024"],
    );
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    assert_eq!(check_status(&r, "kubelet-join"), Some("ok"));
    // The join material is there, so kube-proxy's segment is mounted (and the Service
    // reached below goes through its rules).
    assert!(
        !console.contains("segments left out"),
        "a joining node left a segment out"
    );
    let t = &r["timeline"];
    let at = |k: &str| {
        t[k].as_f64()
            .unwrap_or_else(|| panic!("timeline has no {k}: {t:#}"))
    };
    let (kubelet, registered, ready, pod, service, dns) = (
        at("kubelet_started"),
        at("node_registered"),
        at("node_ready"),
        at("api_pod_running"),
        at("service_reached"),
        at("cluster_dns"),
    );
    assert!(
        kubelet < registered && registered <= ready && ready <= pod && pod <= service && service <= dns,
        "kubelet started {kubelet}, node registered {registered}, Ready {ready}, API pod Running {pod}, \
         Service reached {service}, DNS answered {dns}"
    );
    eprintln!(
        "join timeline (guest s): containerd {} · images {} · kubelet {kubelet} · registered {registered} · Ready {ready} · API pod Running {pod} · Service {service} · DNS {dns}",
        t["containerd_ready"], t["images_imported"]
    );
}

/// Bad join material: the node cannot join, the boot says which and why (from the kubelet's
/// own log), and the check fails naming it. The kubelet keeps retrying (the init restarts it
/// with backoff if it exits), so the same node joins once the material is fixed.
#[test]
fn bad_join_material_is_named() {
    use diskless_harness::Fault;
    let Some(out) = kubelet_image_or_skip() else {
        return;
    };
    let hook = Path::new(DISKLESS).with_file_name("diskless-check");
    for (fault, why) in [
        (
            Fault::WrongCa,
            "the cluster CA in the node segment does not match the API server's certificate",
        ),
        (
            Fault::UnknownToken,
            "the API server refuses the bootstrap token",
        ),
        (
            Fault::ExpiredToken,
            "the API server refuses the bootstrap token",
        ),
    ] {
        let opts = diskless_harness::CheckOptions {
            boot: diskless_harness::BootOptions {
                out: out.to_owned(),
                server: false,
                name: "worker".into(),
                memory: 1024,
                cpus: 2,
                mac: "52:54:00:aa:bb:0a".into(),
                accel: diskless_harness::Accel::Auto,
                transport: diskless_harness::Transport::Http,
                append: Vec::new(),
                timeout: Some(400),
                join: true,
            },
            kill_containerd: false,
            json: true,
            verbose: false,
            hook: Some(hook.clone()),
            join_fault: Some(fault),
            lifecycle: false,
            image_pressure: false,
        };
        let r = diskless_harness::check_report(&opts).unwrap();
        eprintln!("{fault:?}: ok={} failures={:#?}", r.ok, r.failures);
        assert!(!r.ok, "{fault:?}: a node with bad join material passed");
        let join = r
            .checks
            .iter()
            .find(|c| c.name == "kubelet-join")
            .unwrap_or_else(|| panic!("{fault:?}: no kubelet-join check: {:#?}", r.checks));
        assert_eq!(join.status, "FAIL", "{fault:?}: {join:?}");
        assert!(join.detail.contains(why), "{fault:?}: {}", join.detail);
        assert!(
            r.failures.iter().any(|f| f.contains(why)),
            "{fault:?}: the failures do not name why: {:#?}",
            r.failures
        );
        assert!(
            r.timeline.node_registered.is_none(),
            "{fault:?}: it registered"
        );
    }
}

/// A cluster member's life in RAM: joined (as above), then its kubelet killed (the init
/// restarts it and the node renews its lease), the API server away for 30 s (the node comes
/// back when it returns), and a power cycle (everything in RAM lost): the machine boots again
/// through the boot server and is the same Node, Ready with a new boot ID, its API pod running.
#[test]
fn join_node_survives_kubelet_kill_api_outage_token_expiry_and_reboot() {
    let Some(out) = kubelet_image_or_skip() else {
        return;
    };
    let (ok, r) = check(
        out,
        &[
            "--join",
            "--lifecycle",
            "--mac",
            "52:54:00:aa:bb:0b",
            "--memory",
            "1024",
        ],
    );
    eprintln!("lifecycle: {:#}", r["lifecycle"]);
    assert!(ok && r["ok"] == true, "check failed: {:#}", r["failures"]);
    let steps: Vec<&str> = r["lifecycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["ok"], true, "{s}");
            s["name"].as_str().unwrap()
        })
        .collect();
    // The token the node first booted with (minted by publish, 90 s) expired before the
    // reboot: the node rejoins with the one the next publish minted, no token lives for ever.
    assert_eq!(
        steps,
        [
            "kubelet-killed",
            "api-server-away",
            "token-expired-reminted",
            "reboot-rejoin"
        ]
    );
    assert_eq!(check_status(&r, "kubelet-restart"), Some("ok"));
}

/// The diskless control plane (`build --host --role control-plane`): published with a fresh
/// cluster PKI for one control-plane host, network-booted, etcd healthy, the API server ready,
/// the controller-manager and the scheduler leading; a ConfigMap created, publish takes an etcd
/// snapshot into the node segment, the machine is power-cycled and boots again: the init
/// restored the snapshot, the ConfigMap (its random nonce) and the RBAC publish applied are
/// back, and both components work again.
#[test]
fn control_plane_survives_a_reboot_through_its_etcd_snapshot() {
    if let Some(why) = missing_tools() {
        return eprintln!("skipped: {why}");
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-control-plane");
    let _ = std::fs::remove_dir_all(&out);
    let built = Command::new(DISKLESS)
        .args(["build", "--host", "--role", "control-plane", "--name"])
        .args(["control-plane", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "diskless build --host --role control-plane failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let output = Command::new(DISKLESS)
        .arg("check")
        .arg(&out)
        .args([
            "--control-plane",
            "--name",
            "control-plane",
            "--json",
            "--verbose",
        ])
        .args([
            "--mac",
            "52:54:00:cc:00:01",
            "--memory",
            "2048",
            "--timeout",
            "600",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let console = String::from_utf8_lossy(&output.stderr);
    let r: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("diskless check --control-plane printed no JSON report ({e}):\n{stdout}\n{console}")
    });
    // The numbers a benchmark report needs, in the test log.
    eprintln!(
        "control plane: first boot {}\nsecond boot {}\nsnapshot {} bytes, publish {} s",
        r["first_boot"], r["second_boot"], r["snapshot_bytes"], r["publish_seconds"]
    );
    if r["ok"] != true {
        let lines: Vec<&str> = console.lines().collect();
        eprintln!(
            "--- console (last 150 lines) ---\n{}\n---",
            lines[lines.len().saturating_sub(150)..].join("\n")
        );
    }
    assert!(r["ok"] == true, "check failed: {:#}", r["failures"]);
    let second = &r["second_boot"];
    assert!(
        second["etcd_restore"]
            .as_str()
            .is_some_and(|d| d.contains("(hash checked)")),
        "{second}"
    );
    for boot in [&r["first_boot"], second] {
        assert!(boot["scheduler_working"].as_f64().is_some(), "{boot}");
        assert!(
            boot["memory"]["mem_used_kb"].as_u64().unwrap() > 0,
            "{boot}"
        );
    }
}
