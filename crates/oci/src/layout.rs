//! OCI image layouts (a directory, or the same tree in an OCI archive tar): find the one
//! linux/amd64 manifest behind `index.json`, descending into nested indexes (multi-platform
//! images, buildx output), and collect its verified blobs.

use super::archive::{Limits, Located, Source};
use super::layer;
use super::verify::{check_blob, descriptor_hex};
use super::{Blob, Ingested};
use anyhow::{bail, Context};
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

/// Annotation containerd's importer names an image by.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI spec's reference-name annotation.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

fn is_index(mt: &MediaType) -> bool {
    *mt == MediaType::ImageIndex || mt.as_ref() == DOCKER_MANIFEST_LIST
}

fn is_manifest(mt: &MediaType) -> bool {
    *mt == MediaType::ImageManifest || mt.as_ref() == DOCKER_MANIFEST
}

/// Locates the blob a descriptor names and checks its digest and size.
pub fn blob(src: &Source, desc: &Descriptor, what: &str) -> anyhow::Result<Located> {
    let hex = descriptor_hex(desc, what)?;
    let loc = src
        .locate(&format!("blobs/sha256/{hex}"))
        .with_context(|| format!("{what} blob sha256:{hex} is missing"))?;
    check_blob(desc, what, &loc.hex, loc.size)?;
    Ok(loc)
}

fn read_blob(src: &Source, desc: &Descriptor, what: &str) -> anyhow::Result<(Vec<u8>, Located)> {
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
pub fn ingest(src: &Source, refs: &[String]) -> anyhow::Result<Ingested> {
    let (layout, _) = src.read_small("oci-layout")?;
    let layout: OciLayout = serde_json::from_slice(&layout).context("oci-layout is not valid")?;
    if !layout.image_layout_version().starts_with("1.") {
        bail!(
            "oci-layout has imageLayoutVersion {:?}; this builder reads 1.x layouts",
            layout.image_layout_version()
        );
    }
    let (index, _) = src.read_small("index.json")?;
    let index: ImageIndex =
        serde_json::from_slice(&index).context("index.json is not a valid OCI image index")?;
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
        [] if candidates.is_empty() => bail!("index.json lists no image manifest"),
        [] => bail!(
            "no linux/amd64 manifest: the archive has {}; diskless nodes are linux/amd64",
            platforms(&candidates)
        ),
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
fn pick_by_ref<'a>(many: &[&'a Candidate], refs: &[String]) -> anyhow::Result<&'a Candidate> {
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
            bail!(
                "the archive holds {} linux/amd64 images ({}); list exactly one of their names in refs, or give one image per archive",
                many.len(),
                names.join(", ")
            )
        }
    }
}

fn collect(
    src: &Source,
    index: &ImageIndex,
    at: &str,
    depth: usize,
    out: &mut Vec<Candidate>,
) -> anyhow::Result<()> {
    for (i, desc) in index.manifests().iter().enumerate() {
        let what = format!("{at} manifests[{i}]");
        if is_index(desc.media_type()) {
            if depth >= MAX_NESTING {
                bail!("{what}: image indexes nested more than {MAX_NESTING} deep");
            }
            let (bytes, _) = read_blob(src, desc, &what)?;
            let nested: ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("{what} is not a valid image index"))?;
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
) -> anyhow::Result<(ImageManifest, ImageConfiguration)> {
    let (bytes, _) = read_blob(src, desc, what)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{what} is not a valid image manifest"))?;
    let (bytes, _) = read_blob(src, manifest.config(), &format!("{what} config"))?;
    let config: ImageConfiguration = serde_json::from_slice(&bytes)
        .with_context(|| format!("{what} config is not a valid image configuration"))?;
    Ok((manifest, config))
}

/// Checks the platform a config declares: the descriptor's platform is only a hint.
pub fn check_platform(config: &ImageConfiguration, what: &str) -> anyhow::Result<()> {
    if *config.os() != Os::Linux || *config.architecture() != Arch::Amd64 {
        bail!(
            "{what} is an image for {}/{}; diskless nodes are linux/amd64",
            config.os(),
            config.architecture()
        );
    }
    Ok(())
}

fn image_from_manifest(src: &Source, desc: &Descriptor, what: &str) -> anyhow::Result<Ingested> {
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
        bail!(
            "{what} lists {} layers but its config has {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    for (i, (layer, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let layer_what = format!("{what} layers[{i}]");
        let declared =
            layer::declared(layer.media_type().as_ref()).with_context(|| layer_what.clone())?;
        let loc = blob(src, layer, &layer_what)?;
        let uncompressed = layer::check(&loc, declared, Limits::DEFAULT)
            .with_context(|| format!("{layer_what} (sha256:{})", loc.hex))?;
        if *diff_id != format!("sha256:{uncompressed}") {
            bail!(
                "{layer_what} does not match {config_what}: uncompressed it hashes to sha256:{uncompressed}, the diff_id is {diff_id}"
            );
        }
        blobs.push(Blob::at(loc, layer_what));
    }
    let mut manifest_desc = Descriptor::new(
        desc.media_type().clone(),
        desc.size(),
        desc.digest().clone(),
    );
    manifest_desc.set_platform(Some(super::linux_amd64()));
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
