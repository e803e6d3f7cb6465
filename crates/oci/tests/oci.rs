//! Ingesting image archives into segments: every accepted format, every rejected archive
//! class (with an error naming the image, its archive and the entry/blob at fault), dedupe
//! across images, and reproducibility.

mod oci_fixtures;

use diskless_builder::plan::PreloadImage;
use diskless_builder::tree::{Content, EntryKind};
use diskless_oci::{image_segments_with_cache, ImageSegment, LayerCompression, BLOB_POOL, OCI_DIR};
use oci_fixtures::*;
use std::path::Path;

const REF: &str = "docker.io/library/test:1";

fn segments(images: &[PreloadImage], cache: &Path) -> anyhow::Result<Vec<ImageSegment>> {
    Ok(image_segments_with_cache(images, cache)?)
}

fn one(archive: &Path, cache: &Path) -> anyhow::Result<ImageSegment> {
    Ok(segments(&[image("test", archive, REF)], cache)?.remove(0))
}

fn content_bytes(c: &Content) -> Vec<u8> {
    match c {
        Content::Path { path, .. } => std::fs::read(path).unwrap(),
        Content::Bytes(b) => b.to_vec(),
    }
}

/// The image's index file, parsed.
fn index_of(seg: &ImageSegment) -> serde_json::Value {
    let e = &seg.tree.entries[&seg.contract.index];
    let EntryKind::File(c) = &e.kind else {
        panic!("index is a file")
    };
    serde_json::from_slice(&content_bytes(c)).unwrap()
}

/// Every blob the segment stores hashes to its name, and the index points at a stored manifest.
fn assert_consistent(seg: &ImageSegment) {
    for (path, e) in &seg.tree.entries {
        let EntryKind::File(c) = &e.kind else {
            panic!("{path} is not a file")
        };
        if let Some(hex) = path.strip_prefix(&format!("{BLOB_POOL}/")) {
            assert_eq!(sha(&content_bytes(c)), hex, "{path}");
        }
    }
    let index = index_of(seg);
    let m = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(m["platform"]["architecture"], "amd64");
    assert_eq!(
        m["annotations"]["io.containerd.image.name"],
        seg.contract.refs[0]
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        seg.contract.refs[0]
    );
    assert_eq!(seg.contract.blobs[0], m["digest"].as_str().unwrap());
}

fn err(archive: &Path, cache: &Path) -> String {
    let e = one(archive, cache).err().expect("archive must be rejected");
    let msg = format!("{e:#}");
    assert!(msg.contains("image \"test\""), "names the image: {msg}");
    assert!(
        msg.contains(&archive.display().to_string()),
        "names the archive: {msg}"
    );
    msg
}

#[test]
fn oci_archive_from_oci_build_gzip_and_plain() {
    let t = tempfile::tempdir().unwrap();
    busybox_root(&t.path().join("root"));
    for layer in [LayerCompression::Gzip, LayerCompression::None] {
        let out = oci_build(
            &t.path().join("root"),
            REF,
            layer,
            &t.path().join("img.tar"),
        );
        let seg = one(&out, &t.path().join("cache")).unwrap();
        assert_eq!(seg.segment_name, "image-test");
        assert_eq!(seg.contract.index, format!("{OCI_DIR}/test.index.json"));
        assert_eq!(seg.contract.blobs.len(), 3, "manifest, config, one layer");
        assert_eq!(seg.tree.entries.len(), 4, "three blobs and the index");
        assert_consistent(&seg);
    }
}

/// A layout directory's blobs are copied into the cache in the same read that hashes them: a
/// file changed after it was verified (the race of a layer rewritten mid-build) cannot reach
/// the segment under the verified digest.
#[test]
fn oci_layout_directory_blobs_are_hashed_as_copied() {
    let t = tempfile::tempdir().unwrap();
    busybox_root(&t.path().join("root"));
    let out = oci_build(
        &t.path().join("root"),
        REF,
        LayerCompression::Gzip,
        &t.path().join("img.tar"),
    );
    let dir = t.path().join("layout");
    untar(&out, &dir);
    let cache = t.path().join("cache");
    let seg = one(&dir, &cache).unwrap();
    for e in seg.tree.entries.values() {
        if let EntryKind::File(Content::Path { path, .. }) = &e.kind {
            assert!(path.starts_with(&cache), "{}", path.display());
        }
    }
    // Rewrite every blob of the layout (same size, other bytes): the segment still holds the
    // bytes that were verified.
    for f in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let p = f.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        std::fs::write(&p, vec![0x5a; len]).unwrap();
    }
    assert_consistent(&seg);
    assert_no_staging_left(&cache);
}

