//! Preloaded container images: once containerd is ready, the images are streamed as OCI
//! archives into `ctr -n k8s.io images import -` (unpacked into the overlayfs snapshotter by
//! ctr's default), then the pool blobs no later image needs are deleted so the RAM they hold
//! is returned. Archives are built on the fly with `tar`, never written to the tmpfs.
//!
//! Batches: each `ctr import` costs ≈ 3 s of process start and unpack setup under TCG, so
//! consecutive images share one archive until their blobs reach `BATCH_BYTES`; a large image
//! still goes alone, so the pool and containerd's copy of it coexist for one batch at most.
//!
//! References: each image's `index.json` is rewritten so that each ref in the contract gets its
//! own manifest descriptor with the `io.containerd.image.name` annotation, which ctr takes as
//! the full image name. That works whatever names the archive originally carried.
//!
//! Order: the images the kubelet needs as soon as it starts (the sandbox, the static pods')
//! come first; the kubelet starts once they are in, and the ones marked `deferred` follow
//! while it starts ([`in_import_order`], main.rs).
//!
//! Labels: each image's `labels` (the builder sets `io.cri-containerd.pinned: pinned` for
//! containerd ≥ 1.7, whose CRI then never lets the kubelet's image GC remove it) go on the
//! `ctr import --label` of its batch, so they cost no extra `ctr` run; a batch never mixes
//! images with different labels. Debian's containerd 1.6 has neither the flag nor pinning:
//! images for it carry no labels.

use diskless_contract::image::{ImageRef, IMAGES_IMPORTED};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::ops::Range;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::sys::{self, SysError};

/// Why preloaded images are not (all) in the container runtime.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `names` are the batch's images, joined by ", ".
    #[error("images {names}: {why}")]
    Batch { names: String, why: BatchError },
    #[error(transparent)]
    Digest(#[from] BadDigest),
}

/// What went wrong with one `ctr import`.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot read {index}: {err}")]
    ReadIndex { index: String, err: std::io::Error },
    #[error("{index}: {why}")]
    Index { index: String, why: IndexError },
    #[error("{0}")]
    Json(serde_json::Error),
    #[error("cannot run ctr: {0}")]
    Spawn(std::io::Error),
    #[error("ctr: {0}")]
    Wait(std::io::Error),
    #[error("`ctr -n k8s.io images import -` failed ({status}): {stderr}")]
    Ctr {
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("streaming {path} to ctr: {err}")]
    Stream { path: String, err: std::io::Error },
    #[error("streaming to ctr: {0}")]
    Finish(std::io::Error),
    #[error("missing blob {path}: {err} (was the image's segment left out of the iPXE entry?)")]
    MissingBlob { path: String, err: std::io::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Digest(#[from] BadDigest),
}

/// An image's OCI index the init cannot name descriptors from.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("it lists no manifests")]
    NoManifests,
    #[error("a manifest descriptor is not an object")]
    NotAnObject,
    #[error("annotations is not an object")]
    Annotations,
}

/// A blob name that is not a digest, so no path in the pool.
#[derive(Debug, thiserror::Error)]
#[error("blob {0:?} is not a sha256:<64 lowercase hex> digest")]
pub struct BadDigest(String);

const POOL: &str = "/var/lib/diskless/oci/blobs/sha256";
/// Blob bytes above which the next image starts a new `ctr import`.
const BATCH_BYTES: u64 = 64 << 20;

/// The images this boot imports (`wanted`: their `condition_path` holds), those not deferred
/// first, then the deferred ones, each group in plan order; and how many come before the
/// kubelet.
pub fn in_import_order(
    images: &[ImageRef],
    wanted: impl Fn(&ImageRef) -> bool,
) -> (Vec<ImageRef>, usize) {
    let (mut order, deferred): (Vec<ImageRef>, Vec<ImageRef>) = images
        .iter()
        .filter(|i| wanted(i))
        .cloned()
        .partition(|i| !i.deferred);
    let early = order.len();
    order.extend(deferred);
    (order, early)
}

