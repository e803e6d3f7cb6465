//! Container images preloaded into the image: ingest image archives (docker-archive, OCI
//! archive, OCI layout), verify every blob, deduplicate blobs across images and turn each image
//! into its own segment; and `diskless oci build`, which makes small images from a directory.
//!
//! One file per concern: `archive` (tar/dir access and hostile-archive checks), `verify`
//! (digests), `layer` (layer media types, compression and entries), `layout` (OCI index →
//! linux/amd64 manifest), `docker` (docker-archive → OCI manifest), `blob` (what an ingested
//! image is), `index` (refs and the single-image index file), `segment` (blob pool, dedupe),
//! `build` (`oci build`), `reference` (the reference worker's busybox-made images), `coredns`
//! (its cluster DNS image). `docs/images.md` is the user's guide.

mod archive;
mod blob;
mod build;
mod coredns;
mod docker;
mod index;
mod layer;
mod layout;
mod reference;
mod segment;
mod verify;

pub use archive::{default_cache_dir, ArchiveError};
pub use build::{build_from_dir, BuildError, BuildSpec, BuildSummary, LayerCompression};
pub use coredns::coredns_image;
pub use diskless_kube::images::{COREDNS_REF, PAUSE_REF, WORKLOAD_REF};
pub use index::{check_ref, RefError};
pub use layer::LayerError;
pub use layout::IngestError;
pub use reference::{host_reference_images, ReferenceError};
pub use segment::{image_segments_with_cache, PreloadError, BLOB_POOL, OCI_DIR};
pub use verify::DigestError;

use diskless_builder::plan::{Algorithm, Compression, PreloadImage};

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
pub fn image_segments(images: &[PreloadImage]) -> Result<Vec<ImageSegment>, PreloadError> {
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