/// Nothing but blobs named by their digest stays in the cache after an ingest.
fn assert_no_staging_left(cache: &Path) {
    for f in std::fs::read_dir(cache).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().into_string().unwrap();
        assert!(
            name.len() == 64 && f.file_type().unwrap().is_file(),
            "unexpected {name} in the cache"
        );
    }
}

/// Members no image uses (a 1 MiB stray file, an unreferenced blob) are not kept in the cache.
#[test]
fn only_referenced_members_stay_in_the_cache() {
    let t = tempfile::tempdir().unwrap();
    let (mut m, _) = good_members();
    let stray = vec![7u8; 1 << 20];
    m.push(Member::File("stray.bin".into(), stray.clone()));
    let unref = b"unreferenced blob".to_vec();
    m.push(Member::File(
        format!("blobs/sha256/{}", sha(&unref)),
        unref.clone(),
    ));
    let archive = write(&t.path().join("img.tar"), &tar_bytes(&m));
    let cache = t.path().join("cache");
    let seg = one(&archive, &cache).unwrap();
    assert_consistent(&seg);
    assert_no_staging_left(&cache);
    let kept: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!kept.contains(&sha(&stray)), "{kept:?}");
    assert!(!kept.contains(&sha(&unref)), "{kept:?}");
    // manifest, config, layer
    assert_eq!(kept.len(), 3, "{kept:?}");
}

#[test]
fn docker_archive_layers_in_every_compression() {
    let t = tempfile::tempdir().unwrap();
    for (i, z) in [Z::None, Z::Gzip, Z::Zstd].into_iter().enumerate() {
        let base = Layer::new(&[("etc/base", b"base")], z);
        let top = Layer::new(&[("app", b"app")], Z::None);
        let archive = write(
            &t.path().join(format!("d{i}.tar")),
            &tar_bytes(&docker_members(&[&base, &top], "test:1")),
        );
        let seg = one(&archive, &t.path().join("cache")).unwrap();
        assert_consistent(&seg);
        // The manifest was written by the converter: check the media type follows the bytes.
        let manifest =
            seg.tree.entries[&format!("{BLOB_POOL}/{}", &seg.contract.blobs[0][7..])].clone();
        let EntryKind::File(c) = manifest.kind else {
            panic!()
        };
        let m: serde_json::Value = serde_json::from_slice(&content_bytes(&c)).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], base.media_type(), "{z:?}");
        assert_eq!(m["layers"][0]["digest"], base.digest());
        assert_eq!(m["layers"][1]["mediaType"], top.media_type());
    }
}

#[test]
fn docker_archive_compressed_as_a_whole_with_linked_layers() {
    // nixpkgs dockerTools writes .tar.gz (or .tar.zst); docker save links a repeated layer.
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new(&[("x", b"x")], Z::None);
    let mut members = docker_members(&[&l, &l], "test:1");
    members.retain(|m| !matches!(m, Member::File(n, _) if n == "layer1/layer.tar"));
    members.push(Member::Symlink(
        "layer1/layer.tar".into(),
        "../layer0/layer.tar".into(),
    ));
    let plain = tar_bytes(&members);
    for (z, ext) in [(Z::Gzip, "tar.gz"), (Z::Zstd, "tar.zst")] {
        let archive = write(&t.path().join(format!("img.{ext}")), &compress(&plain, z));
        let seg = one(&archive, &t.path().join("cache")).unwrap();
        assert_consistent(&seg);
        assert_eq!(
            seg.contract.blobs.len(),
            3,
            "manifest, config, the layer once"
        );
    }
}