/// Deletes the pool blobs that only images this boot leaves out (their `condition_path`
/// missing) use, so their RAM is returned; says what was left out, if anything.
pub fn drop_left_out(images: &[ImageRef]) -> Option<String> {
    let (kept, left): (Vec<&ImageRef>, Vec<&ImageRef>) = images.iter().partition(|i| i.wanted());
    if left.is_empty() {
        return None;
    }
    let names: Vec<(&str, Option<&str>)> = left
        .iter()
        .map(|i| (i.name.as_str(), i.condition_path.as_deref()))
        .collect();
    let blobs = blobs_only_in(&left, &kept)
        .into_iter()
        .filter_map(|b| blob_path(b).ok());
    Some(crate::leftout::remove(
        "images",
        &names,
        blobs,
        "of pool blobs deleted",
    ))
}

/// The blobs of `left` that no image of `kept` needs.
fn blobs_only_in<'a>(left: &[&'a ImageRef], kept: &[&ImageRef]) -> Vec<&'a String> {
    let needed: HashSet<&String> = kept.iter().flat_map(|i| &i.blobs).collect();
    let mut out: Vec<&String> = left
        .iter()
        .flat_map(|i| &i.blobs)
        .filter(|b| !needed.contains(b))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Imports `images[part]`; the pool blobs no image after `part` needs are deleted as they go.
pub fn import_all(images: &[ImageRef], part: Range<usize>) -> Result<String, ImportError> {
    let t0 = Instant::now();
    let (offset, all) = (part.start, images);
    let images = &all[part];
    let sizes: Vec<u64> = images
        .iter()
        .map(|img| {
            img.blobs
                .iter()
                .filter_map(|b| blob_path(b).ok())
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum()
        })
        .collect();
    let mut total = 0u64;
    let mut refs = 0usize;
    let ranges = batches(&sizes, BATCH_BYTES)
        .into_iter()
        .flat_map(|r| split_where_labels_change(images, r));
    for range in ranges {
        let t = Instant::now();
        let batch = &images[range.clone()];
        let bytes = import(batch)?;
        total += bytes;
        let n_refs: usize = batch.iter().map(|i| i.refs.len()).sum();
        refs += n_refs;
        let names: Vec<&str> = batch.iter().map(|i| i.name.as_str()).collect();
        crate::log::info(&format!(
            "images {} imported ({n_refs} refs, {:.1} MB in {:.2} s)",
            names.join(", "),
            bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        ));
        let later: HashSet<&String> = all[offset + range.end..]
            .iter()
            .flat_map(|l| &l.blobs)
            .collect();
        for blob in batch
            .iter()
            .flat_map(|i| &i.blobs)
            .filter(|b| !later.contains(b))
        {
            let _ = std::fs::remove_file(blob_path(blob)?);
        }
    }
    Ok(format!(
        "{} images, {refs} refs, {:.1} MB in {:.2} s",
        images.len(),
        total as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    ))
}

/// Says every image has been dealt with ([`IMAGES_IMPORTED`]).
pub fn mark_imported(summary: &str) -> Result<(), SysError> {
    let dir = std::path::Path::new(IMAGES_IMPORTED)
        .parent()
        .expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(sys::io("create", dir.display().to_string()))?;
    std::fs::write(IMAGES_IMPORTED, summary).map_err(sys::io("write", IMAGES_IMPORTED))
}

