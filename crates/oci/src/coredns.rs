//! The cluster DNS image: the pinned stack's static `coredns` as `/coredns`, its entrypoint,
//! and nothing else (upstream's image is the same binary on a distroless base, whose CA
//! certificates and users CoreDNS's `kubernetes` plugin does not need: it trusts the
//! ServiceAccount's CA and runs as the pod says). Made with [`build_from_dir`] like the
//! busybox-made reference images; gzip layer, so containerd keeps the small blob in RAM.

use super::build::{build_from_dir, BuildSpec, LayerCompression};
use super::reference::{building, io, ReferenceError};
use super::verify::{hash_file, sha256_hex};
use diskless_builder::plan::PreloadImage;
use diskless_kube::images::COREDNS_REF;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Bump when what the image contains changes, so cached archives are rebuilt.
const RECIPE_VERSION: &str = "diskless-coredns-image-v1";

/// Builds (or reuses) the image archive of `coredns` (a static binary) in `cache_dir` and
/// returns its plan entry. The archive's name hashes the binary and the recipe, so a present
/// file is reused and another binary gets another name.
pub fn coredns_image(cache_dir: &Path, coredns: &Path) -> Result<PreloadImage, ReferenceError> {
    let (binary_hex, _) = hash_file(coredns).map_err(ReferenceError::Coredns)?;
    let key = format!("{RECIPE_VERSION}\0{binary_hex}\0{COREDNS_REF}");
    let out = cache_dir.join(format!(
        "coredns-{}.oci.tar",
        &sha256_hex(key.as_bytes())[..32]
    ));
    if out.exists() {
        diskless_builder::store::touch(&out);
    } else {
        std::fs::create_dir_all(cache_dir)
            .map_err(io(format!("cannot create {}", cache_dir.display())))?;
        build(coredns, &out).map_err(building("cannot build the coredns image"))?;
    }
    Ok(PreloadImage {
        name: "coredns".to_owned(),
        archive: out,
        refs: vec![COREDNS_REF.to_owned()],
        labels: Default::default(),
        // Only the API schedules it (no static pod, not the sandbox): its import need not hold
        // the kubelet back, and a standalone node (no join material) has no cluster to serve.
        deferred: true,
        condition_path: Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG.to_owned()),
    })
}

fn build(coredns: &Path, out: &Path) -> Result<(), ReferenceError> {
    let root = tempfile::tempdir().map_err(io("cannot create a temporary directory"))?;
    let dest = root.path().join("coredns");
    std::fs::copy(coredns, &dest).map_err(io(format!("cannot copy {}", coredns.display())))?;
    // Modes set explicitly so neither the umask nor the source's mode leaks in.
    let writing = || io(format!("cannot write {}", root.path().display()));
    std::fs::set_permissions(&dest, PermissionsExt::from_mode(0o755)).map_err(writing())?;
    std::fs::set_permissions(root.path(), PermissionsExt::from_mode(0o755)).map_err(writing())?;
    let spec = BuildSpec {
        reference: COREDNS_REF.to_owned(),
        entrypoint: Some(vec!["/coredns".into()]),
        cmd: None,
        env: Vec::new(),
        layer: LayerCompression::Gzip,
        mtime: 0,
    };
    build_from_dir(root.path(), &spec, out)?;
    Ok(())
}
