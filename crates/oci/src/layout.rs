//! OCI image layouts (a directory, or the same tree in an OCI archive tar): find the one
//! linux/amd64 manifest behind `index.json`, descending into nested indexes (multi-platform
//! images, buildx output), and collect its verified blobs.

use super::archive::{ArchiveError, Limits, Located, Source};
use super::blob::{linux_amd64, Blob, Ingested};
use super::index::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use super::layer::{self, LayerError};
use super::verify::{check_blob, descriptor_hex, DigestError};
use diskless_builder::tree::Content;
use oci_spec::image::{
    Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, OciLayout, Os,
};

/// Docker's equivalents of the OCI index and manifest media types, which `docker save` (25+)
/// and registries still produce; containerd accepts both.
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// How deep nested indexes may go before we call it a loop.
const MAX_NESTING: usize = 4;

/// An image archive (OCI layout or docker-archive) that does not hold one usable linux/amd64
/// image: the message names the document, descriptor or layer at fault.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("not an image archive: it has neither oci-layout + index.json (OCI layout) nor manifest.json (docker-archive)")]
    NotAnArchive,
    /// A JSON document that does not parse; `what` says which and what it should be.
    #[error("{what}: {cause}")]
    Json {
        what: String,
        cause: serde_json::Error,
    },
    #[error("oci-layout has imageLayoutVersion {0:?}; this builder reads 1.x layouts")]
    LayoutVersion(String),
    #[error("index.json lists no image manifest")]
    NoManifest,
    #[error(
        "no linux/amd64 manifest: the archive has {platforms}; diskless nodes are linux/amd64"
    )]
    NoAmd64 { platforms: String },
    #[error("the archive holds {count} linux/amd64 images ({names}); list exactly one of their names in refs, or give one image per archive")]
    Ambiguous { count: usize, names: String },
    #[error("{what}: image indexes nested more than {MAX_NESTING} deep")]
    Nesting { what: String },
    #[error("{what} is an image for {platform}; diskless nodes are linux/amd64")]
    Platform { what: String, platform: String },
    #[error("{what} lists {layers} layers but its config has {diff_ids} diff_ids")]
    LayerCount {
        what: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("{layer} does not match {config}: uncompressed it hashes to sha256:{uncompressed}, the diff_id is {diff_id}")]
    DiffId {
        layer: String,
        config: String,
        uncompressed: String,
        diff_id: String,
    },
    /// A layer that fails its checks; `what` names it.
    #[error("{what}: {cause}")]
    Layer { what: String, cause: LayerError },
    /// A layer that fails its checks, named by the caller (see `In`).
    #[error(transparent)]
    LayerCheck(#[from] LayerError),
    #[error("{what} blob sha256:{hex} is missing: {cause}")]
    MissingBlob {
        what: String,
        hex: String,
        cause: ArchiveError,
    },
    #[error("manifest.json [{i}].RepoTags[{j}] {tag:?}: {why}")]
    RepoTag {
        i: usize,
        j: usize,
        tag: String,
        why: String,
    },
    #[error("manifest.json lists no image")]
    NoImage,
    #[error("manifest.json holds {count} images (tags: {tags}); list exactly one of their tags in refs, or give one image per archive")]
    AmbiguousTags { count: usize, tags: String },
    #[error("manifest.json lists {layers} layers but {what} has {diff_ids} diff_ids")]
    DockerLayerCount {
        what: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("content does not match the config: uncompressed it hashes to sha256:{uncompressed}, the config's diff_id is {diff_id}")]
    DockerDiffId {
        uncompressed: String,
        diff_id: String,
    },
    #[error("{path} is corrupt: it is named by digest sha256:{stem} but its content hashes to sha256:{hex}")]
    CorruptName {
        path: String,
        stem: String,
        hex: String,
    },
    #[error("cannot build the OCI manifest: {0}")]
    Manifest(oci_spec::OciSpecError),
    /// Another failure, with what was being read.
    #[error("{context}: {cause}")]
    In {
        context: String,
        cause: Box<IngestError>,
    },
}

impl IngestError {
    /// Whether this machine lacks something (a home for the blob cache).
    pub fn is_environment(&self) -> bool {
        match self {
            IngestError::Archive(e) => e.is_environment(),
            IngestError::In { cause, .. } => cause.is_environment(),
            _ => false,
        }
    }
}

