//! Preloaded container images enter the pipeline through [`Preloader`]: the `oci` crate, which
//! builds on this one (it needs [`Tree`] and the plan's types), implements it, and the command
//! line hands it to [`crate::pipeline::build`]. So the pipeline depends on no image format.

use crate::plan::{Compression, PreloadImage};
use crate::tree::Tree;
use diskless_contract::image::ImageRef;

/// One segment per image: its tree (blobs in the shared pool, plus the image's index file),
/// deduplicated against the images before it, and its contract entry.
pub struct ImageSegment {
    pub segment_name: String,
    pub tree: Tree,
    pub contract: ImageRef,
}

/// A preloader's error, whatever its crate: the pipeline only passes it on.
pub type PreloadError = Box<dyn std::error::Error + Send + Sync>;

pub trait Preloader {
    /// Segments for the plan's `images[]`, in order. Errors name the plan entry, its archive
    /// and the blob or entry at fault.
    fn segments(&self, images: &[PreloadImage]) -> Result<Vec<ImageSegment>, PreloadError>;
    /// How image segments are compressed (they are mostly already-compressed layers).
    fn compression(&self) -> Compression;
}
