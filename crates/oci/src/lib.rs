//! Container images preloaded into the image: ingest image archives (docker-archive, OCI
//! archive, OCI layout), verify every blob, deduplicate blobs across images and turn each image
//! into its own segment; and `diskless oci build`, which makes small images from a directory.
//!
//! One file per concern: `archive` (tar/dir access and hostile-archive checks), `verify`
//! (digests), `layer` (layer media types, compression and entries), `layout` (OCI index → linux/amd64 manifest), `docker` (docker-archive → OCI
//! manifest), `segment` (blob pool, dedupe, index file), `build` (`oci build`), `reference`
//! (the reference worker's busybox-made images), `coredns` (its cluster DNS image), `cli` (`diskless oci …`). `docs/images.md` is the user's guide.

mod archive;
mod build;
mod coredns;
mod docker;
mod layer;
mod layout;
mod reference;
mod segment;
mod verify;

pub use archive::default_cache_dir;
pub use build::{build_from_dir, BuildSpec, BuildSummary, LayerCompression};
pub use coredns::coredns_image;
pub use diskless_kube::images::{COREDNS_REF, PAUSE_REF, WORKLOAD_REF};
pub use reference::host_reference_images;
pub use segment::{check_ref, image_segments_with_cache, BLOB_POOL, OCI_DIR};

use diskless_builder::plan::{Algorithm, Compression, PreloadImage};
use diskless_builder::tree::Content;
use oci_spec::image::{Arch, Os, Platform, PlatformBuilder};

pub use diskless_builder::preload::ImageSegment;

/// The pipeline's source of image segments: tar archives unpacked through the blob cache at
/// [`default_cache_dir`].
pub struct Preload;

impl diskless_builder::preload::Preloader for Preload {
    fn segments(
        &self,
        images: &[PreloadImage],
    ) -> Result<Vec<ImageSegment>, diskless_builder::preload::PreloadError> {
        Ok(image_segments(images)?)
    }

    fn compression(&self) -> Compression {
        default_compression()
    }
}

/// Segments for the plan's `images[]`, in order, using the blob cache at [`default_cache_dir`]
/// for tar archives. Errors name the plan entry, its archive and the blob or entry at fault.
pub fn image_segments(images: &[PreloadImage]) -> anyhow::Result<Vec<ImageSegment>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    image_segments_with_cache(images, &default_cache_dir()?)
}

/// Image segments are mostly layers that are already gzip/zstd: zstd at level 1 stores those
/// at ≈ no cost (incompressible blocks are kept raw) and still shrinks uncompressed layers
/// (nixpkgs `dockerTools` and `docker save` layers are plain tar). Measured in docs/images.md.
pub fn default_compression() -> Compression {
    Compression {
        algorithm: Algorithm::Zstd,
        level: Some(1),
        // Layers are already compressed: a long window would only cost time.
        window_log: Some(0),
    }
}

/// A blob of an ingested image: its digest, where its bytes are, and what it is (for messages).
pub(crate) struct Blob {
    pub hex: String,
    pub content: Content,
    pub what: String,
}

/// An image read from an archive: the manifest descriptor for its index, and its blobs
/// (manifest, config, layers), every one verified.
pub(crate) struct Ingested {
    pub manifest: oci_spec::image::Descriptor,
    pub blobs: Vec<Blob>,
}

fn linux_amd64() -> Platform {
    PlatformBuilder::default()
        .os(Os::Linux)
        .architecture(Arch::Amd64)
        .build()
        .expect("os and architecture are all a platform needs")
}
