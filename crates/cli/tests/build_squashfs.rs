//! Squashfs packing through the real `diskless` binary: conditional components carry their
//! condition into the contract, `/usr` travels as one squashfs image read back by
//! squashfs-tools, the codec is the plan's whatever `--jobs`, and what packing needs is checked.

#[path = "common/build.rs"]
mod build_common;

use build_common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

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
