//! `diskless oci build` and the reference images: reproducible to the byte, and the archive
//! has the shape the brief promises (sorted, uid 0, fixed mtimes, amd64/linux, no `created`).

mod oci_fixtures;

use diskless_oci::{build_from_dir, host_reference_images, BuildSpec, LayerCompression};
use oci_fixtures::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn spec(layer: LayerCompression) -> BuildSpec {
    BuildSpec {
        reference: "docker.io/library/t:1".into(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo hi".into()]),
        env: vec!["A=b".into()],
        layer,
        mtime: 1_700_000_000,
    }
}

/// A tree whose on-disk metadata (mtimes, creation order) differs per call.
fn make_root(dir: &Path, reverse: bool) {
    busybox_root(dir);
    let mut names = vec!["etc/a", "etc/b", "var/lib/x", "z"];
    if reverse {
        names.reverse();
    }
    for n in names {
        let p = dir.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, n).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    for d in ["etc", "var", "var/lib", "bin"] {
        std::fs::set_permissions(dir.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn oci_build_is_reproducible() {
    let t = tempfile::tempdir().unwrap();
    for layer in [LayerCompression::None, LayerCompression::Gzip] {
        make_root(&t.path().join("first"), false);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        make_root(&t.path().join("second/elsewhere"), true);
        let a = t.path().join("a.tar");
        let b = t.path().join("b.tar");
        build_from_dir(&t.path().join("first"), &spec(layer), &a).unwrap();
        build_from_dir(&t.path().join("second/elsewhere"), &spec(layer), &b).unwrap();
        assert!(
            std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
            "{layer:?}: builds differ"
        );
        std::fs::remove_dir_all(t.path().join("first")).unwrap();
        std::fs::remove_dir_all(t.path().join("second")).unwrap();
    }
}

#[test]
fn oci_build_archive_shape() {
    let t = tempfile::tempdir().unwrap();
    make_root(&t.path().join("root"), false);
    let out = t.path().join("img.tar");
    build_from_dir(&t.path().join("root"), &spec(LayerCompression::Gzip), &out).unwrap();
    let dir = t.path().join("layout");
    untar(&out, &dir);
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(p)).unwrap()).unwrap()
    };
    let index = read("index.json");
    let m = &index["manifests"][0];
    let manifest = read(&format!(
        "blobs/sha256/{}",
        &m["digest"].as_str().unwrap()[7..]
    ));
    let config = read(&format!(
        "blobs/sha256/{}",
        &manifest["config"]["digest"].as_str().unwrap()[7..]
    ));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert!(config.get("created").is_none() && config.get("history").is_none());
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["echo hi"]));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    // The layer: name-sorted, uid/gid 0, no user names, the given mtime, modes from the source.
    let layer = std::fs::read(dir.join(format!(
        "blobs/sha256/{}",
        &manifest["layers"][0]["digest"].as_str().unwrap()[7..]
    )))
    .unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0), "{name}");
        assert_eq!(h.mtime().unwrap(), 1_700_000_000, "{name}");
        assert!(h.username().unwrap().unwrap_or("").is_empty(), "{name}");
        if name == "etc/a" {
            assert_eq!(h.mode().unwrap(), 0o640);
        }
        names.push(name);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(names.contains(&"bin/busybox".to_string()) && names.contains(&"var/lib/x".to_string()));
}

#[test]
fn oci_build_rejects_special_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let fifo = root.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let e = build_from_dir(
        &root,
        &spec(LayerCompression::None),
        &t.path().join("o.tar"),
    )
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("pipe") && msg.contains("FIFO"), "{msg}");
    assert!(!t.path().join("o.tar").exists(), "no partial archive");
}

/// `--ref` follows the distribution grammar and is fully qualified; the message names the
/// flag and the fault, and no archive is written.
#[test]
fn oci_build_refuses_bad_refs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let long_tag = format!("docker.io/library/t:{}", "a".repeat(200));
    for (r, why) in [
        ("docker.io/library/t@sha256:bad", "64 lowercase hex"),
        ("docker.io/library/t:t#x", "not a valid tag"),
        ("docker.io/library/t:-x", "not a valid tag"),
        (long_tag.as_str(), "not a valid tag"),
        ("docker.io/Library/t:1", "lowercase"),
        ("docker.io/library/t\n:1", "whitespace"),
        ("t:1", "docker.io/library/t:1"),
        ("docker.io/library/t", "no tag"),
    ] {
        let mut s = spec(LayerCompression::None);
        s.reference = r.to_string();
        let e = build_from_dir(&root, &s, &t.path().join("o.tar")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("--ref") && msg.contains(why), "{r:?}: {msg}");
        assert!(!t.path().join("o.tar").exists(), "no partial archive");
    }
}

#[test]
fn oci_build_refuses_env_that_is_not_key_value() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for env in ["NOEQUALS", "=value", "A=b\0c"] {
        let mut s = spec(LayerCompression::None);
        s.env = vec![env.to_string()];
        let e = build_from_dir(&root, &s, &t.path().join("o.tar")).unwrap_err();
        assert!(
            format!("{e:#}").contains("is not KEY=VALUE"),
            "{env:?}: {e:#}"
        );
        assert!(!t.path().join("o.tar").exists(), "no partial archive");
    }
}

#[test]
fn reference_images_are_built_once_and_reused() {
    if !Path::new("/bin/busybox").exists() {
        println!("skipped: /bin/busybox missing (Debian: busybox-static)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let first = host_reference_images(t.path()).unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].refs, vec!["registry.k8s.io/pause:3.6".to_string()]);
    let mtimes: Vec<_> = first
        .iter()
        .map(|i| std::fs::metadata(&i.archive).unwrap().modified().unwrap())
        .collect();
    let other = tempfile::tempdir().unwrap();
    let again = host_reference_images(other.path()).unwrap();
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(
            a.archive.file_name(),
            b.archive.file_name(),
            "names are content-derived"
        );
        assert!(std::fs::read(&a.archive).unwrap() == std::fs::read(&b.archive).unwrap());
    }
    let reused = host_reference_images(t.path()).unwrap();
    let after: Vec<_> = reused
        .iter()
        .map(|i| std::fs::metadata(&i.archive).unwrap().modified().unwrap())
        .collect();
    assert_eq!(mtimes, after, "present archives are reused, not rewritten");
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temp files left: {leftovers:?}");
}

/// The cluster DNS image: one file, so a stand-in binary shows the recipe's properties — the same
/// bytes from two caches, the name derived from the binary, the pinned reference.
#[test]
fn the_coredns_image_is_reproducible_and_named_by_its_binary() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("coredns");
    std::fs::write(&bin, b"\x7fELF stand-in").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let first = diskless_oci::coredns_image(&a, &bin).unwrap();
    assert_eq!(first.refs, vec![diskless_oci::COREDNS_REF.to_string()]);
    // Another mode on the source changes nothing: the image's is fixed.
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let second = diskless_oci::coredns_image(&b, &bin).unwrap();
    assert_eq!(first.archive.file_name(), second.archive.file_name());
    assert!(std::fs::read(&first.archive).unwrap() == std::fs::read(&second.archive).unwrap());
    std::fs::write(&bin, b"\x7fELF another").unwrap();
    let other = diskless_oci::coredns_image(&a, &bin).unwrap();
    assert_ne!(first.archive.file_name(), other.archive.file_name());
}