/// For `map_err`: a JSON document `what` that does not parse.
pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> IngestError {
    let what = what.into();
    move |cause| IngestError::Json { what, cause }
}

/// For `map_err`: an error while reading `context`.
pub(crate) fn within<E: Into<IngestError>>(
    context: impl Into<String>,
) -> impl FnOnce(E) -> IngestError {
    let context = context.into();
    move |cause| IngestError::In {
        context,
        cause: Box::new(cause.into()),
    }
}

/// For `map_err`: layer `what` failed its checks.
pub(crate) fn layer_error(what: impl Into<String>) -> impl FnOnce(LayerError) -> IngestError {
    let what = what.into();
    move |cause| IngestError::Layer { what, cause }
}

fn is_index(mt: &MediaType) -> bool {
    *mt == MediaType::ImageIndex || mt.as_ref() == DOCKER_MANIFEST_LIST
}

fn is_manifest(mt: &MediaType) -> bool {
    *mt == MediaType::ImageManifest || mt.as_ref() == DOCKER_MANIFEST
}

/// Locates the blob a descriptor names and checks its digest and size.
pub fn blob(src: &Source, desc: &Descriptor, what: &str) -> Result<Located, IngestError> {
    let hex = descriptor_hex(desc, what)?;
    let loc = src
        .locate(&format!("blobs/sha256/{hex}"))
        .map_err(|cause| IngestError::MissingBlob {
            what: what.to_string(),
            hex: hex.clone(),
            cause,
        })?;
    check_blob(desc, what, &loc.hex, loc.size)?;
    Ok(loc)
}

fn read_blob(
    src: &Source,
    desc: &Descriptor,
    what: &str,
) -> Result<(Vec<u8>, Located), IngestError> {
    let loc = blob(src, desc, what)?;
    let (bytes, _) = src.read_small(&format!("blobs/sha256/{}", loc.hex))?;
    Ok((bytes, loc))
}

/// A manifest found behind `index.json`, with where it was found and its platform.
struct Candidate {
    desc: Descriptor,
    what: String,
    platform: String,
}

/// Reads an OCI layout (`oci-layout` + `index.json` + `blobs/sha256/`).
pub fn ingest(src: &Source, refs: &[String]) -> Result<Ingested, IngestError> {
    let (layout, _) = src.read_small("oci-layout")?;
    let layout: OciLayout =
        serde_json::from_slice(&layout).map_err(json("oci-layout is not valid"))?;
    if !layout.image_layout_version().starts_with("1.") {
        return Err(IngestError::LayoutVersion(
            layout.image_layout_version().to_string(),
        ));
    }
    let (index, _) = src.read_small("index.json")?;
    let index: ImageIndex = serde_json::from_slice(&index)
        .map_err(json("index.json is not a valid OCI image index"))?;
    let mut candidates = Vec::new();
    collect(src, &index, "index.json", 0, &mut candidates)?;
    let mut amd64: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.platform == "linux/amd64")
        .collect();
    // One image saved under several tags appears once per tag: that is still one image.
    let mut seen = std::collections::HashSet::new();
    amd64.retain(|c| seen.insert(c.desc.digest().clone()));
    let chosen = match amd64.as_slice() {
        [] if candidates.is_empty() => return Err(IngestError::NoManifest),
        [] => {
            return Err(IngestError::NoAmd64 {
                platforms: platforms(&candidates),
            })
        }
        [one] => *one,
        many => pick_by_ref(many, refs)?,
    };
    image_from_manifest(src, &chosen.desc, &chosen.what)
}

fn platforms(candidates: &[Candidate]) -> String {
    let mut p: Vec<&str> = candidates.iter().map(|c| c.platform.as_str()).collect();
    p.sort();
    p.dedup();
    p.join(", ")
}

/// Several linux/amd64 manifests (an archive of several images): take the one whose name
/// annotation is one of the plan entry's refs.
fn pick_by_ref<'a>(many: &[&'a Candidate], refs: &[String]) -> Result<&'a Candidate, IngestError> {
    let name = |c: &Candidate| -> Option<String> {
        let a = c.desc.annotations().as_ref()?;
        a.get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| a.get(ANNOTATION_REF_NAME))
            .cloned()
    };
    let matching: Vec<&&Candidate> = many
        .iter()
        .filter(|c| name(c).is_some_and(|n| refs.contains(&n)))
        .collect();
    match matching.as_slice() {
        [one] => Ok(**one),
        _ => {
            let names: Vec<String> = many
                .iter()
                .map(|c| name(c).unwrap_or_else(|| c.desc.digest().to_string()))
                .collect();
            Err(IngestError::Ambiguous {
                count: many.len(),
                names: names.join(", "),
            })
        }
    }
}

