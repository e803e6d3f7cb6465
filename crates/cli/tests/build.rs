//! The builder end to end, through the real `diskless` binary: reproducibility of the host
//! reference image, an independent reader (GNU cpio) unpacking exactly the planned tree, the
//! segment cache, `verify`/`inspect`, and every class of bad input (clear error, non-zero exit,
//! nothing left in `--out`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn diskless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diskless"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("diskless runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Relative path → (kind, mode, sha256 of contents or link target) for every entry below `root`.
fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    use sha2::{Digest, Sha256};
    let mut m = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let v = if meta.file_type().is_symlink() {
            (
                'l',
                0,
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if meta.is_dir() {
            ('d', mode, String::new())
        } else {
            (
                'f',
                mode,
                hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap())),
            )
        };
        m.insert(rel, v);
    }
    m
}

/// Builds the host reference worker with the given environment and working directory.
fn build_host(out: &Path, cwd: &Path, env: &[(&str, &str)], umask: &str, jobs: &str) -> Output {
    let script = format!(
        "umask {umask} && exec {} build --host --out {} --jobs {jobs} --no-cache",
        env!("CARGO_BIN_EXE_diskless"),
        out.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_remove("KUBELET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Unpacks every segment of a build's index into `dir` with GNU cpio, in boot order.
fn unpack_segments(out: &Path, index: &serde_json::Value, dir: &Path) {
    for seg in index["segments"].as_array().unwrap() {
        let bytes =
            std::fs::read(out.join("objects").join(seg["sha256"].as_str().unwrap())).unwrap();
        let data = diskless_builder::inspect::decompress(&bytes).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("umask 0 && cpio -idm --quiet --no-absolute-filenames")
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &data).unwrap();
        assert!(child.wait().unwrap().success());
    }
}

fn host_prereqs() -> bool {
    let ok = Path::new("/usr/bin/containerd").exists() && Path::new("/bin/busybox").exists();
    if !ok {
        println!("skipped: host packages missing (run .ci/run or apt-get install containerd busybox-static)");
    }
    ok
}

#[test]
fn host_image_is_reproducible_and_content_addressed() {
    if !host_prereqs() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("A"), t.path().join("B"));
    let (cwd_a, cwd_b) = (t.path().join("x"), t.path().join("y/z"));
    std::fs::create_dir_all(&cwd_a).unwrap();
    std::fs::create_dir_all(&cwd_b).unwrap();
    let o = build_host(&a, &cwd_a, &[("TZ", "UTC"), ("LC_ALL", "C")], "022", "1");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("no /init"), "{}", stderr(&o));
    let o = build_host(
        &b,
        &cwd_b,
        &[
            ("TZ", "Asia/Tokyo"),
            ("LC_ALL", "de_DE.UTF-8"),
            ("LANG", "fr_FR.UTF-8"),
        ],
        "077",
        "2",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert!(sa.len() > 5, "{sa:?}");
    assert_eq!(sa, sb, "two builds of the same plan differ");

    // Every stored name is the sha256 of its bytes, and verify agrees.
    for (rel, (_, _, digest)) in &sa {
        if let Some(name) = rel.strip_prefix("objects/") {
            assert_eq!(name, digest, "{rel}");
        }
    }
    let o = run(diskless().arg("verify").arg(&a));
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );

    // A stored object that no longer matches its name is caught.
    let victim = std::fs::read_dir(a.join("objects"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let o = run(diskless().arg("verify").arg(&a));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("hashes to"));
}

/// GNU cpio, not our reader, unpacks the segments; the result is exactly the planned tree.
#[test]
fn gnu_cpio_unpacks_exactly_the_planned_tree() {
    if Command::new("cpio").arg("--version").output().is_err() {
        println!("skipped: GNU cpio not installed (apt-get install cpio)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::write(src.join("tree/sub/data"), vec![7u8; 70_000]).unwrap();
    std::fs::write(src.join("tree/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("tree/run.sh"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::symlink("sub/data", src.join("tree/link")).unwrap();
    std::fs::write(
        src.join("kernel"),
        diskless_builder::resolve::bzimage::fake_for_tests(),
    )
    .unwrap();
    std::fs::write(src.join("secret"), b"s3cret").unwrap();
    let plan = serde_json::json!({
        "version": 1, "name": "tiny",
        "kernel": {"image": src.join("kernel"), "cmdline": "console=ttyS0"},
        "compression": {"algorithm": "gzip", "level": 9},
        "components": [
            {"name": "one",
             "files": [{"source": src.join("secret"), "dest": "/etc/secret", "mode": "0600"}],
             "directories": [{"path": "/tmp", "mode": "1777"}],
             "symlinks": [{"path": "/bin", "target": "usr/bin"}],
             "generated": [{"dest": "/usr/bin/hello", "contents": "#!/bin/sh\necho hi\n", "mode": "0755"}]},
            {"name": "two", "compression": {"algorithm": "zstd", "level": 3},
             "trees": [{"source": src.join("tree"), "dest": "/opt/tree"}],
             "generated": [{"dest": "/bin/via-link", "contents": "x"}]}
        ]
    });
    let plan_path = t.path().join("plan.json");
    std::fs::write(&plan_path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    let out = t.path().join("out");
    let o = run(diskless()
        .args(["build", "--no-cache", "--single-initrd", "--plan"])
        .arg(&plan_path)
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));

    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tiny.json")).unwrap()).unwrap();
    let unpacked = t.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    // The single concatenated initrd, decompressed member by member, must hold the same.
    unpack_segments(&out, &index, &unpacked);
    let snap = snapshot(&unpacked);
    let get = |p: &str| {
        snap.get(p)
            .unwrap_or_else(|| panic!("{p} missing from {snap:#?}"))
            .clone()
    };
    assert_eq!(get("etc/secret").1, 0o600);
    assert_eq!(get("tmp"), ('d', 0o1777, String::new()));
    assert_eq!(get("bin"), ('l', 0, "usr/bin".into()));
    assert_eq!(get("usr/bin/hello").1, 0o755);
    // An entry under /bin went through the image's own symlink, so /bin stays a link.
    assert_eq!(get("usr/bin/via-link").1, 0o644);
    assert_eq!(
        get("opt/tree/run.sh").1,
        0o755,
        "executable bit kept, other bits normalized"
    );
    assert_eq!(get("opt/tree/sub/data").1, 0o644);
    assert_eq!(get("opt/tree/link"), ('l', 0, "sub/data".into()));
    assert!(get(".diskless/image.json").0 == 'f');
    for s in ["one", "two"] {
        assert!(
            snap.contains_key(&format!(".diskless/segments/{s}")),
            "sentinel of {s}"
        );
    }
    let planned: Vec<&str> = vec![
        ".diskless",
        ".diskless/image.json",
        ".diskless/segments",
        ".diskless/segments/manifest",
        ".diskless/segments/one",
        ".diskless/segments/two",
        "bin",
        "etc",
        "etc/secret",
        "opt",
        "opt/tree",
        "opt/tree/link",
        "opt/tree/run.sh",
        "opt/tree/sub",
        "opt/tree/sub/data",
        "tmp",
        "usr",
        "usr/bin",
        "usr/bin/hello",
        "usr/bin/via-link",
    ];
    assert_eq!(snap.keys().map(String::as_str).collect::<Vec<_>>(), planned);

    // The single-file initrd: members padded to 4 bytes, in order.
    let single = index["initrd"]["sha256"]
        .as_str()
        .expect("single initrd in the index");
    let bytes = std::fs::read(out.join("objects").join(single)).unwrap();
    let mut offset = 0usize;
    for seg in index["segments"].as_array().unwrap() {
        assert_eq!(offset % 4, 0);
        let size = seg["size"].as_u64().unwrap() as usize;
        let part =
            std::fs::read(out.join("objects").join(seg["sha256"].as_str().unwrap())).unwrap();
        assert_eq!(&bytes[offset..offset + size], &part[..]);
        offset += size.div_ceil(4) * 4;
    }
    assert_eq!(offset, bytes.len());

    // The iPXE entry loads the single initrd and names it on the command line, where a UEFI
    // kernel's EFI stub looks for its initrds.
    let ipxe = std::fs::read_to_string(out.join("tiny.ipxe")).unwrap();
    let lines: Vec<&str> = ipxe.lines().filter(|l| !l.starts_with('#')).collect();
    let kernel = index["kernel"]["sha256"].as_str().unwrap();
    assert_eq!(
        lines,
        [
            format!("kernel objects/{kernel} initrd={single} console=ttyS0").as_str(),
            format!("initrd objects/{single}").as_str(),
            "boot"
        ],
        "{ipxe}"
    );
}

#[test]
fn unchanged_segments_come_from_the_cache() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(
        t.path().join("kernel"),
        diskless_builder::resolve::bzimage::fake_for_tests(),
    )
    .unwrap();
    let write_plan = |contents: &str| {
        let plan = serde_json::json!({
            "version": 1, "name": "c", "kernel": {"image": t.path().join("kernel")},
            "components": [
                {"name": "big", "generated": [{"dest": "/big", "contents": "x".repeat(100_000)}]},
                {"name": "config", "generated": [{"dest": "/etc/conf", "contents": contents}]}
            ]
        });
        std::fs::write(t.path().join("plan.json"), plan.to_string()).unwrap();
    };
    // Which segments came from the cache, and what the build warned.
    let build = || {
        let o = run(diskless()
            .args(["build", "--json", "--plan"])
            .arg(t.path().join("plan.json"))
            .arg("--out")
            .arg(t.path().join("out"))
            .arg("--cache-dir")
            .arg(t.path().join("cache")));
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let cached = r["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["cached"].as_bool().unwrap(),
                )
            })
            .collect::<BTreeMap<_, _>>();
        (cached, stderr(&o))
    };
    write_plan("a=1\n");
    let (first, warnings) = build();
    assert!(
        first.values().all(|c| !c),
        "first build compresses everything"
    );
    // This plan has no /init: built, but said.
    assert!(warnings.contains("the image has no /init"), "{warnings}");
    write_plan("a=2\n");
    let (second, _) = build();
    assert!(second["big"], "unchanged segment reused: {second:?}");
    assert!(!second["config"] && !second["manifest"], "{second:?}");

    // Damaged cache entries are rebuilt, never stored: the same objects as before.
    let index_before = std::fs::read(t.path().join("out/c.json")).unwrap();
    for e in std::fs::read_dir(t.path().join("cache/segments")).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let (third, warnings) = build();
    assert!(warnings.contains("is corrupt"), "{warnings}");
    assert!(third.values().all(|c| !c), "{third:?}");
    assert_eq!(
        index_before,
        std::fs::read(t.path().join("out/c.json")).unwrap()
    );
    assert!(run(diskless().arg("verify").arg(t.path().join("out")))
        .status
        .success());
}

// ---------------------------------------------------------------------------------------------
// Bad input: each case names the problem, exits non-zero and leaves no output behind.

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kernel"),
            diskless_builder::resolve::bzimage::fake_for_tests(),
        )
        .unwrap();
        std::fs::write(dir.path().join("file"), b"contents").unwrap();
        Case { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn plan(&self, components: serde_json::Value) -> String {
        serde_json::json!({
            "version": 1, "name": "bad", "kernel": {"image": self.path("kernel")},
            "components": components
        })
        .to_string()
    }

    /// Builds `plan_text` and returns stderr, asserting failure and an untouched `--out`.
    fn fails(&self, plan_text: &str, extra: &[&str]) -> String {
        let plan = self.path("plan.json");
        std::fs::write(&plan, plan_text).unwrap();
        let out = self.path("out");
        let o = run(diskless()
            .args(["build", "--no-cache", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&out)
            .args(extra));
        assert!(!o.status.success(), "expected failure for {plan_text}");
        assert!(!out.exists(), "partial output left in {}", out.display());
        let e = stderr(&o);
        assert!(e.starts_with("error: "), "{e}");
        e
    }
}

#[test]
fn malformed_json_names_line_and_column() {
    let c = Case::new();
    let e = c.fails("{\n  \"version\": 1,\n  \"name\": \"x\",,\n}", &[]);
    assert!(
        e.contains("plan.json") && e.contains("line 3 column"),
        "{e}"
    );
}

#[test]
fn unknown_field_is_named() {
    let c = Case::new();
    let e = c.fails(&c.plan(serde_json::json!([{"name": "a", "fils": []}])), &[]);
    assert!(
        e.contains("unknown field `fils`") && e.contains("expected one of"),
        "{e}"
    );
}

#[test]
fn wrong_version_says_which_is_read() {
    let c = Case::new();
    let e = c.fails(r#"{"version": 7, "name": "x"}"#, &[]);
    assert!(
        e.contains("\"version\": 7") && e.contains("reads version 1"),
        "{e}"
    );
}

#[test]
fn missing_source_is_named() {
    let c = Case::new();
    let missing = c.path("nope");
    let e = c.fails(
        &c.plan(serde_json::json!([{"name": "a", "files": [{"source": missing, "dest": "/x"}]}])),
        &[],
    );
    assert!(
        e.contains("component a: files[0]") && e.contains("nope") && e.contains("No such file"),
        "{e}"
    );
}

/// A kernel image a boot loader cannot start would build, publish, and fail on every machine.
#[test]
fn a_file_that_is_not_a_kernel_is_refused() {
    let c = Case::new();
    for bytes in [&b"kernel bytes"[..], b"\x7fELF\x02\x01\x01", b""] {
        std::fs::write(c.path("kernel"), bytes).unwrap();
        let e = c.fails(&c.plan(serde_json::json!([])), &[]);
        assert!(
            e.contains("kernel.image") && e.contains("not a bootable kernel image"),
            "{e}"
        );
    }
}

/// What the node's init would refuse (or misconfigure) is refused at build time, by the same
/// rules: addresses, prefixes, gateways, DNS servers and interface names of a static network.
#[test]
fn networks_the_node_would_refuse_do_not_build() {
    let c = Case::new();
    let network = |n: serde_json::Value| {
        let mut plan: serde_json::Value =
            serde_json::from_str(&c.plan(serde_json::json!([]))).unwrap();
        plan["node"] = serde_json::json!({ "network": n });
        plan.to_string()
    };
    for (n, why) in [
        (
            serde_json::json!({"mode": "static", "address": "999.1.1.1/24"}),
            "not an IP address",
        ),
        (
            serde_json::json!({"mode": "static", "address": "10.0.0.5/99"}),
            "0-32",
        ),
        (
            serde_json::json!({"mode": "static", "address": "10.0.0.5"}),
            "prefix length",
        ),
        (
            serde_json::json!({"mode": "static", "address": "10.0.0.5/24", "gateway": "router"}),
            "gateway",
        ),
        (
            serde_json::json!({"mode": "static", "address": "10.0.0.5/24", "dns": ["1.1.1"]}),
            "dns server",
        ),
        (
            serde_json::json!({"mode": "dhcp", "interface": "a-very-long-interface-name"}),
            "interface",
        ),
    ] {
        let e = c.fails(&network(n), &[]);
        assert!(e.contains("node.network") && e.contains(why), "{e}");
    }
}

#[test]
fn bad_destinations_are_refused() {
    let c = Case::new();
    for (dest, why) in [("etc/x", "not absolute"), ("/etc/../x", "'..'")] {
        let e = c.fails(
            &c.plan(
                serde_json::json!([{"name": "a", "generated": [{"dest": dest, "contents": ""}]}]),
            ),
            &[],
        );
        assert!(
            e.contains("components[0] (a).generated[0]") && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn conflicting_components_are_both_named() {
    let c = Case::new();
    let e = c.fails(
        &c.plan(serde_json::json!([
            {"name": "a", "generated": [{"dest": "/etc/x", "contents": "1"}]},
            {"name": "b", "generated": [{"dest": "/etc/x", "contents": "2"}]}
        ])),
        &[],
    );
    assert!(
        e.contains("/etc/x")
            && e.contains("component a")
            && e.contains("component b")
            && e.contains("contents"),
        "{e}"
    );
    // Identical duplicates are fine.
    let plan = c.plan(serde_json::json!([
        {"name": "a", "generated": [{"dest": "/etc/x", "contents": "1"}]},
        {"name": "b", "generated": [{"dest": "/etc/x", "contents": "1"}]}
    ]));
    std::fs::write(c.path("ok.json"), plan).unwrap();
    let o = run(diskless()
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("ok.json"))
        .arg("--out")
        .arg(c.path("ok")));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn symlink_loops_are_refused() {
    let c = Case::new();
    let e = c.fails(
        &c.plan(serde_json::json!([{"name": "a", "symlinks": [
            {"path": "/a", "target": "b"}, {"path": "/b", "target": "/a"}
        ]}])),
        &[],
    );
    assert!(e.contains("symlink loop"), "{e}");
    // A loop among the sources a binary is reached through.
    std::os::unix::fs::symlink(c.path("l2"), c.path("l1")).unwrap();
    std::os::unix::fs::symlink(c.path("l1"), c.path("l2")).unwrap();
    let e = c.fails(
        &c.plan(
            serde_json::json!([{"name": "a", "files": [{"source": c.path("l1"), "dest": "/x"}]}]),
        ),
        &[],
    );
    assert!(e.contains("l1") && e.contains("symbolic links"), "{e}");
}

#[test]
fn files_over_the_newc_limit_are_refused() {
    let c = Case::new();
    let f = std::fs::File::create(c.path("huge")).unwrap();
    f.set_len((4u64 << 30) + 1).unwrap(); // sparse: costs no disk
    let e = c.fails(&c.plan(serde_json::json!([{"name": "a", "files": [{"source": c.path("huge"), "dest": "/huge"}]}])), &[]);
    assert!(e.contains("/huge") && e.contains("4 GiB"), "{e}");
}

#[test]
fn images_over_2_gib_need_allow_large() {
    let c = Case::new();
    for i in 0..2 {
        let f = std::fs::File::create(c.path(&format!("big{i}"))).unwrap();
        f.set_len(1100 << 20).unwrap();
    }
    let e = c.fails(
        &c.plan(serde_json::json!([{"name": "a", "files": [
            {"source": c.path("big0"), "dest": "/big0"}, {"source": c.path("big1"), "dest": "/big1"}
        ]}])),
        &[],
    );
    assert!(
        e.contains("over 2 GiB") && e.contains("--allow-large"),
        "{e}"
    );
}

#[test]
fn unknown_kernel_module_is_named() {
    let c = Case::new();
    std::fs::create_dir_all(c.path("modules")).unwrap();
    std::fs::write(c.path("modules/modules.dep"), "kernel/net/x.ko:\n").unwrap();
    let plan = serde_json::json!({
        "version": 1, "name": "bad",
        "kernel": {"image": c.path("kernel"), "modules_dir": c.path("modules")},
        "components": [{"name": "m", "modules": ["x", "no_such_module"]}]
    });
    let e = c.fails(&plan.to_string(), &[]);
    assert!(
        e.contains("modules[1]") && e.contains("\"no_such_module\""),
        "{e}"
    );
}

#[test]
fn unreadable_source_is_named() {
    let c = Case::new();
    std::fs::write(c.path("locked"), b"x").unwrap();
    std::fs::set_permissions(c.path("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    let plan = c.plan(
        serde_json::json!([{"name": "a", "files": [{"source": c.path("locked"), "dest": "/x"}]}]),
    );
    std::fs::write(c.path("plan.json"), plan).unwrap();
    // root reads anything: drop to nobody for this one.
    let mut cmd = if is_root() {
        std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_diskless"),
        ]);
        cmd
    } else {
        diskless()
    };
    let out = c.path("out");
    let o = run(cmd
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("plan.json"))
        .arg("--out")
        .arg(&out));
    assert!(!o.status.success());
    assert!(!out.exists());
    let e = stderr(&o);
    assert!(
        e.contains("locked") && e.contains("Permission denied"),
        "{e}"
    );
}

#[test]
fn full_disk_leaves_nothing_behind() {
    if !is_root() {
        println!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let c = Case::new();
    let mnt = c.path("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !matches!(ok, Ok(s) if s.success()) {
        println!("skipped: cannot mount tmpfs here");
        return;
    }
    // Random bytes do not compress: ~1 MB cannot fit in 256 KiB.
    let noise: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(c.path("noise"), noise).unwrap();
    let plan = c.plan(serde_json::json!([{"name": "a", "compression": {"algorithm": "none"}, "files": [{"source": c.path("noise"), "dest": "/noise"}]}]));
    std::fs::write(c.path("plan.json"), plan).unwrap();
    let out = mnt.join("out");
    let o = run(diskless()
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("plan.json"))
        .arg("--out")
        .arg(&out));
    let leftovers: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("No space left") && e.contains("left as it was"),
        "{e}"
    );
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// A module tree with only what squashfs packing needs (the builder copies, never loads, them).
fn mount_modules(c: &Case) -> PathBuf {
    let dir = c.path("modules");
    for m in ["loop", "squashfs", "overlay"] {
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        std::fs::write(dir.join(format!("kernel/{m}.ko")), m).unwrap();
    }
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/loop.ko:\nkernel/squashfs.ko:\nkernel/overlay.ko:\n",
    )
    .unwrap();
    dir
}

/// The entry named `name` in a document's `segments` (the index's or the contract's).
fn segment<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no segment {name} in {doc}"))
}

/// A component's `condition_path` reaches its segment ref in the contract (the init leaves the
/// squashfs image out where the path is absent); where there is no squashfs image to leave out
/// (cpio packing, or nothing under `/usr`), the build is refused, naming the component.
#[test]
fn a_conditional_component_carries_its_condition_into_the_contract() {
    let c = Case::new();
    let modules = mount_modules(&c);
    std::fs::write(c.path("tool"), vec![7u8; 100_000]).unwrap();
    let join = "/.diskless/node/kubelet/bootstrap-kubeconfig";
    let plan = |packing: &str, dest: &str| {
        serde_json::json!({
            "version": 1, "name": "cond",
            "kernel": {"image": c.path("kernel"), "modules_dir": modules},
            "components": [
                {"name": "mods", "modules": ["loop", "squashfs", "overlay"]},
                {"name": "proxy", "packing": packing, "condition_path": join,
                 "files": [{"source": c.path("tool"), "dest": dest}]}
            ]
        })
    };
    let build = |plan: serde_json::Value, out: &str| {
        std::fs::write(c.path("plan.json"), plan.to_string()).unwrap();
        run(diskless()
            .args(["build", "--no-cache", "--plan"])
            .arg(c.path("plan.json"))
            .arg("--out")
            .arg(c.path(out)))
    };
    let o = build(plan("cpio", "/usr/bin/tool"), "out-cpio");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("components[1] (proxy).condition_path") && e.contains("packing \"squashfs\""),
        "{e}"
    );
    assert!(!c.path("out-cpio/cond.json").exists(), "no partial output");
    let o = build(plan("squashfs", "/etc/tool"), "out-etc");
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("proxy") && e.contains("no squashfs image"),
        "{e}"
    );
    assert!(!c.path("out-etc/cond.json").exists(), "no partial output");

    let o = build(plan("squashfs", "/usr/bin/tool"), "out");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = c.path("out");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cond.json")).unwrap()).unwrap();
    let unpacked = c.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    unpack_segments(&out, &index, &unpacked);
    let text = std::fs::read_to_string(unpacked.join(".diskless/image.json")).unwrap();
    let typed = diskless_contract::image::ImageContract::parse(&text).unwrap();
    let proxy = typed.segments.iter().find(|s| s.name == "proxy").unwrap();
    assert_eq!(proxy.condition_path.as_deref(), Some(join));
    assert_eq!(
        proxy.squashfs.as_deref(),
        Some("/.diskless/squashfs/proxy.sqfs")
    );
    assert!(typed
        .segments
        .iter()
        .filter(|s| s.name != "proxy")
        .all(|s| s.condition_path.is_none()));
}

