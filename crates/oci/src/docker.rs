//! docker-archive (`docker save`, nixpkgs `dockerTools.buildImage`/`buildLayeredImage`/
//! `pullImage`) → an OCI manifest over the archive's own config and layer bytes.
//!
//! Docker's config JSON is a superset of the OCI image config, so it is kept byte for byte (its
//! digest, the image ID, stays the same). Layers are kept as they are too; their media type
//! follows their compression, read from magic bytes because docker-archive names say nothing
//! (`layer.tar` is often uncompressed, skopeo writes gzip under `.tar`). The manifest is the only
//! new document, written as canonical JSON so it is the same bytes on every build.

use super::archive::{Compression, Limits, Located, Source};
use super::blob::{linux_amd64, Blob, Ingested};
use super::layer;
use super::layout::{check_platform, json, within, IngestError};
use super::verify::{canonical_json, sha256_digest, sha256_hex};
use diskless_builder::tree::Content;
use diskless_contract::digest::is_sha256_hex;
use diskless_contract::reference::Reference;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifestBuilder, MediaType};
use serde::Deserialize;
use std::sync::Arc;

/// One entry of docker-archive's `manifest.json`. No crate models this format; these are the
/// only fields that matter (`LayerSources` and friends are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Whether a plan ref names a docker-archive tag: `busybox:latest` in `RepoTags` is
/// `docker.io/library/busybox:latest` in a plan.
fn ref_matches(reference: &str, tag: &str) -> bool {
    reference == tag || reference.ends_with(&format!("/{tag}"))
}

pub fn ingest(src: &Source, refs: &[String]) -> Result<Ingested, IngestError> {
    let (bytes, _) = src.read_small("manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes)
        .map_err(json("manifest.json is not a docker-archive manifest"))?;
    // Tags are matched against the plan's refs: a tag no runtime would accept is a broken or
    // hand-made archive, refused here rather than half-matched.
    for (i, entry) in entries.iter().enumerate() {
        for (j, tag) in entry.repo_tags.iter().flatten().enumerate() {
            Reference::parse(tag).map_err(|e| IngestError::RepoTag {
                i,
                j,
                tag: tag.clone(),
                why: e.to_string(),
            })?;
        }
    }
    let entry = match entries.as_slice() {
        [] => return Err(IngestError::NoImage),
        [one] => one,
        many => {
            let matching: Vec<&DockerEntry> = many
                .iter()
                .filter(|e| {
                    e.repo_tags
                        .iter()
                        .flatten()
                        .any(|t| refs.iter().any(|r| ref_matches(r, t)))
                })
                .collect();
            match matching.as_slice() {
                [one] => *one,
                _ => {
                    let tags: Vec<String> = many
                        .iter()
                        .map(|e| e.repo_tags.clone().unwrap_or_default().join(" "))
                        .collect();
                    return Err(IngestError::AmbiguousTags {
                        count: many.len(),
                        tags: tags.join("; "),
                    });
                }
            }
        }
    };

    let (config_bytes, config_loc) = src
        .read_small(&entry.config)
        .map_err(within(format!("config {}", entry.config)))?;
    check_name(&entry.config, &config_loc)?;
    let what = format!("config {}", entry.config);
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(json(format!("{what} is not a valid image configuration")))?;
    check_platform(&config, &what)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(IngestError::DockerLayerCount {
            what,
            layers: entry.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }

    let config_desc = Descriptor::new(
        MediaType::ImageConfig,
        config_loc.size,
        sha256_digest(&config_loc.hex),
    );
    let mut blobs = vec![Blob::at(config_loc, what)];
    let mut layer_descs = Vec::new();
    for (i, (path, diff_id)) in entry.layers.iter().zip(diff_ids).enumerate() {
        let what = format!("layers[{i}] ({path})");
        let loc = src
            .locate(path)
            .map_err(within(format!("{what} is missing")))?;
        check_name(path, &loc)?;
        let media_type = check_layer(&loc, diff_id).map_err(within(what.clone()))?;
        layer_descs.push(Descriptor::new(
            media_type,
            loc.size,
            sha256_digest(&loc.hex),
        ));
        blobs.push(Blob::at(loc, what));
    }

    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_desc)
        .layers(layer_descs)
        .build()
        .map_err(IngestError::Manifest)?;
    let bytes = canonical_json(&manifest);
    let hex = sha256_hex(&bytes);
    let mut manifest_desc = Descriptor::new(
        MediaType::ImageManifest,
        bytes.len() as u64,
        sha256_digest(&hex),
    );
    manifest_desc.set_platform(Some(linux_amd64()));
    blobs.insert(
        0,
        Blob {
            hex,
            content: Content::Bytes(Arc::new(bytes)),
            what: "manifest (converted from manifest.json)".into(),
        },
    );
    Ok(Ingested {
        manifest: manifest_desc,
        blobs,
    })
}

/// Files named by their digest (`<hex>.json`, `blobs/sha256/<hex>`, `<hex>.tar`) must hash to
/// that name: a mismatch is a corrupt or tampered archive.
fn check_name(path: &str, loc: &Located) -> Result<(), IngestError> {
    let stem = path.rsplit('/').next().unwrap_or(path);
    let stem = stem.split('.').next().unwrap_or(stem);
    if is_sha256_hex(stem) && stem != loc.hex {
        return Err(IngestError::CorruptName {
            path: path.to_string(),
            stem: stem.to_string(),
            hex: loc.hex.clone(),
        });
    }
    Ok(())
}

/// A layer's media type from its magic bytes, after checking that it is a tar archive whose
/// uncompressed content is the config's diff_id (the only digest a docker-archive gives for a
/// layer) and that no entry escapes the layer root.
fn check_layer(loc: &Located, diff_id: &str) -> Result<MediaType, IngestError> {
    // The caller names the layer.
    let compression = layer::actual(loc)?;
    let uncompressed_hex = layer::check(loc, compression, Limits::DEFAULT)?;
    if diff_id != format!("sha256:{uncompressed_hex}") {
        return Err(IngestError::DockerDiffId {
            uncompressed: uncompressed_hex,
            diff_id: diff_id.to_string(),
        });
    }
    Ok(match compression {
        Compression::None => MediaType::ImageLayer,
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
    })
}
