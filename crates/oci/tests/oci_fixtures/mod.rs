//! Image archives made at test time with the `tar` crate and `diskless oci build`: nothing big
//! is committed, and each test says exactly which bytes it feeds the ingester.
#![allow(dead_code)] // each test crate uses a different subset

use diskless_builder::plan::PreloadImage;
use diskless_oci::{build_from_dir, BuildSpec, LayerCompression};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One member of a hand-made tar: names are written raw, so hostile archives can be made.
pub enum Member {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    HardLink(String, String),
    CharDevice(String),
    /// A regular file whose header claims `size` bytes, with no data behind it.
    Claims(String, u64),
}

fn raw_header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let field = &mut h.as_old_mut().name;
    assert!(name.len() < field.len(), "fixture names stay short");
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

/// A tar of `members`, in order, without any path checks.
pub fn tar_bytes(members: &[Member]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        match m {
            Member::File(name, data) => {
                let mut h = raw_header(name, tar::EntryType::Regular, data.len() as u64, 0o644);
                h.set_cksum();
                b.append(&h, data.as_slice()).unwrap();
            }
            Member::Dir(name) => {
                let mut h = raw_header(name, tar::EntryType::Directory, 0, 0o755);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Member::Symlink(name, target) | Member::HardLink(name, target) => {
                let kind = if matches!(m, Member::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                };
                let mut h = raw_header(name, kind, 0, 0o777);
                h.set_link_name_literal(target).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Member::Claims(name, size) => {
                let mut h = raw_header(name, tar::EntryType::Regular, 0, 0o644);
                h.set_size(*size);
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
            Member::CharDevice(name) => {
                let mut h = raw_header(name, tar::EntryType::Char, 0, 0o600);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Z {
    None,
    Gzip,
    Zstd,
}

pub fn compress(bytes: &[u8], z: Z) -> Vec<u8> {
    match z {
        Z::None => bytes.to_vec(),
        Z::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        }
        Z::Zstd => zstd::encode_all(bytes, 3).unwrap(),
    }
}

/// A layer: an uncompressed tar holding `files`, plus the compressed form.
pub struct Layer {
    pub tar: Vec<u8>,
    pub stored: Vec<u8>,
    pub z: Z,
    /// A media type to declare instead of the one `z` calls for (hostile fixtures).
    pub declared: Option<&'static str>,
}

impl Layer {
    pub fn new(files: &[(&str, &[u8])], z: Z) -> Layer {
        let members: Vec<Member> = files
            .iter()
            .map(|(n, d)| Member::File(n.to_string(), d.to_vec()))
            .collect();
        let tar = tar_bytes(&members);
        let stored = compress(&tar, z);
        Layer {
            tar,
            stored,
            z,
            declared: None,
        }
    }
    /// A layer of the given uncompressed tar members, stored as `z`.
    pub fn of(members: &[Member], z: Z) -> Layer {
        let tar = tar_bytes(members);
        let stored = compress(&tar, z);
        Layer {
            tar,
            stored,
            z,
            declared: None,
        }
    }
    pub fn diff_id(&self) -> String {
        format!("sha256:{}", sha(&self.tar))
    }
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha(&self.stored))
    }
    pub fn media_type(&self) -> &'static str {
        if let Some(mt) = self.declared {
            return mt;
        }
        match self.z {
            Z::None => "application/vnd.oci.image.layer.v1.tar",
            Z::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Z::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

pub fn config_json(layers: &[&Layer], arch: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id()).collect();
    serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// The members of an OCI layout: `oci-layout`, `index.json` (one entry per manifest, with the
/// given platform), and blobs. Returns the members and each manifest's bytes.
pub struct OciImage<'a> {
    pub layers: Vec<&'a Layer>,
    pub arch: &'a str,
    pub name: Option<&'a str>,
}

pub fn oci_members(images: &[OciImage]) -> Vec<Member> {
    let mut blobs: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut manifests = Vec::new();
    for img in images {
        let config = config_json(&img.layers, img.arch);
        let layers: Vec<_> = img
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type(), "digest": l.digest(), "size": l.stored.len()}))
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", sha(&config)), "size": config.len()},
            "layers": layers,
        }))
        .unwrap();
        let mut desc = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha(&manifest)), "size": manifest.len(),
            "platform": {"architecture": img.arch, "os": "linux"},
        });
        if let Some(n) = img.name {
            desc["annotations"] = json!({"io.containerd.image.name": n});
        }
        manifests.push(desc);
        blobs.insert(sha(&config), config);
        blobs.insert(sha(&manifest), manifest);
        for l in &img.layers {
            blobs.insert(sha(&l.stored), l.stored.clone());
        }
    }
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).unwrap();
    let mut members = vec![
        Member::File(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Member::File("index.json".into(), index),
        Member::Dir("blobs/".into()),
        Member::Dir("blobs/sha256/".into()),
    ];
    for (hex, data) in blobs {
        members.push(Member::File(format!("blobs/sha256/{hex}"), data));
    }
    members
}

/// docker-archive members in the classic `docker save` shape: `<id>/layer.tar`, `<hex>.json`,
/// `manifest.json`.
pub fn docker_members(layers: &[&Layer], tag: &str) -> Vec<Member> {
    let config = config_json(layers, "amd64");
    let config_name = format!("{}.json", sha(&config));
    let mut members = vec![Member::File(config_name.clone(), config)];
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let path = format!("layer{i}/layer.tar");
        members.push(Member::Dir(format!("layer{i}/")));
        members.push(Member::File(path.clone(), l.stored.clone()));
        paths.push(path);
    }
    let manifest =
        serde_json::to_vec(&json!([{"Config": config_name, "RepoTags": [tag], "Layers": paths}]))
            .unwrap();
    members.push(Member::File("manifest.json".into(), manifest));
    members
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_owned()
}

pub fn image(name: &str, archive: &Path, r: &str) -> PreloadImage {
    PreloadImage {
        name: name.into(),
        archive: archive.to_owned(),
        refs: vec![r.into()],
        labels: Default::default(),
        deferred: false,
        condition_path: None,
    }
}

/// A root filesystem with busybox and a few applet links.
pub fn busybox_root(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// `oci build` of `root` into `out`.
pub fn oci_build(root: &Path, reference: &str, layer: LayerCompression, out: &Path) -> PathBuf {
    let spec = BuildSpec {
        reference: reference.into(),
        cmd: Some(vec!["/bin/sh".into()]),
        layer,
        ..Default::default()
    };
    build_from_dir(root, &spec, out).unwrap();
    out.to_owned()
}

/// Unpacks a tar into a directory (an OCI archive becomes an OCI layout directory).
pub fn untar(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    tar::Archive::new(std::fs::File::open(archive).unwrap())
        .unpack(dir)
        .unwrap();
}
