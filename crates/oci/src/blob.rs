//! What an ingested image is, shared by the readers (`layout`, `docker`), the cache (`archive`)
//! and the segment writer: its blobs, each verified, and the manifest descriptor for its index.

use diskless_builder::tree::Content;
use oci_spec::image::{Arch, Os, Platform, PlatformBuilder};

/// A blob of an ingested image: its digest, where its bytes are, and what it is (for messages).
pub struct Blob {
    pub hex: String,
    pub content: Content,
    pub what: String,
}

/// An image read from an archive: the manifest descriptor for its index, and its blobs
/// (manifest, config, layers), every one verified.
pub struct Ingested {
    pub manifest: oci_spec::image::Descriptor,
    pub blobs: Vec<Blob>,
}

/// The one platform diskless nodes run.
pub fn linux_amd64() -> Platform {
    PlatformBuilder::default()
        .os(Os::Linux)
        .architecture(Arch::Amd64)
        .build()
        .expect("os and architecture are all a platform needs")
}
