//! The reference worker's preloaded images, made from the host's static busybox with
//! [`build_from_dir`]: no registry, no network. `pause` is what containerd 1.6.20 starts as
//! every pod's sandbox (its default `sandbox_image`); `busybox` is the test workload.

use super::build::{build_from_dir, BuildError, BuildSpec, LayerCompression};
use super::verify::{hash_file, sha256_hex, DigestError};
use diskless_builder::plan::PreloadImage;
use diskless_kube::images::{PAUSE_REF, WORKLOAD_REF};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// The images this crate makes itself (busybox's `pause` and `busybox`, `coredns`) could not be
/// made.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// No static busybox to make them of: an environment problem.
    #[error("the reference images are made from {BUSYBOX} (Debian: busybox-static): {0}")]
    Busybox(DigestError),
    /// The stack's coredns binary cannot be read: an environment problem.
    #[error("{0}")]
    Coredns(DigestError),
    #[error("{} --list failed: {status}", busybox.display())]
    Applets {
        busybox: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error(transparent)]
    Image(#[from] BuildError),
    /// An I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    /// Making image `what` failed.
    #[error("{what}: {cause}")]
    Build {
        what: String,
        cause: Box<ReferenceError>,
    },
}

impl ReferenceError {
    /// Whether this machine lacks what the images are made of (busybox, the stack's coredns).
    pub fn is_environment(&self) -> bool {
        match self {
            ReferenceError::Busybox(_) | ReferenceError::Coredns(_) => true,
            ReferenceError::Build { cause, .. } => cause.is_environment(),
            _ => false,
        }
    }
}

/// For `map_err`: an I/O error while doing `context`.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReferenceError {
    let context = context.into();
    move |cause| ReferenceError::Io { context, cause }
}

/// For `map_err`: making image `what` failed.
pub(crate) fn building(what: impl Into<String>) -> impl FnOnce(ReferenceError) -> ReferenceError {
    let what = what.into();
    move |cause| ReferenceError::Build {
        what,
        cause: Box::new(cause),
    }
}

/// The static busybox both images are made of.
pub const BUSYBOX: &str = "/bin/busybox";
/// Bump when what these images contain changes, so cached archives are rebuilt.
const RECIPE_VERSION: &str = "diskless-reference-images-v1";

/// A sandbox must live until the kubelet stops it and then exit promptly. busybox `sleep` as
/// PID 1 ignores SIGTERM (PID 1 gets no default signal actions), so the shell traps TERM/INT
/// and waits on a background sleep, which `wait` lets the trap interrupt.
const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done";

struct Recipe {
    name: &'static str,
    reference: &'static str,
    /// Applet links to create; `None` means every applet busybox has.
    applets: Option<&'static [&'static str]>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

fn recipes() -> Vec<Recipe> {
    vec![
        Recipe {
            name: "pause",
            reference: PAUSE_REF,
            applets: Some(&["sh", "sleep"]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), PAUSE_SCRIPT.into()]),
            cmd: None,
        },
        Recipe {
            name: "busybox",
            reference: WORKLOAD_REF,
            applets: None,
            entrypoint: None,
            cmd: Some(vec!["/bin/sh".into()]),
        },
    ]
}

/// Builds (or reuses) `pause` and `busybox` image archives in `cache_dir` and returns their plan
/// entries. Archive names are derived from everything that goes into them (busybox's bytes and
/// the recipe), so a present file is reused and a changed busybox gets a new name.
pub fn host_reference_images(cache_dir: &Path) -> Result<Vec<PreloadImage>, ReferenceError> {
    let busybox = Path::new(BUSYBOX);
    let (busybox_hex, _) = hash_file(busybox).map_err(ReferenceError::Busybox)?;
    std::fs::create_dir_all(cache_dir)
        .map_err(io(format!("cannot create {}", cache_dir.display())))?;
    let mut images = Vec::new();
    for recipe in recipes() {
        let key = format!(
            "{RECIPE_VERSION}\0{busybox_hex}\0{}\0{}\0{:?}\0{:?}\0{:?}",
            recipe.name, recipe.reference, recipe.applets, recipe.entrypoint, recipe.cmd
        );
        let out = cache_dir.join(format!(
            "{}-{}.oci.tar",
            recipe.name,
            &sha256_hex(key.as_bytes())[..32]
        ));
        if out.exists() {
            diskless_builder::store::touch(&out);
        } else {
            build(&recipe, busybox, &out).map_err(building(format!(
                "cannot build the {} reference image",
                recipe.name
            )))?;
        }
        images.push(PreloadImage {
            name: recipe.name.to_owned(),
            archive: out,
            refs: vec![recipe.reference.to_owned()],
            labels: Default::default(),
            deferred: false,
            condition_path: None,
        });
    }
    Ok(images)
}

fn build(recipe: &Recipe, busybox: &Path, out: &Path) -> Result<(), ReferenceError> {
    let root = tempfile::tempdir().map_err(io("cannot create a temporary directory"))?;
    // Every step below writes into the fresh temporary root.
    let writing = || io(format!("cannot write {}", root.path().display()));
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).map_err(writing())?;
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(io(format!("cannot copy {}", busybox.display())))?;
    let applets: Vec<String> = match recipe.applets {
        Some(list) => list.iter().map(|s| s.to_string()).collect(),
        None => list_applets(busybox)?,
    };
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        symlink("busybox", bin.join(applet)).map_err(writing())?;
    }
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(writing())
    };
    // Directories every container expects; mode set explicitly so the umask cannot leak in.
    for (dir, mode) in [("tmp", 0o1777), ("etc", 0o755), ("root", 0o700)] {
        let p = root.path().join(dir);
        std::fs::create_dir(&p).map_err(writing())?;
        chmod(&p, mode)?;
    }
    for p in [root.path().to_owned(), bin.clone()] {
        chmod(&p, 0o755)?;
    }
    chmod(&bin.join("busybox"), 0o755)?;
    std::fs::write(
        root.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .map_err(writing())?;
    std::fs::write(root.path().join("etc/group"), "root:x:0:\n").map_err(writing())?;
    for f in ["etc/passwd", "etc/group"] {
        chmod(&root.path().join(f), 0o644)?;
    }
    let spec = BuildSpec {
        reference: recipe.reference.to_owned(),
        entrypoint: recipe.entrypoint.clone(),
        cmd: recipe.cmd.clone(),
        env: Vec::new(),
        layer: LayerCompression::Gzip,
        mtime: 0,
    };
    build_from_dir(root.path(), &spec, out)?;
    Ok(())
}

/// `busybox --list`: the applets this busybox build has.
fn list_applets(busybox: &Path) -> Result<Vec<String>, ReferenceError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(io(format!("cannot run {} --list", busybox.display())))?;
    if !out.status.success() {
        return Err(ReferenceError::Applets {
            busybox: busybox.to_owned(),
            status: out.status,
        });
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(str::to_owned)
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}
