//! Every class of bad input to `diskless build`, through the real binary: each case names the
//! problem, exits non-zero and leaves nothing in `--out`.

#[path = "common/build.rs"]
mod build_common;

use build_common::*;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

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
