//! Plan `images[]` → one segment per image, blobs deduplicated across images.
//!
//! All images share one blob pool, `/var/lib/diskless/oci/blobs/sha256/<hex>`: a blob goes into
//! the segment of the first image that needs it and into no later one, so a base layer shared
//! by several images is stored, transferred and unpacked once. Each image's segment then holds
//! only its own new blobs plus its index file, so changing one image recompresses only its
//! segment. The contract lists every blob an image needs, including those placed earlier, so
//! the init can assemble a complete OCI archive for `ctr images import`.

use super::archive::{ArchiveError, Source};
use super::blob::Ingested;
use super::index::{check_ref, single_image_index, RefError};
use super::layout::IngestError;
use super::{docker, layout};
use diskless_builder::plan::PreloadImage;
use diskless_builder::preload::ImageSegment;
use diskless_builder::tree::{Content, Entry, EntryKind, Tree};
use diskless_contract::image::ImageRef;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// A plan's `images[]` that cannot become segments: the message names the entry (and for an
/// archive, the blob or member at fault).
#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("{at}: name must match [a-z0-9][a-z0-9._-]* (it names the segment image-<name>)")]
    Name { at: String },
    #[error("{at}: another image already has this name; names must be unique")]
    Duplicate { at: String },
    #[error("{at}: refs is empty; give the reference(s) the image carries, e.g. registry.k8s.io/pause:3.6")]
    NoRefs { at: String },
    #[error("{at}: ref {reference:?}: {cause}")]
    Ref {
        at: String,
        reference: String,
        cause: RefError,
    },
    #[error("{at}: {why}")]
    Condition { at: String, why: String },
    #[error("image {name:?} ({}): {cause}", archive.display())]
    Image {
        name: String,
        archive: std::path::PathBuf,
        cause: Box<IngestError>,
    },
    /// No blob cache to unpack archives into.
    #[error(transparent)]
    Cache(#[from] ArchiveError),
}

impl PreloadError {
    /// Whether this machine lacks something (a home for the blob cache).
    pub fn is_environment(&self) -> bool {
        match self {
            PreloadError::Image { cause, .. } => cause.is_environment(),
            PreloadError::Cache(e) => e.is_environment(),
            _ => false,
        }
    }
}

/// Where images live in the node's root.
pub const OCI_DIR: &str = "/var/lib/diskless/oci";
/// The shared blob pool.
pub const BLOB_POOL: &str = "/var/lib/diskless/oci/blobs/sha256";

/// Like `diskless_oci::image_segments`, with an explicit blob cache for unpacked tar archives.
pub fn image_segments_with_cache(
    images: &[PreloadImage],
    cache: &Path,
) -> Result<Vec<ImageSegment>, PreloadError> {
    check_entries(images)?;
    let mut placed = BTreeSet::new();
    let mut segments = Vec::with_capacity(images.len());
    for image in images {
        let ingested = ingest(image, cache).map_err(|cause| PreloadError::Image {
            name: image.name.clone(),
            archive: image.archive.clone(),
            cause: Box::new(cause),
        })?;
        segments.push(segment(image, ingested, &mut placed));
    }
    Ok(segments)
}

fn ingest(image: &PreloadImage, cache: &Path) -> Result<Ingested, IngestError> {
    let src = Source::open(&image.archive, cache)?;
    // docker save (25+) writes both layouts into one archive; the OCI one is the exact one.
    let mut ingested = if src.contains("oci-layout") && src.contains("index.json") {
        layout::ingest(&src, &image.refs)?
    } else if src.contains("manifest.json") {
        docker::ingest(&src, &image.refs)?
    } else {
        return Err(IngestError::NotAnArchive);
    };
    // Only the blobs the image uses stay in the cache.
    src.keep(&mut ingested.blobs)?;
    Ok(ingested)
}

fn segment(
    image: &PreloadImage,
    ingested: Ingested,
    placed: &mut BTreeSet<String>,
) -> ImageSegment {
    let mut tree = Tree::default();
    let mut blobs: Vec<String> = Vec::new();
    for blob in ingested.blobs {
        let digest = format!("sha256:{}", blob.hex);
        if !blobs.contains(&digest) {
            blobs.push(digest);
        }
        if placed.insert(blob.hex.clone()) {
            tree.entries.insert(
                format!("{BLOB_POOL}/{}", blob.hex),
                Entry {
                    kind: EntryKind::File(blob.content),
                    mode: 0o644,
                    origin: format!("image {}: {}", image.name, blob.what),
                },
            );
        }
    }
    let index_path = format!("{OCI_DIR}/{}.index.json", image.name);
    tree.entries.insert(
        index_path.clone(),
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(single_image_index(
                &ingested.manifest,
                &image.refs[0],
            )))),
            mode: 0o644,
            origin: format!("image {}: index", image.name),
        },
    );
    ImageSegment {
        segment_name: format!("image-{}", image.name),
        tree,
        contract: ImageRef {
            name: image.name.clone(),
            index: index_path,
            blobs,
            refs: image.refs.clone(),
            labels: image.labels.clone(),
            deferred: image.deferred,
            condition_path: image.condition_path.clone(),
        },
    }
}

fn check_entries(images: &[PreloadImage]) -> Result<(), PreloadError> {
    let mut names = BTreeSet::new();
    for (i, image) in images.iter().enumerate() {
        let at = format!("images[{i}] ({:?})", image.name);
        let valid_name = image
            .name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && image
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !valid_name {
            return Err(PreloadError::Name { at });
        }
        if !names.insert(&image.name) {
            return Err(PreloadError::Duplicate { at });
        }
        if image.refs.is_empty() {
            return Err(PreloadError::NoRefs { at });
        }
        for r in &image.refs {
            check_ref(r).map_err(|cause| PreloadError::Ref {
                at: at.clone(),
                reference: r.clone(),
                cause,
            })?;
        }
        if let Some(p) = &image.condition_path {
            // The init's rule, which component conditions follow too.
            diskless_contract::image::check_condition_path(p).map_err(|why| {
                PreloadError::Condition {
                    at: at.clone(),
                    why: why.into(),
                }
            })?;
        }
    }
    Ok(())
}