#[test]
fn multi_platform_index_picks_linux_amd64() {
    let t = tempfile::tempdir().unwrap();
    let arm = Layer::new(&[("arm", b"arm")], Z::Gzip);
    let amd = Layer::new(&[("amd", b"amd")], Z::Gzip);
    let members = oci_members(&[
        OciImage {
            layers: vec![&arm],
            arch: "arm64",
            name: None,
        },
        OciImage {
            layers: vec![&amd],
            arch: "amd64",
            name: None,
        },
    ]);
    let archive = write(&t.path().join("multi.tar"), &tar_bytes(&members));
    let seg = one(&archive, &t.path().join("cache")).unwrap();
    assert_consistent(&seg);
    assert!(seg.contract.blobs.contains(&amd.digest()));
    assert!(!seg.contract.blobs.contains(&arm.digest()));
}

#[test]
fn rejects_other_platform_and_says_which_exist() {
    let t = tempfile::tempdir().unwrap();
    let arm = Layer::new(&[("arm", b"arm")], Z::Gzip);
    let members = oci_members(&[OciImage {
        layers: vec![&arm],
        arch: "arm64",
        name: None,
    }]);
    let archive = write(&t.path().join("arm.tar"), &tar_bytes(&members));
    let msg = err(&archive, &t.path().join("cache"));
    assert!(
        msg.contains("no linux/amd64 manifest") && msg.contains("linux/arm64"),
        "{msg}"
    );
}

/// An OCI archive of one small amd64 image, as members, and its layer.
fn good_members() -> (Vec<Member>, Layer) {
    let l = Layer::new(&[("f", b"data")], Z::Gzip);
    let m = oci_members(&[OciImage {
        layers: vec![&l],
        arch: "amd64",
        name: None,
    }]);
    (m, l)
}

fn rejected_with(members: Vec<Member>, needles: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let archive = write(&t.path().join("bad.tar"), &tar_bytes(&members));
    let msg = err(&archive, &t.path().join("cache"));
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
}

#[test]
fn rejects_path_traversal() {
    let (mut m, _) = good_members();
    m.push(Member::File("blobs/../../evil".into(), b"x".to_vec()));
    rejected_with(m, &["path traversal", "blobs/../../evil"]);
}

#[test]
fn rejects_absolute_paths() {
    let (mut m, _) = good_members();
    m.push(Member::File("/etc/evil".into(), b"x".to_vec()));
    rejected_with(m, &["absolute path", "/etc/evil"]);
}

#[test]
fn rejects_links_leaving_the_archive() {
    let (mut m, _) = good_members();
    m.push(Member::Symlink(
        "blobs/sha256/up".into(),
        "../../../etc/shadow".into(),
    ));
    rejected_with(m, &["link leaving the archive", "blobs/sha256/up"]);
    let (mut m, _) = good_members();
    m.push(Member::Symlink("abs".into(), "/etc/shadow".into()));
    rejected_with(m, &["link leaving the archive", "abs"]);
    let (mut m, _) = good_members();
    m.push(Member::HardLink("hard".into(), "../outside".into()));
    rejected_with(m, &["link leaving the archive", "hard"]);
}

#[test]
fn rejects_device_nodes() {
    let (mut m, _) = good_members();
    m.push(Member::CharDevice("dev/null".into()));
    rejected_with(m, &["device node", "dev/null"]);
}

#[test]
fn rejects_duplicate_blobs() {
    let (mut m, l) = good_members();
    m.push(Member::File(
        format!("blobs/sha256/{}", sha(&l.stored)),
        l.stored.clone(),
    ));
    rejected_with(m, &["duplicate entry", &sha(&l.stored)]);
}

#[test]
fn rejects_missing_blobs() {
    let (mut m, l) = good_members();
    let name = format!("blobs/sha256/{}", sha(&l.stored));
    m.retain(|x| !matches!(x, Member::File(n, _) if *n == name));
    rejected_with(m, &["layers[0] blob", &l.digest(), "missing"]);
}

