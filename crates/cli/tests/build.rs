//! The builder end to end, through the real `diskless` binary: reproducibility of the host
//! reference image, an independent reader (GNU cpio) unpacking exactly the planned tree, and
//! the segment cache. Bad input is `build_refusals.rs`, squashfs packing `build_squashfs.rs`.

#[path = "common/build.rs"]
mod build_common;

use build_common::*;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

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