fn collect(
    src: &Source,
    index: &ImageIndex,
    at: &str,
    depth: usize,
    out: &mut Vec<Candidate>,
) -> Result<(), IngestError> {
    for (i, desc) in index.manifests().iter().enumerate() {
        let what = format!("{at} manifests[{i}]");
        if is_index(desc.media_type()) {
            if depth >= MAX_NESTING {
                return Err(IngestError::Nesting { what });
            }
            let (bytes, _) = read_blob(src, desc, &what)?;
            let nested: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(json(format!("{what} is not a valid image index")))?;
            collect(src, &nested, &what, depth + 1, out)?;
        } else if is_manifest(desc.media_type()) {
            let platform = match desc.platform() {
                Some(p) => format!("{}/{}", p.os(), p.architecture()),
                // No platform in the descriptor: the config says which it is.
                None => {
                    let (_, config) = manifest_and_config(src, desc, &what)?;
                    format!("{}/{}", config.os(), config.architecture())
                }
            };
            out.push(Candidate {
                desc: desc.clone(),
                what,
                platform,
            });
        }
        // Other media types (signatures, attestations, artifacts) are not images: skipped.
    }
    Ok(())
}

fn manifest_and_config(
    src: &Source,
    desc: &Descriptor,
    what: &str,
) -> Result<(ImageManifest, ImageConfiguration), IngestError> {
    let (bytes, _) = read_blob(src, desc, what)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(json(format!("{what} is not a valid image manifest")))?;
    let (bytes, _) = read_blob(src, manifest.config(), &format!("{what} config"))?;
    let config: ImageConfiguration = serde_json::from_slice(&bytes).map_err(json(format!(
        "{what} config is not a valid image configuration"
    )))?;
    Ok((manifest, config))
}

/// Checks the platform a config declares: the descriptor's platform is only a hint.
pub fn check_platform(config: &ImageConfiguration, what: &str) -> Result<(), IngestError> {
    if *config.os() != Os::Linux || *config.architecture() != Arch::Amd64 {
        return Err(IngestError::Platform {
            what: what.to_string(),
            platform: format!("{}/{}", config.os(), config.architecture()),
        });
    }
    Ok(())
}

fn image_from_manifest(
    src: &Source,
    desc: &Descriptor,
    what: &str,
) -> Result<Ingested, IngestError> {
    let manifest_loc = blob(src, desc, what)?;
    let (manifest, config) = manifest_and_config(src, desc, what)?;
    check_platform(&config, what)?;
    let config_what = format!("{what} config");
    let config_loc = blob(src, manifest.config(), &config_what)?;
    let mut blobs = vec![
        Blob::at(manifest_loc, what.to_owned()),
        Blob::at(config_loc, config_what.clone()),
    ];
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(IngestError::LayerCount {
            what: what.to_string(),
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }
    for (i, (layer, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let layer_what = format!("{what} layers[{i}]");
        let declared = layer::declared(layer.media_type().as_ref())
            .map_err(layer_error(layer_what.clone()))?;
        let loc = blob(src, layer, &layer_what)?;
        let uncompressed = layer::check(&loc, declared, Limits::DEFAULT)
            .map_err(layer_error(format!("{layer_what} (sha256:{})", loc.hex)))?;
        if *diff_id != format!("sha256:{uncompressed}") {
            return Err(IngestError::DiffId {
                layer: layer_what,
                config: config_what,
                uncompressed,
                diff_id: diff_id.clone(),
            });
        }
        blobs.push(Blob::at(loc, layer_what));
    }
    let mut manifest_desc = Descriptor::new(
        desc.media_type().clone(),
        desc.size(),
        desc.digest().clone(),
    );
    manifest_desc.set_platform(Some(linux_amd64()));
    Ok(Ingested {
        manifest: manifest_desc,
        blobs,
    })
}

impl Blob {
    /// A blob that is a file on disk (layout directory or blob cache).
    pub fn at(loc: Located, what: String) -> Blob {
        Blob {
            hex: loc.hex,
            content: Content::Path {
                path: loc.path,
                size: loc.size,
            },
            what,
        }
    }
}
