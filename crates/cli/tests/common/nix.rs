//! What the Nix-layer tests (`nix_eval.rs`, `nix_options.rs`, `nix_flake.rs`) share: the
//! stand-in packages and kernel they evaluate the modules with, evaluation and build helpers.
//! Included by path, `#[macro_use]` for `or_skip!`.
#![allow(dead_code)] // each test crate uses a different subset

use diskless_builder::plan::Plan;
use diskless_builder::{index::Index, store::object_path};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A binary of another workspace crate (the init), built beside `diskless` by
/// `cargo build --workspace --bins` (scripts/test does; Cargo builds only this crate's own).
pub fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_diskless")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The repository root: this crate lives in `crates/cli`.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

pub fn have_nix_instantiate() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `$NIXPKGS_LIB` and nix-instantiate, or the reason this machine cannot evaluate the modules.
pub fn nix_env() -> Result<PathBuf, String> {
    if !have_nix_instantiate() {
        return Err("nix-instantiate not found (Debian: apt-get install nix-bin)".into());
    }
    match std::env::var_os("NIXPKGS_LIB") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err("NIXPKGS_LIB unset (a nixpkgs or nix-community/nixpkgs.lib checkout)".into()),
    }
}

/// Returns early from a test with `skipped: <why>` when `$e` is an `Err`.
macro_rules! or_skip {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(why) => {
                println!("skipped: {why}");
                return;
            }
        }
    };
}

/// The packages the fake pkgs name, made of host files. Where the host lacks a program (no kubelet
/// on Debian), a stand-in script takes its place: the build copies bytes, it runs nothing.
/// (path in the package, host files to copy there, first found wins)
pub type PackageFiles = &'static [(&'static str, &'static [&'static str])];

pub const PACKAGES: &[(&str, PackageFiles)] = &[
    (
        "busybox",
        &[("bin/busybox", &["/bin/busybox", "/usr/bin/busybox"])],
    ),
    (
        "containerd",
        &[
            ("bin/containerd", &["/usr/bin/containerd"]),
            ("bin/ctr", &["/usr/bin/ctr"]),
            (
                "bin/containerd-shim-runc-v2",
                &["/usr/bin/containerd-shim-runc-v2"],
            ),
        ],
    ),
    (
        "runc",
        &[("bin/runc", &["/usr/sbin/runc", "/usr/bin/runc"])],
    ),
    (
        "cni-plugins",
        &[
            ("bin/bridge", &["/usr/lib/cni/bridge"]),
            ("bin/host-local", &["/usr/lib/cni/host-local"]),
            ("bin/loopback", &["/usr/lib/cni/loopback"]),
            ("bin/portmap", &["/usr/lib/cni/portmap"]),
        ],
    ),
    (
        "iptables-legacy",
        &[("bin/iptables", &["/usr/sbin/xtables-legacy-multi"])],
    ),
    (
        "util-linux",
        &[("bin/mount", &["/usr/bin/mount", "/bin/mount"])],
    ),
    (
        "iproute2",
        &[("bin/ip", &["/usr/bin/ip", "/bin/ip", "/sbin/ip"])],
    ),
    ("dropbear", &[("bin/dropbear", &["/usr/sbin/dropbear"])]),
    // The control plane's etcd: nothing to copy on Debian, so stand-ins.
    ("etcd", &[("bin/etcd", &[]), ("bin/etcdutl", &[])]),
];

/// A temporary directory holding the fake packages, the kernel and the image archives.
pub struct Fixtures {
    pub dir: tempfile::TempDir,
    pub kernel_version: String,
}

impl Fixtures {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Builds the fixtures, or says why this machine cannot (no kernel with modules).
    pub fn new() -> Result<Fixtures, String> {
        let kernel_version = host_kernel()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();

        let kernel = root.join("kernel");
        fs::create_dir_all(kernel.join("lib/modules")).unwrap();
        std::os::unix::fs::symlink(
            format!("/boot/vmlinuz-{kernel_version}"),
            kernel.join("bzImage"),
        )
        .unwrap();
        // nixpkgs' kernels keep their modules in a `modules` output.
        xz_module_tree(
            Path::new("/lib/modules").join(&kernel_version).as_path(),
            &root
                .join("kernel-modules/lib/modules")
                .join(&kernel_version),
        )?;

        let init = sibling_binary("diskless-init");
        place(
            &root.join("diskless/bin/diskless-init"),
            &[init.to_str().unwrap()],
        );
        place(
            &root.join("diskless/bin/diskless"),
            &[env!("CARGO_BIN_EXE_diskless")],
        );
        for (name, files) in PACKAGES {
            for (dest, candidates) in *files {
                place(&root.join(name).join(dest), candidates);
            }
        }
        std::os::unix::fs::symlink("busybox", root.join("busybox/bin/sh")).unwrap();
        // nixpkgs' kubernetes holds kube-proxy beside the kubelet (and the control plane).
        for (bin, var) in [("kubelet", "KUBELET"), ("kube-proxy", "KUBE_PROXY")] {
            let host = std::env::var(var).unwrap_or_default();
            place(&root.join("kubernetes/bin").join(bin), &[host.as_str()]);
        }

        // The archive names are what fake pkgs' pullImage derives from name and tag.
        let images = root.join("images");
        fs::create_dir_all(&images).unwrap();
        docker_archive(
            &images.join("registry.k8s.io-pause-3.9.tar"),
            "registry.k8s.io/pause:3.9",
        );
        docker_archive(
            &images.join("quay.io-k0sproject-kube-router-v2.2.1-iptables1.8.9-1.tar"),
            "quay.io/k0sproject/kube-router:v2.2.1-iptables1.8.9-1",
        );
        Ok(Fixtures {
            dir,
            kernel_version,
        })
    }

