//! `diskless oci build`: a small single-layer image (OCI archive tar) from a directory, with no
//! registry and no daemon. Tests use it to make `pause` and workload images from busybox; users
//! use it for their own tiny images.
//!
//! Reproducible: entries sorted by name, uid/gid 0 with no user names, every mtime the given
//! one, permission bits from the source, a gzip header without timestamp or name, JSON with
//! sorted keys and no `created` date. Same directory + same options → same bytes.

use super::blob::linux_amd64;
use super::index::{check_ref, single_image_index, RefError};
use super::verify::{canonical_json, sha256_digest, sha256_hex, HashingWriter};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageManifestBuilder, MediaType,
    Os, RootFsBuilder,
};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// PATH docker and containerd give images that set none; busybox's applets need it.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `oci build` refused its options or could not pack the directory; messages name the option
/// or the file.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("--ref {reference:?}: {cause}")]
    Ref { reference: String, cause: RefError },
    #[error("--env {0:?} is not KEY=VALUE (a non-empty name, '=', then the value)")]
    Env(String),
    #[error("{} is not a directory", path.display())]
    NotADirectory { path: std::path::PathBuf },
    #[error("{} has a name that is not UTF-8", path.display())]
    NotUtf8 { path: std::path::PathBuf },
    #[error("{} is {what}; images built from a directory hold only files, directories and symlinks", path.display())]
    Special {
        path: std::path::PathBuf,
        what: &'static str,
    },
    #[error("cannot make the image's JSON: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("cannot walk {}: {cause}", root.display())]
    Walk {
        root: std::path::PathBuf,
        cause: walkdir::Error,
    },
    #[error("cannot stat {}: {cause}", path.display())]
    Stat {
        path: std::path::PathBuf,
        cause: walkdir::Error,
    },
    /// An I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io { context: String, cause: io::Error },
    #[error("cannot pack {}: {cause}", from.display())]
    Pack {
        from: std::path::PathBuf,
        cause: Box<BuildError>,
    },
}

/// For `map_err`: an I/O error while doing `context`.
fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let context = context.into();
    move |cause| BuildError::Io { context, cause }
}

/// How the single layer is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// Plain tar: best when the image segment is compressed anyway.
    #[default]
    None,
    /// gzip level 6, the format every runtime accepts.
    Gzip,
}

