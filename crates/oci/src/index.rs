//! What containerd's importer reads an image's name from: the refs (checked by the rule CRI
//! looks images up by) and the single-image OCI index that carries the first of them. Shared
//! by the segment writer and `oci build`.

use super::verify::canonical_json;
use diskless_contract::reference::Reference;
use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};
use std::collections::HashMap;

/// Annotation containerd's importer names an image by.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI spec's reference-name annotation.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A reference CRI would not look an image up by (the message says why and what to write).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RefError(String);

/// Refs must be what CRI looks images up by: valid by the distribution grammar, fully
/// qualified and tagged (kubelet asks for `docker.io/library/busybox:latest`, never `busybox`).
/// The init checks the contract with the same rule.
pub fn check_ref(r: &str) -> Result<(), RefError> {
    Reference::qualified(r).map_err(|e| RefError(e.into()))?;
    Ok(())
}

/// An OCI index with one manifest, named `reference` the two ways containerd's importer reads a
/// name (`io.containerd.image.name` first, then `org.opencontainers.image.ref.name`).
pub fn single_image_index(manifest: &Descriptor, reference: &str) -> Vec<u8> {
    let mut desc = manifest.clone();
    desc.set_annotations(Some(HashMap::from([
        (ANNOTATION_CONTAINERD_NAME.to_owned(), reference.to_owned()),
        (ANNOTATION_REF_NAME.to_owned(), reference.to_owned()),
    ])));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![desc])
        .build()
        .expect("all required index fields are set");
    canonical_json(&index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_must_be_qualified_and_tagged() {
        check_ref("registry.k8s.io/pause:3.6").unwrap();
        check_ref("localhost:5000/a/b:1").unwrap();
        check_ref(&format!(
            "docker.io/library/busybox@sha256:{}",
            "ab".repeat(32)
        ))
        .unwrap();
        assert!(check_ref("docker.io/library/busybox@sha256:abc").is_err());
        let e = check_ref("busybox:1").unwrap_err().to_string();
        assert!(e.contains("docker.io/library/busybox:1"), "{e}");
        let e = check_ref("docker.io/library/busybox")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no tag"), "{e}");
        assert!(check_ref("docker.io/Library/x:1").is_err());
    }
}