    /// Evaluates `nix/eval-plan.nix` for `image` with `extra` (a Nix list of modules).
    pub fn eval(&self, lib: &Path, image: &str, extra: &str) -> Output {
        Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(repo().join("nix/eval-plan.nix"))
            .arg("--argstr")
            .arg("nixpkgsLib")
            .arg(lib)
            .arg("--argstr")
            .arg("fixtures")
            .arg(self.path())
            .args(["--argstr", "kernelVersion", &self.kernel_version])
            .args(["--argstr", "image", image])
            .args(["--arg", "extraModules", extra])
            .output()
            .expect("run nix-instantiate")
    }

    /// The plan of `image`, written to a file and loaded with the builder's own parser.
    pub fn plan(&self, lib: &Path, image: &str, extra: &str) -> (PathBuf, Plan) {
        let out = self.eval(lib, image, extra);
        assert!(
            out.status.success(),
            "evaluating images/{image}.nix failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = self.path().join(format!("{image}.plan.json"));
        fs::write(&path, &out.stdout).unwrap();
        let plan =
            Plan::load(&path).unwrap_or_else(|e| panic!("the builder rejects the plan: {e}"));
        (path, plan)
    }
}

/// A module tree as nixpkgs' kernels ship it (`.ko.xz`, common-config.nix, indexed by
/// depmod), made from the host's: the modules every group of the one module list names
/// (crates/hostplan/data/kernel-modules.json) and their dependencies, each compressed by `xz`.
pub fn xz_module_tree(host: &Path, dest: &Path) -> Result<(), String> {
    for tool in ["xz", "/usr/sbin/depmod"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "{tool} not installed (apt-get install xz-utils kmod)"
            ));
        }
    }
    let list: serde_json::Value = serde_json::from_slice(
        &fs::read(repo().join("crates/hostplan/data/kernel-modules.json")).unwrap(),
    )
    .unwrap();
    let requests: Vec<(String, String)> = list
        .as_object()
        .unwrap()
        .values()
        .flat_map(|g| g["modules"].as_array().unwrap())
        .map(|m| ("fixture".to_string(), m.as_str().unwrap().to_string()))
        .collect();
    let tree =
        diskless_builder::resolve::kmod::ModuleTree::load(host).map_err(|e| e.to_string())?;
    let modules = tree.resolve(&requests).map_err(|e| e.to_string())?;
    for m in &modules {
        let to = dest.join(&m.relpath);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(host.join(&m.relpath), &to).unwrap();
        let out = Command::new("xz")
            .arg("--check=crc32")
            .arg(&to)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "xz {to:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for index in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        if host.join(index).exists() {
            fs::copy(host.join(index), dest.join(index)).unwrap();
        }
    }
    let root = dest.parent().unwrap().parent().unwrap().parent().unwrap();
    let out = Command::new("/usr/sbin/depmod")
        .arg("-b")
        .arg(root)
        .arg(dest.file_name().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "depmod: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A kernel with its module tree, the newest first.
pub fn host_kernel() -> Result<String, String> {
    let mut versions: Vec<String> = fs::read_dir("/lib/modules")
        .map_err(|e| format!("no /lib/modules ({e}): the fixtures need a kernel"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|v| Path::new(&format!("/boot/vmlinuz-{v}")).exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .ok_or_else(|| "no /boot/vmlinuz-V with /lib/modules/V: the fixtures need a kernel".into())
}

/// Copies the first existing candidate to `dest`, or writes a stand-in script there.
pub fn place(dest: &Path, candidates: &[&str]) {
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let found = candidates
        .iter()
        .find(|c| !c.is_empty() && Path::new(c).is_file());
    match found {
        // A copy, not a hard link: linking changes the host file's ctime, and tar (or a
        // concurrent test reading it) then reports "file changed as we read it".
        // `fs::copy` keeps the mode, setuid included (`/usr/bin/mount`), which Nix's syscall
        // filter refuses when it copies the fixture into the store: reset it to 0755.
        Some(src) => {
            fs::copy(src, dest).unwrap_or_else(|e| panic!("copy {src} to {dest:?}: {e}"));
            fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).unwrap();
        }
        None => {
            let text = format!(
                "#!/bin/sh\necho 'test fixture: {} is not on the build machine' >&2\nexit 1\n",
                dest.display()
            );
            fs::write(dest, text).unwrap();
            fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a one-layer docker-archive (what `dockerTools.pullImage` produces) tagged `tag`.
pub fn docker_archive(dest: &Path, tag: &str) {
    let stage = tempfile::tempdir().unwrap();
    let rootfs = stage.path().join("rootfs");
    place(&rootfs.join("pause"), &["/bin/busybox", "/usr/bin/busybox"]);
    let archive = stage.path().join("archive");
    fs::create_dir_all(&archive).unwrap();

    let layer = stage.path().join("layer.tar");
    tar(&rootfs, &layer);
    let layer_bytes = fs::read(&layer).unwrap();
    let layer_id = sha256_hex(&layer_bytes);
    fs::create_dir_all(archive.join(&layer_id)).unwrap();
    fs::write(archive.join(&layer_id).join("layer.tar"), &layer_bytes).unwrap();

    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": ["/pause"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_id}")] },
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    fs::write(archive.join(&config_name), &config).unwrap();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [tag],
        "Layers": [format!("{layer_id}/layer.tar")],
    }]);
    fs::write(archive.join("manifest.json"), manifest.to_string()).unwrap();
    tar(&archive, dest);
}