#[test]
fn rejects_corrupt_blobs() {
    let (mut m, l) = good_members();
    let name = format!("blobs/sha256/{}", sha(&l.stored));
    for x in m.iter_mut() {
        if let Member::File(n, data) = x {
            if *n == name {
                let last = data.len() - 1;
                data[last] ^= 1;
            }
        }
    }
    rejected_with(m, &["layers[0] blob", &l.digest(), "corrupt"]);
}

#[test]
fn rejects_docker_layer_not_matching_diff_id() {
    let l = Layer::new(&[("f", b"data")], Z::Gzip);
    let mut m = docker_members(&[&l], "test:1");
    for x in m.iter_mut() {
        if let Member::File(n, data) = x {
            if n == "layer0/layer.tar" {
                *data = compress(&Layer::new(&[("f", b"other")], Z::None).tar, Z::Gzip);
            }
        }
    }
    rejected_with(m, &["layers[0] (layer0/layer.tar)", "diff_id"]);
}

/// An OCI archive of one image with layer `l`.
fn with_layer(l: &Layer) -> Vec<Member> {
    oci_members(&[OciImage {
        layers: vec![l],
        arch: "amd64",
        name: None,
    }])
}

#[test]
fn rejects_unknown_layer_media_types() {
    for mt in [
        "application/zip",
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.oci.image.config.v1+json",
        "application/octet-stream",
        "text/plain",
    ] {
        let mut l = Layer::new(&[("f", b"data")], Z::None);
        l.declared = Some(mt);
        rejected_with(
            with_layer(&l),
            &["layers[0]", mt, "not one containerd unpacks"],
        );
    }
}

/// The media type's compression must be the bytes' compression: the node's unpacker trusts the
/// media type and would fail (or unpack garbage) at boot.
#[test]
fn rejects_layers_whose_bytes_are_not_their_media_type() {
    let tar = Layer::new(&[("f", b"data")], Z::None).tar;
    for (stored, declared, says, is) in [
        (
            Z::None,
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "gzip",
            "uncompressed",
        ),
        (
            Z::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "zstd",
            "gzip",
        ),
        (
            Z::Zstd,
            "application/vnd.oci.image.layer.v1.tar",
            "uncompressed",
            "zstd",
        ),
        (
            Z::Gzip,
            "application/vnd.oci.image.layer.v1.tar",
            "uncompressed",
            "gzip",
        ),
        (
            Z::None,
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "gzip",
            "uncompressed",
        ),
    ] {
        let l = Layer {
            stored: compress(&tar, stored),
            tar: tar.clone(),
            z: stored,
            declared: Some(declared),
        };
        rejected_with(
            with_layer(&l),
            &[
                "layers[0]",
                &format!("media type says {says} but its bytes are {is}"),
            ],
        );
    }
}

/// Bytes that are not a tar under a tar media type: a zip, text, random bytes, a gzip of text.
#[test]
fn rejects_layers_that_are_not_tar() {
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    zip.resize(1024, 0x41);
    for (bytes, z) in [
        (zip, Z::None),
        (b"hello world, not a tar at all".repeat(40), Z::None),
        (
            (0..2048u32).map(|i| (i * 7919 % 251) as u8).collect(),
            Z::None,
        ),
        (b"just text".repeat(100), Z::Gzip),
    ] {
        let l = Layer {
            stored: compress(&bytes, z),
            tar: bytes,
            z,
            declared: None,
        };
        rejected_with(with_layer(&l), &["layers[0]", "tar archive"]);
    }
}

/// Entries of a layer that would land outside the root it is unpacked into.
#[test]
fn rejects_layers_escaping_their_root() {
    for (members, needle) in [
        (
            vec![Member::File("../etc/passwd".into(), b"x".to_vec())],
            "traversal",
        ),
        (
            vec![Member::File("a/../../b".into(), b"x".to_vec())],
            "traversal",
        ),
        (
            vec![Member::File("/etc/shadow".into(), b"x".to_vec())],
            "absolute",
        ),
        (
            vec![
                Member::File("a".into(), b"x".to_vec()),
                Member::HardLink("b".into(), "../../etc/shadow".into()),
            ],
            "hard link \"b\"",
        ),
        (
            vec![Member::HardLink("b".into(), "/etc/shadow".into())],
            "absolute",
        ),
        (
            vec![Member::File("etc/.wh..".into(), Vec::new())],
            "whiteout",
        ),
        (
            vec![Member::File("etc/.wh.".into(), Vec::new())],
            "whiteout",
        ),
        (
            vec![Member::File(".wh.../../x".into(), Vec::new())],
            "traversal",
        ),
    ] {
        for z in [Z::None, Z::Gzip] {
            let l = Layer::of(&members, z);
            rejected_with(with_layer(&l), &["layers[0]", needle]);
            // The same layer through a docker-archive.
            rejected_with(docker_members(&[&l], "test:1"), &["layers[0]", needle]);
        }
    }
}