/// Squashfs packing: the `/usr` part of a component travels as one squashfs image (read back
/// with squashfs-tools' unsquashfs), the rest stays cpio, and the contract names the image.
#[test]
fn squashfs_packing_holds_the_read_only_files() {
    if Command::new("unsquashfs").arg("-help").output().is_err() {
        println!("skipped: unsquashfs not installed (apt-get install squashfs-tools)");
        return;
    }
    let c = Case::new();
    let modules = mount_modules(&c);
    std::fs::create_dir_all(c.path("tree/sub")).unwrap();
    std::fs::write(c.path("tree/sub/data"), vec![9u8; 300_000]).unwrap();
    std::fs::write(c.path("tree/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(c.path("tree/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/data", c.path("tree/link")).unwrap();
    let plan = serde_json::json!({
        "version": 1, "name": "sq",
        "kernel": {"image": c.path("kernel"), "modules_dir": modules},
        "components": [
            {"name": "mods", "modules": ["loop", "squashfs", "overlay"]},
            {"name": "rt", "packing": "squashfs",
             "trees": [{"source": c.path("tree"), "dest": "/usr/lib/rt"}],
             "generated": [{"dest": "/etc/rt.conf", "contents": "x=1\n", "mode": "0600"}]}
        ]
    });
    std::fs::write(c.path("plan.json"), plan.to_string()).unwrap();
    let out = c.path("out");
    let o = run(diskless()
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("plan.json"))
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sq.json")).unwrap()).unwrap();
    let unpacked = c.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    unpack_segments(&out, &index, &unpacked);
    let cpio = snapshot(&unpacked);
    assert!(
        !cpio.keys().any(|p| p.starts_with("usr")),
        "/usr travels in the squashfs image only: {cpio:#?}"
    );
    assert_eq!(cpio["etc/rt.conf"].1, 0o600, "the rest stays cpio");
    let contract_text = std::fs::read_to_string(unpacked.join(".diskless/image.json")).unwrap();
    // What the builder wrote parses with the type and version the init reads.
    let typed = diskless_contract::image::ImageContract::parse(&contract_text).unwrap();
    assert_eq!(typed.version, diskless_contract::image::CONTRACT_VERSION);
    assert_eq!(
        typed
            .segments
            .iter()
            .find(|s| s.name == "rt")
            .unwrap()
            .squashfs
            .as_deref(),
        Some("/.diskless/squashfs/rt.sqfs")
    );
    let contract: serde_json::Value = serde_json::from_str(&contract_text).unwrap();
    let rt = segment(&contract, "rt");
    assert_eq!(rt["squashfs"], "/.diskless/squashfs/rt.sqfs");
    let image = unpacked.join(".diskless/squashfs/rt.sqfs");
    assert_eq!(cpio[".diskless/squashfs/rt.sqfs"].1, 0o444);
    // The squashfs image is zstd (the plan leaves `squashfs` out: the one default, zstd-3) and
    // the segment around it is not compressed again.
    let seg = segment(&index, "rt");
    assert_eq!(seg["compression"], "none");
    let o = run(Command::new("unsquashfs").arg("-s").arg(&image));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Compression zstd"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    let sq = c.path("sq");
    let o = run(Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-d")
        .arg(&sq)
        .arg(&image));
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = snapshot(&sq);
    assert_eq!(
        snap.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "usr",
            "usr/lib",
            "usr/lib/rt",
            "usr/lib/rt/link",
            "usr/lib/rt/sub",
            "usr/lib/rt/sub/data",
            "usr/lib/rt/tool"
        ]
    );
    assert_eq!(snap["usr/lib/rt/tool"].1, 0o755);
    assert_eq!(snap["usr/lib/rt/sub/data"].1, 0o644);
    assert_eq!(snap["usr/lib/rt/link"], ('l', 0, "sub/data".into()));
    assert_eq!(
        std::fs::read(sq.join("usr/lib/rt/sub/data")).unwrap(),
        vec![9u8; 300_000]
    );
}

/// The squashfs codec is the plan's: a zstd image whose bytes do not depend on `--jobs`, read
/// back by squashfs-tools and, as root, mounted by the host kernel (the kernel the images boot).
#[test]
fn squashfs_zstd_codec_is_the_plans_whatever_the_jobs() {
    if Command::new("unsquashfs").arg("-help").output().is_err() {
        println!("skipped: unsquashfs not installed (apt-get install squashfs-tools)");
        return;
    }
    let c = Case::new();
    let modules = mount_modules(&c);
    std::fs::create_dir_all(c.path("tree/small")).unwrap();
    // Several blocks of each big file, and small files that share fragment blocks.
    let noise = |n: u32, seed: u32| -> Vec<u8> {
        (0..n).map(|i| (i.wrapping_mul(seed) >> 9) as u8).collect()
    };
    std::fs::write(c.path("tree/big"), noise(1_500_000, 2_654_435_761)).unwrap();
    std::fs::write(c.path("tree/big2"), noise(700_000, 40_503)).unwrap();
    for i in 0..30 {
        std::fs::write(c.path(&format!("tree/small/{i}")), noise(30_000 + i, i + 3)).unwrap();
    }
    let plan = serde_json::json!({
        "version": 1, "name": "sq",
        "kernel": {"image": c.path("kernel"), "modules_dir": modules},
        "squashfs": {"algorithm": "zstd", "level": 19},
        "components": [
            {"name": "mods", "modules": ["loop", "squashfs", "overlay"]},
            {"name": "rt", "packing": "squashfs",
             "trees": [{"source": c.path("tree"), "dest": "/usr/lib/rt"}]},
            {"name": "rt2", "packing": "squashfs", "squashfs": {"algorithm": "lz4hc"},
             "trees": [{"source": c.path("tree/small"), "dest": "/usr/lib/rt2"}]}
        ]
    });
    std::fs::write(c.path("plan.json"), plan.to_string()).unwrap();
    let mut indexes = Vec::new();
    for jobs in ["1", "3"] {
        let out = c.path(&format!("out{jobs}"));
        let o = run(diskless()
            .args(["build", "--no-cache", "--jobs", jobs, "--plan"])
            .arg(c.path("plan.json"))
            .arg("--out")
            .arg(&out));
        assert!(o.status.success(), "{}", stderr(&o));
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("sq.json")).unwrap()).unwrap();
        indexes.push((out, index));
    }
    let digests = |i: &serde_json::Value| -> Vec<String> {
        i["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sha256"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        digests(&indexes[0].1),
        digests(&indexes[1].1),
        "--jobs changed the bytes"
    );
    let (out, index) = &indexes[1];
    let unpacked = c.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    unpack_segments(out, index, &unpacked);
    for (seg, codec) in [("rt", "zstd"), ("rt2", "lz4")] {
        let image = unpacked.join(format!(".diskless/squashfs/{seg}.sqfs"));
        let o = run(Command::new("unsquashfs").arg("-s").arg(&image));
        let info = String::from_utf8_lossy(&o.stdout);
        assert!(
            info.contains(&format!("Compression {codec}")),
            "{seg}: {info}"
        );
    }
    let image = unpacked.join(".diskless/squashfs/rt.sqfs");
    let sq = c.path("sq");
    let o = run(Command::new("unsquashfs")
        .arg("-no-progress")
        .arg("-d")
        .arg(&sq)
        .arg(&image));
    assert!(o.status.success(), "{}", stderr(&o));
    let want = snapshot(&c.path("tree"));
    let got = |root: &Path| -> Vec<(String, String)> {
        snapshot(root)
            .into_iter()
            .filter(|(_, v)| v.0 == 'f')
            .map(|(k, v)| (k, v.2))
            .collect()
    };
    let want: Vec<(String, String)> = want
        .into_iter()
        .filter(|(_, v)| v.0 == 'f')
        .map(|(k, v)| (format!("usr/lib/rt/{k}"), v.2))
        .collect();
    assert_eq!(got(&sq), want, "unsquashfs reads back other contents");
    if !is_root() {
        println!("skipped: mounting with the host kernel needs root");
        return;
    }
    let mnt = c.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let o = run(Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(&image)
        .arg(&mnt));
    if !o.status.success() {
        println!("skipped: cannot mount a squashfs here: {}", stderr(&o));
        return;
    }
    let mounted = got(&mnt);
    let _ = Command::new("umount").arg(&mnt).status();
    assert_eq!(mounted, want, "the host kernel reads back other contents");
}

#[test]
fn a_squashfs_codec_needs_squashfs_packing() {
    let c = Case::new();
    let plan = c.plan(serde_json::json!([
        {"name": "rt", "squashfs": {"algorithm": "zstd"},
         "generated": [{"dest": "/usr/bin/x", "contents": "x"}]}
    ]));
    let e = c.fails(&plan, &[]);
    assert!(
        e.contains("components[0] (rt).squashfs") && e.contains("packing"),
        "{e}"
    );
    let plan = serde_json::json!({
        "version": 1, "name": "bad", "kernel": {"image": c.path("kernel")},
        "squashfs": {"algorithm": "zstd", "level": 23}, "components": []
    });
    let e = c.fails(&plan.to_string(), &[]);
    assert!(e.contains("squashfs: zstd level 23"), "{e}");
}

#[test]
fn squashfs_packing_needs_its_modules() {
    let c = Case::new();
    let plan = c.plan(serde_json::json!([
        {"name": "rt", "packing": "squashfs",
         "generated": [{"dest": "/usr/bin/x", "contents": "x"}]}
    ]));
    let e = c.fails(&plan, &[]);
    assert!(
        e.contains("components[0] (rt).packing") && e.contains("loop, squashfs, overlay"),
        "{e}"
    );
}