pub fn tar(dir: &Path, dest: &Path) {
    let status = Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .args(["--mtime=@0", "-cf"])
        .arg(dest)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar {dir:?}");
}

/// Runs `diskless build` on the plan and checks the output against it.
pub fn build(plan_path: &Path, plan: &Plan, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_diskless"))
        .args(["build", "--no-cache", "--plan"])
        .arg(plan_path)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "diskless build --plan {plan_path:?} failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    check_output(out, plan);
}

/// The index names the plan's segments in order, every object it names is there with its
/// digest, and the iPXE entry loads them.
pub fn check_output(out: &Path, plan: &Plan) {
    let index = Index::load(&out.join(format!("{}.json", plan.name))).unwrap();
    let expected: Vec<String> = std::iter::once("manifest".to_string())
        .chain(plan.components.iter().map(|c| c.name.clone()))
        .chain(plan.images.iter().map(|i| format!("image-{}", i.name)))
        .collect();
    let names: Vec<&String> = index.segments.iter().map(|s| &s.name).collect();
    assert_eq!(names, expected.iter().collect::<Vec<_>>());
    let ipxe = fs::read_to_string(out.join(format!("{}.ipxe", plan.name))).unwrap();
    let objects = std::iter::once((index.kernel.sha256.clone(), index.kernel.size))
        .chain(index.segments.iter().map(|s| (s.sha256.clone(), s.size)));
    for (sha256, size) in objects {
        let bytes = fs::read(out.join(object_path(&sha256))).unwrap();
        assert_eq!(bytes.len() as u64, size, "size of {sha256}");
        assert_eq!(
            sha256_hex(&bytes),
            sha256,
            "object {sha256} does not hash to its name"
        );
        assert!(
            ipxe.contains(&sha256),
            "{sha256} not loaded by the iPXE entry:\n{ipxe}"
        );
    }
}

/// Every fixture ("store") path a command or symlink refers to lies inside a tree the image
/// copies: what the closure promises.
pub fn assert_closed(plan: &Plan, fixtures: &Path) {
    let trees: Vec<&Path> = plan
        .components
        .iter()
        .flat_map(|c| c.trees.iter().map(|t| t.source.as_path()))
        .collect();
    let referenced = plan
        .node
        .services
        .iter()
        .map(|s| s.command[0].clone())
        .chain(
            plan.components
                .iter()
                .flat_map(|c| c.symlinks.iter().map(|l| l.target.clone())),
        )
        .filter(|p| Path::new(p).starts_with(fixtures));
    for path in referenced {
        assert!(
            trees.iter().any(|t| Path::new(&path).starts_with(t)),
            "{path} is used but no tree in the plan copies it (trees: {trees:?})"
        );
    }
}

pub fn component<'a>(plan: &'a Plan, name: &str) -> &'a diskless_builder::plan::Component {
    plan.components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no component {name} in the plan"))
}

/// The sources of a component's trees.
pub fn trees(plan: &Plan, name: &str) -> Vec<PathBuf> {
    component(plan, name)
        .trees
        .iter()
        .map(|t| t.source.clone())
        .collect()
}

pub fn generated<'a>(plan: &'a Plan, component_name: &str, dest: &str) -> &'a str {
    component(plan, component_name)
        .generated
        .iter()
        .find(|g| g.dest == dest)
        .unwrap_or_else(|| panic!("{component_name} does not generate {dest}"))
        .contents
        .as_str()
}