/// A member whose header claims more than the size limit is refused before anything is read.
#[test]
fn rejects_archives_over_the_size_limit() {
    let (mut m, _) = good_members();
    m.insert(0, Member::Claims("huge".into(), 70 << 30));
    rejected_with(m, &["more than 64 GiB", "limit"]);
    // The same inside a layer.
    let l = Layer::of(&[Member::Claims("huge".into(), 65 << 30)], Z::None);
    rejected_with(with_layer(&l), &["layers[0]", "more than 64 GiB"]);
}

#[test]
fn rejects_what_is_not_an_image() {
    rejected_with(
        vec![Member::File("hello".into(), b"x".to_vec())],
        &["not an image archive"],
    );
}

/// A FIFO given as the archive would block the build for ever: refused before it is opened.
#[test]
fn rejects_an_archive_that_is_not_a_regular_file() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("image.tar");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let msg = err(&fifo, &t.path().join("cache"));
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn shared_layers_are_stored_once() {
    let t = tempfile::tempdir().unwrap();
    // A ~1 MiB incompressible base layer shared by a docker-archive and an OCI archive.
    let noise: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let base = Layer::new(&[("base.bin", &noise)], Z::Gzip);
    let a = Layer::new(&[("a", b"a")], Z::Gzip);
    let b = Layer::new(&[("b", b"b")], Z::Gzip);
    let first = write(
        &t.path().join("a.tar"),
        &tar_bytes(&docker_members(&[&base, &a], "a:1")),
    );
    let second = write(
        &t.path().join("b.tar"),
        &tar_bytes(&oci_members(&[OciImage {
            layers: vec![&base, &b],
            arch: "amd64",
            name: None,
        }])),
    );
    let images = [
        image("a", &first, "docker.io/library/a:1"),
        image("b", &second, "docker.io/library/b:1"),
    ];
    let segs = segments(&images, &t.path().join("cache")).unwrap();
    let base_path = format!("{BLOB_POOL}/{}", sha(&base.stored));
    assert!(segs[0].tree.entries.contains_key(&base_path));
    assert!(
        !segs[1].tree.entries.contains_key(&base_path),
        "stored once, in the first image"
    );
    assert!(
        segs[1].contract.blobs.contains(&base.digest()),
        "still listed as needed"
    );
    let stored = |s: &ImageSegment| -> u64 {
        s.tree
            .entries
            .values()
            .map(|e| match &e.kind {
                EntryKind::File(c) => c.size(),
                _ => 0,
            })
            .sum()
    };
    let archives =
        std::fs::metadata(&first).unwrap().len() + std::fs::metadata(&second).unwrap().len();
    let total = stored(&segs[0]) + stored(&segs[1]);
    println!(
        "dedupe: archives {archives} bytes, segment a {} + segment b {} = {total} bytes stored, shared layer {} bytes",
        stored(&segs[0]),
        stored(&segs[1]),
        base.stored.len()
    );
    assert!(
        stored(&segs[1]) < 4096,
        "b stores only its small layer, config, manifest and index"
    );
    assert!(total < archives - base.stored.len() as u64);
}