/// What goes into the image besides the directory's files.
#[derive(Debug, Clone, Default)]
pub struct BuildSpec {
    /// The reference written into the archive's index (`io.containerd.image.name`).
    pub reference: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` pairs; a default PATH is added unless one is given.
    pub env: Vec<String>,
    pub layer: LayerCompression,
    /// Modification time of every layer and archive entry (seconds since the epoch).
    pub mtime: u64,
}

/// What was built.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildSummary {
    pub reference: String,
    /// `sha256:<hex>` of the manifest: the image's identity in containerd.
    pub manifest: String,
    pub layer_bytes: u64,
    pub archive_bytes: u64,
}

/// Builds an OCI archive of `from` at `out` (temp name + rename: never a partial archive).
pub fn build_from_dir(
    from: &Path,
    spec: &BuildSpec,
    out: &Path,
) -> Result<BuildSummary, BuildError> {
    check_ref(&spec.reference).map_err(|cause| BuildError::Ref {
        reference: spec.reference.clone(),
        cause,
    })?;
    for e in &spec.env {
        // What a runtime's config parser expects: `KEY=VALUE`, a non-empty key without '='.
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) || e.contains('\0') {
            return Err(BuildError::Env(e.clone()));
        }
    }
    if !from.is_dir() {
        return Err(BuildError::NotADirectory {
            path: from.to_owned(),
        });
    }
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };

    // The layer goes to a temp file first: its digest must be known before the archive's
    // first entry, and a 100 MB layer should not sit in memory.
    let layer_tmp = tempfile::tempfile_in(out_dir).map_err(io_error(format!(
        "cannot create a temp file in {}",
        out_dir.display()
    )))?;
    let (mut layer_file, diff_id, layer_hex, layer_size) = write_layer(from, spec, layer_tmp)
        .map_err(|cause| BuildError::Pack {
            from: from.to_owned(),
            cause: Box::new(cause),
        })?;

    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_owned());
    }
    let mut config = ConfigBuilder::default().env(env);
    if let Some(e) = &spec.entrypoint {
        config = config.entrypoint(e.clone());
    }
    if let Some(c) = &spec.cmd {
        config = config.cmd(c.clone());
    }
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{diff_id}")])
                .build()?,
        )
        .build()?;
    let config = canonical_json(&config);
    let config_hex = sha256_hex(&config);
    let layer_type = match spec.layer {
        LayerCompression::None => MediaType::ImageLayer,
        LayerCompression::Gzip => MediaType::ImageLayerGzip,
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config.len() as u64,
            sha256_digest(&config_hex),
        ))
        .layers(vec![Descriptor::new(
            layer_type,
            layer_size,
            sha256_digest(&layer_hex),
        )])
        .build()?;
    let manifest = canonical_json(&manifest);
    let manifest_hex = sha256_hex(&manifest);
    let mut manifest_desc = Descriptor::new(
        MediaType::ImageManifest,
        manifest.len() as u64,
        sha256_digest(&manifest_hex),
    );
    manifest_desc.set_platform(Some(linux_amd64()));
    let index = single_image_index(&manifest_desc, &spec.reference);

    let tmp = tempfile::Builder::new()
        .prefix(".oci-build-")
        .tempfile_in(out_dir)
        .map_err(io_error(format!(
            "cannot create a temp file in {}",
            out_dir.display()
        )))?;
    let writing = || io_error(format!("cannot write {}", out.display()));
    let mut tar = tar::Builder::new(BufWriter::new(tmp));
    let dir = |tar: &mut tar::Builder<_>, path: &str| {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, spec.mtime);
        tar.append_data(&mut h, path, io::empty())
    };
    let file = |tar: &mut tar::Builder<_>, path: &str, size: u64, data: &mut dyn io::Read| {
        let mut h = header(tar::EntryType::Regular, 0o644, size, spec.mtime);
        tar.append_data(&mut h, path, data)
    };
    // Blobs sorted by digest, then index.json and oci-layout: name order throughout.
    dir(&mut tar, "blobs/").map_err(writing())?;
    dir(&mut tar, "blobs/sha256/").map_err(writing())?;
    let mut blobs: Vec<(&str, u64)> = vec![
        (&config_hex, config.len() as u64),
        (&manifest_hex, manifest.len() as u64),
        (&layer_hex, layer_size),
    ];
    blobs.sort();
    blobs.dedup();
    for (hex, size) in blobs {
        let path = format!("blobs/sha256/{hex}");
        if hex == layer_hex {
            layer_file.rewind().map_err(writing())?;
            file(
                &mut tar,
                &path,
                size,
                &mut io::BufReader::new(&mut layer_file),
            )
            .map_err(writing())?;
        } else if hex == config_hex {
            file(&mut tar, &path, size, &mut config.as_slice()).map_err(writing())?;
        } else {
            file(&mut tar, &path, size, &mut manifest.as_slice()).map_err(writing())?;
        }
    }
    file(
        &mut tar,
        "index.json",
        index.len() as u64,
        &mut index.as_slice(),
    )
    .map_err(writing())?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    file(
        &mut tar,
        "oci-layout",
        layout.len() as u64,
        &mut layout.as_slice(),
    )
    .map_err(writing())?;
    let tmp = tar
        .into_inner()
        .map_err(writing())?
        .into_inner()
        .map_err(|e| writing()(e.into_error()))?;
    let archive_bytes = tmp.as_file().metadata().map_err(writing())?.len();
    // Temp files are created 0600; the archive is a normal, shareable output file.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(writing())?;
    tmp.persist(out).map_err(|e| writing()(e.error))?;
    Ok(BuildSummary {
        reference: spec.reference.clone(),
        manifest: format!("sha256:{manifest_hex}"),
        layer_bytes: layer_size,
        archive_bytes,
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Writes the layer tar (optionally gzip) to `out`; returns it with the sha256 of the
/// uncompressed tar (diff_id), of the stored bytes (digest) and the stored size.
fn write_layer(
    from: &Path,
    spec: &BuildSpec,
    out: File,
) -> Result<(File, String, String, u64), BuildError> {
    let stored = HashingWriter::new(BufWriter::with_capacity(1 << 20, out));
    match spec.layer {
        LayerCompression::None => {
            let tar = append_tree(from, spec.mtime, HashingWriter::new(stored))?;
            let (stored, diff_id, _) = tar.finish();
            let (buf, hex, size) = stored.finish();
            Ok((
                buf.into_inner()
                    .map_err(|e| io_error("cannot write the layer")(e.into_error()))?,
                diff_id,
                hex,
                size,
            ))
        }
        LayerCompression::Gzip => {
            // flate2 writes a header with mtime 0 and no file name: nothing from the clock.
            let gz = flate2::write::GzEncoder::new(stored, flate2::Compression::new(6));
            let tar = append_tree(from, spec.mtime, HashingWriter::new(gz))?;
            let (gz, diff_id, _) = tar.finish();
            let (buf, hex, size) = gz
                .finish()
                .map_err(io_error("cannot compress the layer"))?
                .finish();
            Ok((
                buf.into_inner()
                    .map_err(|e| io_error("cannot write the layer")(e.into_error()))?,
                diff_id,
                hex,
                size,
            ))
        }
    }
}

/// Appends every entry under `root`, in name order, as a tar stream into `w`.
fn append_tree<W: Write>(root: &Path, mtime: u64, w: W) -> Result<W, BuildError> {
    let mut tar = tar::Builder::new(w);
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(|cause| BuildError::Walk {
            root: root.to_owned(),
            cause,
        })?;
        let path = item.path();
        let rel = path
            .strip_prefix(root)
            .expect("walkdir stays under its root");
        let name = rel.to_str().ok_or_else(|| BuildError::NotUtf8 {
            path: path.to_owned(),
        })?;
        let meta = item.metadata().map_err(|cause| BuildError::Stat {
            path: path.to_owned(),
            cause,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut h = header(tar::EntryType::Directory, mode, 0, mtime);
            tar.append_data(&mut h, format!("{name}/"), io::empty())
                .map_err(io_error(format!("cannot add {}", path.display())))?;
        } else if ft.is_file() {
            let mut h = header(tar::EntryType::Regular, mode, meta.len(), mtime);
            let f =
                File::open(path).map_err(io_error(format!("cannot open {}", path.display())))?;
            tar.append_data(&mut h, name, io::BufReader::new(f))
                .map_err(io_error(format!("cannot add {}", path.display())))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path)
                .map_err(io_error(format!("cannot read link {}", path.display())))?;
            let mut h = header(tar::EntryType::Symlink, 0o777, 0, mtime);
            tar.append_link(&mut h, name, &target)
                .map_err(io_error(format!("cannot add link {}", path.display())))?;
        } else {
            let what = if ft.is_fifo() {
                "a FIFO"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "a device node"
            };
            return Err(BuildError::Special {
                path: path.to_owned(),
                what,
            });
        }
    }
    tar.into_inner()
        .map_err(io_error(format!("cannot pack {}", root.display())))
}
