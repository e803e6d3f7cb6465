//! Archives written by a real third-party tool, skopeo (what nixpkgs `dockerTools.pullImage`
//! runs): docker-archive (plain layers, `<digest>.tar` names, a legacy `layer.tar` symlink) and
//! OCI layout (no platform in the index: the config says it) are ingested, and converting
//! back to OCI keeps the config blob. Prints `skipped: …` without skopeo (Debian: skopeo).

mod oci_fixtures;

use diskless_oci::{image_segments_with_cache, LayerCompression, BLOB_POOL};
use oci_fixtures::*;
use std::process::Command;

fn skopeo(from: &str, to: &str) {
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy", from, to])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_written_archives_are_ingested() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        println!("skipped: skopeo is not installed (Debian: skopeo)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    busybox_root(&t.path().join("root"));
    let r = "docker.io/library/bb:1";
    let oci = oci_build(
        &t.path().join("root"),
        r,
        LayerCompression::Gzip,
        &t.path().join("bb.tar"),
    );
    let p = |n: &str| t.path().join(n).to_str().unwrap().to_owned();
    skopeo(
        &format!("oci-archive:{}", p("bb.tar")),
        &format!("docker-archive:{}:{r}", p("docker.tar")),
    );
    skopeo(
        &format!("oci-archive:{}", p("bb.tar")),
        &format!("oci:{}:bb", p("layout")),
    );

    let images = [
        image("oci", &oci, r),
        image("docker", &t.path().join("docker.tar"), r),
        image("layout", &t.path().join("layout"), r),
    ];
    let segs = image_segments_with_cache(&images, &t.path().join("cache")).unwrap();
    let [first, docker, layout] = &segs[..] else {
        panic!()
    };
    // Same config blob after the docker-archive round trip (image ID kept).
    assert_eq!(first.contract.blobs[1], docker.contract.blobs[1]);
    // skopeo stored the layer uncompressed: a new blob, with the plain tar media type.
    assert_ne!(first.contract.blobs[2], docker.contract.blobs[2]);
    let manifest = &docker.tree.entries[&format!("{BLOB_POOL}/{}", &docker.contract.blobs[0][7..])];
    let diskless_builder::tree::EntryKind::File(diskless_builder::tree::Content::Bytes(m)) =
        &manifest.kind
    else {
        panic!("converted manifest is built in memory")
    };
    let m: serde_json::Value = serde_json::from_slice(m).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    // The layout is the OCI archive's blobs again: its segment stores only its index.
    assert_eq!(layout.contract.blobs, first.contract.blobs);
    assert_eq!(layout.tree.entries.len(), 1);
}