#[test]
fn segments_depend_only_on_archive_bytes_and_plan() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new(&[("f", b"data")], Z::None);
    let bytes = tar_bytes(&docker_members(&[&l], "test:1"));
    let render = |dir: &str| -> Vec<(String, u32, Vec<u8>)> {
        let d = t.path().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let archive = write(&d.join("img.tar"), &bytes);
        let seg = one(&archive, &d.join("cache")).unwrap();
        seg.tree
            .entries
            .iter()
            .map(|(p, e)| {
                let EntryKind::File(c) = &e.kind else {
                    panic!()
                };
                (p.clone(), e.mode, content_bytes(c))
            })
            .collect()
    };
    assert_eq!(render("one"), render("two/elsewhere"));
}

#[test]
fn plan_entries_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("x.tar");
    let e = segments(&[image("test", &a, "busybox:1")], t.path())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(
        e.contains("images[0]") && e.contains("docker.io/library/busybox:1"),
        "{e}"
    );
    let e = segments(&[image("Bad", &a, REF)], t.path())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(e.contains("[a-z0-9]"), "{e}");
    let e = segments(&[image("x", &a, REF), image("x", &a, REF)], t.path())
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(e.contains("unique"), "{e}");
}

/// Plan refs by the distribution grammar, each refused with the entry, the ref and the fault.
#[test]
fn plan_refs_follow_the_distribution_grammar() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("x.tar");
    let tag200 = format!("docker.io/library/t:{}", "a".repeat(200));
    for (r, why) in [
        ("docker.io/library/busybox@sha256:bad", "64 lowercase hex"),
        ("docker.io/library/busybox:t#x", "not a valid tag"),
        ("docker.io/library/busybox:-x", "not a valid tag"),
        (tag200.as_str(), "not a valid tag"),
        ("docker.io/Library/busybox:1", "lowercase"),
        ("docker.io/library/a..b:1", "not valid"),
        ("bad_host.io/x:1", "registry domain"),
        ("docker.io/x@md5:00", "not sha256"),
    ] {
        let e = segments(&[image("test", &a, r)], t.path())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap();
        assert!(e.contains("images[0]") && e.contains(why), "{r:?}: {e}");
        assert!(!e.contains("write docker.io"), "no invalid suggestion: {e}");
    }
}

/// A docker-archive whose RepoTags hold what no runtime would accept is refused by name.
#[test]
fn docker_archive_repo_tags_are_checked() {
    let l = Layer::new(&[("f", b"data")], Z::None);
    for (tag, why) in [
        ("test:t#x", "not a valid tag"),
        ("test:-x", "not a valid tag"),
        ("Test:1", "lowercase"),
        ("test@sha256:bad", "64 lowercase hex"),
    ] {
        rejected_with(docker_members(&[&l], tag), &["RepoTags[0]", why]);
    }
}

#[test]
fn one_image_under_two_names_is_one_image() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new(&[("f", b"data")], Z::Gzip);
    let img = |name| OciImage {
        layers: vec![&l],
        arch: "amd64",
        name: Some(name),
    };
    let members = oci_members(&[
        img("docker.io/library/x:1"),
        img("docker.io/library/x:latest"),
    ]);
    let archive = write(&t.path().join("two-tags.tar"), &tar_bytes(&members));
    assert_consistent(&one(&archive, &t.path().join("cache")).unwrap());
}

#[test]
fn several_images_in_one_archive_are_told_apart_by_ref() {
    let t = tempfile::tempdir().unwrap();
    let a = Layer::new(&[("a", b"a")], Z::Gzip);
    let b = Layer::new(&[("b", b"b")], Z::Gzip);
    let members = oci_members(&[
        OciImage {
            layers: vec![&a],
            arch: "amd64",
            name: Some("docker.io/library/a:1"),
        },
        OciImage {
            layers: vec![&b],
            arch: "amd64",
            name: Some(REF),
        },
    ]);
    let archive = write(&t.path().join("two.tar"), &tar_bytes(&members));
    let seg = one(&archive, &t.path().join("cache")).unwrap();
    assert!(seg.contract.blobs.contains(&b.digest()));
    let other = segments(
        &[image("test", &archive, "docker.io/library/c:1")],
        &t.path().join("cache"),
    );
    let msg = format!("{:#}", other.err().unwrap());
    assert!(
        msg.contains("2 linux/amd64 images") && msg.contains("docker.io/library/a:1"),
        "{msg}"
    );
}