/// Groups consecutive images while their blob bytes stay within `limit` (an image larger than
/// the limit is a batch of its own).
pub fn batches(sizes: &[u64], limit: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && sum + size > limit {
            out.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// `range` cut wherever an image's labels differ from the one before it (one `--label` set
/// per `ctr import`).
fn split_where_labels_change(images: &[ImageRef], range: Range<usize>) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = range.start;
    for i in range.start + 1..range.end {
        if images[i].labels != images[i - 1].labels {
            out.push(start..i);
            start = i;
        }
    }
    out.push(start..range.end);
    out
}

fn blob_path(digest: &str) -> Result<String, BadDigest> {
    match diskless_contract::digest::sha256_of(digest) {
        Some(hex) => Ok(format!("{POOL}/{hex}")),
        None => Err(BadDigest(digest.to_owned())),
    }
}

/// The manifest descriptors for an image's refs, one per ref, each named by annotation.
pub fn named_descriptors(
    index: &str,
    refs: &[String],
) -> Result<Vec<serde_json::Value>, IndexError> {
    let doc: serde_json::Value = serde_json::from_str(index).map_err(IndexError::NotJson)?;
    let first = doc
        .get("manifests")
        .and_then(|m| m.as_array())
        .and_then(|m| m.first())
        .cloned()
        .ok_or(IndexError::NoManifests)?;
    let mut manifests = Vec::new();
    for r in refs {
        let mut d = first.clone();
        let obj = d.as_object_mut().ok_or(IndexError::NotAnObject)?;
        let ann = obj
            .entry("annotations")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .ok_or(IndexError::Annotations)?;
        // Only the full name: a bare tag would make ctr invent an `import-<date>` name too.
        ann.remove("org.opencontainers.image.ref.name");
        ann.insert("io.containerd.image.name".into(), r.clone().into());
        manifests.push(d);
    }
    Ok(manifests)
}

/// Whether `ctr` knows `--discard-unpacked-layers` (containerd ≥ 1.7; Debian's 1.6 does not):
/// cleared by the first import that says otherwise.
static DISCARD: AtomicBool = AtomicBool::new(true);

/// One `ctr import` of `batch`. Unpacked layers are discarded from containerd's content store
/// where ctr can (`--local --discard-unpacked-layers`, ctr ≥ 1.7): containers run from the unpacked snapshots, so a compressed copy of every
/// layer would only hold RAM (the CoreDNS image's 16 MB). An older ctr refuses the flag: then
/// the batch is streamed again without it (the pool still holds its blobs).
fn import(batch: &[ImageRef]) -> Result<u64, ImportError> {
    let names: Vec<&str> = batch.iter().map(|i| i.name.as_str()).collect();
    let ctx = |why: BatchError| ImportError::Batch {
        names: names.join(", "),
        why,
    };
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    let mut seen = HashSet::new();
    for img in batch {
        let text = std::fs::read_to_string(&img.index).map_err(|err| {
            ctx(BatchError::ReadIndex {
                index: img.index.clone(),
                err,
            })
        })?;
        manifests.extend(named_descriptors(&text, &img.refs).map_err(|why| {
            ctx(BatchError::Index {
                index: img.index.clone(),
                why,
            })
        })?);
        blobs.extend(img.blobs.iter().filter(|b| seen.insert(*b)).cloned());
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .map_err(|e| ctx(BatchError::Json(e)))?;
    loop {
        let discard = DISCARD.load(Ordering::Relaxed);
        match ctr_import(&batch[0].labels, discard, &index, &blobs) {
            Err(e) if discard && e.to_string().contains("flag provided but not defined") => {
                DISCARD.store(false, Ordering::Relaxed);
            }
            r => return r.map_err(ctx),
        }
    }
}

fn ctr_import(
    labels: &BTreeMap<String, String>,
    discard: bool,
    index: &[u8],
    blobs: &[String],
) -> Result<u64, BatchError> {
    let labels = labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")]);
    let mut child = Command::new("ctr")
        .args(["-n", "k8s.io", "images", "import"])
        // Discarding needs ctr's own import (`--local`), not containerd's transfer service.
        .args(
            discard
                .then_some(["--local", "--discard-unpacked-layers"])
                .into_iter()
                .flatten(),
        )
        .args(labels)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(BatchError::Spawn)?;
    let stdin = child.stdin.take().expect("piped");
    let written = write_archive(stdin, index, blobs);
    let out = child.wait_with_output().map_err(BatchError::Wait)?;
    if !out.status.success() {
        return Err(BatchError::Ctr {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    written
}

/// Streams `oci-layout`, `index.json` and `blobs/sha256/<hex>` as a tar; returns the bytes of
/// blobs sent.
fn write_archive(out: impl Write, index: &[u8], blobs: &[String]) -> Result<u64, BatchError> {
    let mut tar = tar::Builder::new(out);
    let add = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn std::io::Read| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        tar.append_data(&mut h, path, data)
            .map_err(|err| BatchError::Stream {
                path: path.to_owned(),
                err,
            })
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    add(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &mut &layout[..],
    )?;
    add(&mut tar, "index.json", index.len() as u64, &mut &index[..])?;
    let mut total = 0;
    for digest in blobs {
        let path = blob_path(digest)?;
        let f = std::fs::File::open(&path).map_err(|err| BatchError::MissingBlob {
            path: path.clone(),
            err,
        })?;
        let size = f.metadata().map_err(sys::io("stat", &path))?.len();
        let name = format!("blobs/sha256/{}", &digest["sha256:".len()..]);
        add(&mut tar, &name, size, &mut std::io::BufReader::new(f))?;
        total += size;
    }
    tar.finish().map_err(BatchError::Finish)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_never_mixes_labels() {
        let img = |pinned: bool| ImageRef {
            name: "x".into(),
            index: "/i".into(),
            blobs: vec![],
            refs: vec![],
            labels: if pinned {
                [("io.cri-containerd.pinned".to_string(), "pinned".to_string())].into()
            } else {
                Default::default()
            },
            deferred: false,
            condition_path: None,
        };
        let images = [img(true), img(true), img(false), img(true)];
        assert_eq!(
            split_where_labels_change(&images, 0..4),
            vec![0..2, 2..3, 3..4]
        );
        assert_eq!(split_where_labels_change(&images, 0..2), vec![0..2]);
    }

    #[test]
    fn deferred_images_come_last_in_plan_order() {
        let img = |name: &str, deferred: bool| ImageRef {
            name: name.into(),
            index: "/i".into(),
            blobs: vec![],
            refs: vec![],
            labels: Default::default(),
            deferred,
            condition_path: None,
        };
        let images = [
            img("dns", true),
            img("pause", false),
            img("x", true),
            img("app", false),
        ];
        let (order, early) = in_import_order(&images, |_| true);
        let names: Vec<&str> = order.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["pause", "app", "dns", "x"]);
        assert_eq!(early, 2);
        let (order, early) = in_import_order(&images, |i| i.name != "dns" && i.name != "app");
        let names: Vec<&str> = order.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["pause", "x"]);
        assert_eq!(early, 1);
    }

    #[test]
    fn every_ref_gets_a_named_descriptor() {
        let index = r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "digest":"sha256:aa","size":1,"annotations":{"org.opencontainers.image.ref.name":"3.6"}}]}"#;
        let m = named_descriptors(
            index,
            &["registry.k8s.io/pause:3.6".into(), "pause:local".into()],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0]["annotations"]["io.containerd.image.name"],
            "registry.k8s.io/pause:3.6"
        );
        assert_eq!(
            m[1]["annotations"]["io.containerd.image.name"],
            "pause:local"
        );
        assert!(m[0]["annotations"]
            .get("org.opencontainers.image.ref.name")
            .is_none());
        assert_eq!(m[1]["digest"], "sha256:aa");
    }

    #[test]
    fn empty_index_is_an_error() {
        assert!(named_descriptors(r#"{"manifests":[]}"#, &["a".into()]).is_err());
    }

    #[test]
    fn small_images_share_a_batch_large_ones_go_alone() {
        assert_eq!(batches(&[1, 2, 3], 10), vec![0..3]);
        assert_eq!(batches(&[6, 6, 20, 1], 10), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(batches(&[4, 6, 1], 10), vec![0..2, 2..3]);
        assert!(batches(&[], 10).is_empty());
    }

    #[test]
    fn digests_are_checked() {
        assert!(blob_path("sha256:../../etc/passwd").is_err());
        assert!(blob_path(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }

    #[test]
    fn left_out_images_give_back_only_their_own_blobs() {
        let img = |name: &str, blobs: &[&str], condition: Option<&str>| ImageRef {
            name: name.into(),
            index: "/i".into(),
            blobs: blobs.iter().map(|b| b.to_string()).collect(),
            refs: vec![],
            labels: Default::default(),
            deferred: false,
            condition_path: condition.map(String::from),
        };
        let pause = img("pause", &["a", "shared"], None);
        let dns = img("dns", &["shared", "d1", "d2", "d1"], Some("/nonexistent/x"));
        assert!(pause.wanted());
        assert!(!dns.wanted());
        assert!(img("root", &[], Some("/")).wanted());
        assert_eq!(blobs_only_in(&[&dns], &[&pause]), ["d1", "d2"]);
    }
}
