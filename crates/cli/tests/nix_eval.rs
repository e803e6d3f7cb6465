//! The Nix layer, evaluated for real: `modules/` and `images/*.nix` under nixpkgs' `lib` with the
//! stand-in `pkgs` of `nix/fake-pkgs.nix`, whose packages are directories this test assembles from
//! host files. The plan the modules write must be one `diskless build` accepts, and must say what
//! the modules promise (closure, services, static pod from a preloaded image).
//!
//! The flake itself is then checked and built with `--override-input nixpkgs` pointing at
//! `nix/stub-nixpkgs.nix`: real derivations made of the same fixtures, since nixpkgs cannot be
//! fetched here. That runs flake.nix, `nix flake check`, closureInfo and nix/mk-image.nix for real.
//!
//! Needs `nix-instantiate` and `nix` (Debian's nix-bin), and `$NIXPKGS_LIB`: a checkout of nixpkgs
//! or of nix-community/nixpkgs.lib. Without them each test prints `skipped: …` and returns.

use diskless_builder::index::{object_path, Index};
use diskless_builder::plan::Plan;
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A binary of another workspace crate (the init), built beside `diskless` by
/// `cargo build --workspace --bins` (scripts/test does; Cargo builds only this crate's own).
fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_diskless")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

/// The repository root: this crate lives in `crates/cli`.
fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn have_nix_instantiate() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `$NIXPKGS_LIB` and nix-instantiate, or the reason this machine cannot evaluate the modules.
fn nix_env() -> Result<PathBuf, String> {
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
type PackageFiles = &'static [(&'static str, &'static [&'static str])];

const PACKAGES: &[(&str, PackageFiles)] = &[
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
struct Fixtures {
    dir: tempfile::TempDir,
    kernel_version: String,
}

impl Fixtures {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Builds the fixtures, or says why this machine cannot (no kernel with modules).
    fn new() -> Result<Fixtures, String> {
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
    fn eval(&self, lib: &Path, image: &str, extra: &str) -> Output {
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
    fn plan(&self, lib: &Path, image: &str, extra: &str) -> (PathBuf, Plan) {
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
fn xz_module_tree(host: &Path, dest: &Path) -> Result<(), String> {
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
    let tree = diskless_builder::kmod::ModuleTree::load(host).map_err(|e| e.to_string())?;
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
fn host_kernel() -> Result<String, String> {
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
fn place(dest: &Path, candidates: &[&str]) {
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a one-layer docker-archive (what `dockerTools.pullImage` produces) tagged `tag`.
fn docker_archive(dest: &Path, tag: &str) {
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

fn tar(dir: &Path, dest: &Path) {
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
fn build(plan_path: &Path, plan: &Plan, out: &Path) {
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
fn check_output(out: &Path, plan: &Plan) {
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
fn assert_closed(plan: &Plan, fixtures: &Path) {
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

fn component<'a>(plan: &'a Plan, name: &str) -> &'a diskless_builder::plan::Component {
    plan.components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no component {name} in the plan"))
}

/// The sources of a component's trees.
fn trees(plan: &Plan, name: &str) -> Vec<PathBuf> {
    component(plan, name)
        .trees
        .iter()
        .map(|t| t.source.clone())
        .collect()
}

fn generated<'a>(plan: &'a Plan, component_name: &str, dest: &str) -> &'a str {
    component(plan, component_name)
        .generated
        .iter()
        .find(|g| g.dest == dest)
        .unwrap_or_else(|| panic!("{component_name} does not generate {dest}"))
        .contents
        .as_str()
}

#[test]
fn every_nix_file_parses() {
    if !have_nix_instantiate() {
        println!("skipped: nix-instantiate not found (Debian: apt-get install nix-bin)");
        return;
    }
    let mut files = vec![repo().join("flake.nix")];
    for dir in ["modules", "images", "nix"] {
        for entry in walkdir::WalkDir::new(repo().join(dir)).sort_by_file_name() {
            let entry = entry.unwrap();
            if entry.path().extension().is_some_and(|e| e == "nix") {
                files.push(entry.into_path());
            }
        }
    }
    assert!(files.len() > 10, "found only {files:?}");
    for file in files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file:?} does not parse:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn worker_plan_is_what_the_modules_promise_and_builds() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    // zstd -1: this test is about what goes in, and level 10 on ~150 MB takes minutes here.
    let (path, plan) = fx.plan(
        &lib,
        "worker",
        "[ ({ lib, ... }: { compression.level = lib.mkForce 1; }) ]",
    );

    assert_eq!(plan.name, "worker");
    assert_eq!(plan.kernel.image, root.join("kernel/bzImage"));
    let names: Vec<&str> = plan.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["base", "kernel-modules", "containerd", "kubelet"],
        "no package is listed by two components, so nothing is shared and there is no nix-store"
    );
    // Each package in the segment of the one component that lists it: containerd and the
    // kubelet (with its tools) in their squashfs segments, not unpacked into RAM.
    for (name, packages) in [
        ("base", &["diskless", "busybox"][..]),
        ("containerd", &["containerd", "runc", "cni-plugins"]),
        (
            "kubelet",
            &["kubernetes", "iptables-legacy", "util-linux", "iproute2"],
        ),
    ] {
        let trees = trees(&plan, name);
        for p in packages {
            assert!(
                trees.contains(&root.join(p)),
                "{p} not in {name}: {trees:?}"
            );
        }
    }
    assert_eq!(
        component(&plan, "containerd").packing,
        diskless_builder::plan::Packing::Squashfs
    );
    let modules = &component(&plan, "kernel-modules").modules;
    for m in ["virtio_pci", "virtio_net", "overlay", "br_netfilter"] {
        assert!(modules.iter().any(|x| x == m), "{m} not in {modules:?}");
    }
    assert_eq!(
        component(&plan, "base").files[0].source,
        root.join("diskless/bin/diskless-init")
    );

    // containerd first and ready before the kubelet, which is standalone (no join material);
    // kube-proxy and pod-routes are there for a node whose segment makes it join.
    let services: Vec<&str> = plan.node.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        services,
        ["containerd", "kubelet", "kube-proxy", "pod-routes"]
    );
    let containerd = &plan.node.services[0];
    assert_eq!(
        containerd.ready_path.as_deref(),
        Some("/run/containerd/containerd.sock")
    );
    let kubelet = &plan.node.services[1];
    assert_eq!(
        Path::new(&kubelet.command[0]),
        root.join("kubernetes/bin/kubelet")
    );
    assert_eq!(kubelet.condition_path, None);
    assert!(kubelet.env["PATH"].contains(&format!("{}/iptables-legacy/bin", root.display())));

    // The static pod's image is preloaded under the same reference, and never pulled.
    let pod: serde_json::Value = serde_json::from_str(generated(
        &plan,
        "kubelet",
        "/etc/kubernetes/manifests/hello.json",
    ))
    .unwrap();
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Never");
    let image = container["image"].as_str().unwrap();
    assert!(
        plan.images
            .iter()
            .any(|i| i.refs.iter().any(|r| r == image)),
        "static pod image {image} is not preloaded"
    );
    let config = generated(&plan, "containerd", "/etc/containerd/config.toml");
    assert!(
        config.contains(&format!("sandbox = \"{image}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!(
            "BinaryName = \"{}/runc/bin/runc\"",
            root.display()
        )),
        "{config}"
    );
    // The pod network: a template containerd fills with the node's range.
    assert!(
        config.contains("conf_template = \"/etc/cni/diskless-bridge.conflist.tmpl\""),
        "{config}"
    );
    let template = generated(&plan, "kubelet", "/etc/cni/diskless-bridge.conflist.tmpl");
    assert!(
        template.contains("{{range $i, $r := .PodCIDRRanges}}"),
        "{template}"
    );
    let kubelet_config: serde_json::Value =
        serde_json::from_str(generated(&plan, "kubelet", "/etc/kubernetes/kubelet.json")).unwrap();
    assert_eq!(kubelet_config["cgroupDriver"], "cgroupfs");
    assert_eq!(kubelet_config["staticPodPath"], "/etc/kubernetes/manifests");
    cluster_member_services(&plan, root);

    assert_closed(&plan, root);
    build(&path, &plan, &root.join("out-worker"));
}

/// What makes a worker a cluster member, as the host plan has it (crates/hostplan/src/worker/):
/// kube-proxy from the kubelet's package, in its segment, with the host plan's configuration
/// (as JSON), and the init's `pod-routes`; both only where the node segment holds the
/// bootstrap kubeconfig, and with iptables and `ip` on their PATH.
fn cluster_member_services(plan: &Plan, root: &Path) {
    let service = |name: &str| {
        plan.node
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} service"))
    };
    let proxy = service("kube-proxy");
    assert_eq!(
        proxy.command,
        [
            root.join("kubernetes/bin/kube-proxy").display().to_string(),
            "--config=/etc/kubernetes/kube-proxy.json".to_string()
        ]
    );
    let routes = service("pod-routes");
    assert_eq!(routes.command, ["/init", "pod-routes"]);
    for s in [proxy, routes] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG),
            "{}",
            s.name
        );
        assert!(s.restart && s.role.is_none(), "{}", s.name);
        for tool in ["iptables-legacy", "iproute2"] {
            assert!(
                s.env["PATH"].contains(&format!("{}/{tool}/bin", root.display())),
                "{}: {tool} not on PATH {}",
                s.name,
                s.env["PATH"]
            );
        }
    }
    assert!(trees(plan, "kubelet").contains(&root.join("kubernetes")));
    let config: serde_json::Value = serde_json::from_str(generated(
        plan,
        "kubelet",
        "/etc/kubernetes/kube-proxy.json",
    ))
    .unwrap();
    assert_eq!(
        config,
        serde_json::json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": { "kubeconfig": "/var/lib/kubelet/kubeconfig" },
            "mode": "iptables",
            "conntrack": { "maxPerCore": 0 },
        })
    );
    // The same settings as the host plan's YAML, line for line.
    for line in [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        "  kubeconfig: /var/lib/kubelet/kubeconfig",
        "mode: iptables",
        "  maxPerCore: 0",
    ] {
        assert!(
            diskless_hostplan::host::KUBE_PROXY_CONFIG.contains(line),
            "the host plan's kube-proxy configuration no longer has {line:?}: update modules/kube-proxy.nix"
        );
    }
    let modules = &component(plan, "kernel-modules").modules;
    for m in [
        "br_netfilter",
        "iptable_nat",
        "iptable_mangle",
        "xt_statistic",
        "xt_mark",
    ] {
        assert!(modules.iter().any(|x| x == m), "{m} not in {modules:?}");
    }
}

#[test]
fn join_mode_and_the_cluster_member_options() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    let names = |plan: &Plan| -> Vec<String> {
        plan.node.services.iter().map(|s| s.name.clone()).collect()
    };

    // A join image: the kubelet waits for the same file as kube-proxy and pod-routes, and
    // the plan still passes the builder's validation (Plan::load).
    let (_, plan) = fx.plan(&lib, "worker", r#"[ { kubelet.mode = "join"; } ]"#);
    assert_eq!(
        names(&plan),
        ["containerd", "kubelet", "kube-proxy", "pod-routes"]
    );
    for s in &plan.node.services[1..] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG),
            "{}",
            s.name
        );
    }
    cluster_member_services(&plan, root);

    // A join path of the user's own: kube-proxy follows it; pod-routes reads the contract's
    // path, so it is refused there, by name.
    let custom =
        r#"{ kubelet.mode = "join"; kubelet.join.bootstrapKubeconfig = "/.diskless/node/k/bk"; }"#;
    let out = fx.eval(&lib, "worker", &format!("[ {custom} ]"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("kubelet.podRoutes reads the API server's address"),
        "{stderr}"
    );
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        &format!("[ {custom} {{ kubelet.podRoutes = false; }} ]"),
    );
    assert_eq!(names(&plan), ["containerd", "kubelet", "kube-proxy"]);
    for s in &plan.node.services[1..] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some("/.diskless/node/k/bk"),
            "{}",
            s.name
        );
    }

    // Settings merge over the defaults; a cluster CNI routes itself, so no pod-routes.
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        r#"[ { kubelet.cniBridge = false; kubeProxy.settings.mode = "nftables"; kubeProxy.extraArgs = [ "--v=2" ]; } ]"#,
    );
    assert_eq!(names(&plan), ["containerd", "kubelet", "kube-proxy"]);
    assert_eq!(plan.node.services[2].command.last().unwrap(), "--v=2");
    let config: serde_json::Value = serde_json::from_str(generated(
        &plan,
        "kubelet",
        "/etc/kubernetes/kube-proxy.json",
    ))
    .unwrap();
    assert_eq!(config["mode"], "nftables");
    assert_eq!(config["conntrack"]["maxPerCore"], 0);

    // Off: neither the service nor its configuration.
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        "[ { kubeProxy.enable = false; kubelet.podRoutes = false; } ]",
    );
    assert_eq!(names(&plan), ["containerd", "kubelet"]);
    assert!(!component(&plan, "kubelet")
        .generated
        .iter()
        .any(|g| g.dest == "/etc/kubernetes/kube-proxy.json"));

    // No kubelet, no kube-proxy: containerd-only images have neither; forcing it is named.
    let (_, plan) = fx.plan(&lib, "containerd-only", "[ ]");
    assert_eq!(names(&plan), ["containerd"]);
    let out = fx.eval(&lib, "containerd-only", "[ { kubeProxy.enable = true; } ]");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("kubeProxy.enable needs the kubelet"),
        "{stderr}"
    );
}

#[test]
fn containerd_only_image_composes_without_the_kubelet() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    // zstd squashfs blocks here (the worker keeps the default): the codec travels from the
    // option through the plan into the built segment.
    let (path, plan) = fx.plan(
        &lib,
        "containerd-only",
        r#"[ { squashfs = { algorithm = "zstd"; level = 19; }; } ]"#,
    );

    let names: Vec<&str> = plan.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "kernel-modules", "containerd"]);
    for c in &plan.components {
        let trees = trees(&plan, &c.name);
        assert!(!trees.contains(&root.join("kubernetes")), "{trees:?}");
    }
    assert_eq!(plan.node.services.len(), 1);
    assert_eq!(plan.compression.level, Some(3));
    assert_eq!(
        plan.squashfs,
        diskless_builder::plan::SquashfsCompression {
            algorithm: diskless_builder::plan::SquashfsAlgorithm::Zstd,
            level: Some(19)
        }
    );
    let network = serde_json::to_value(&plan.node.network).unwrap();
    assert_eq!(network["mode"], "static");
    assert_eq!(network["address"], "10.0.2.15/24");
    assert_eq!(plan.images.len(), 1);

    assert_closed(&plan, root);
    build(&path, &plan, &root.join("out-containerd-only"));
}

#[test]
fn configuration_mistakes_are_named() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let cases = [
        // A typo in an option name: the module system names it.
        ("{ kubelet.staticPod = { }; }", "kubelet.staticPod"),
        // Cross-option checks (modules' assertions) say what to do.
        (
            r#"{ network.mode = "static"; }"#,
            "network.address is not set",
        ),
        (
            "({ lib, ... }: { kubelet.staticPods = lib.mkForce { }; })",
            "kubelet.staticPods is empty",
        ),
        (
            "({ lib, ... }: { containerd.enable = lib.mkForce false; })",
            "set containerd.enable = true",
        ),
        ("{ compression.level = 42; }", "out of range for zstd"),
        (
            r#"{ squashfs = { algorithm = "lz4hc"; level = 13; }; }"#,
            "out of range for lz4hc",
        ),
        ("{ squashfs.level = 23; }", "out of range for zstd"),
        // Types are checked: modes are octal strings.
        (
            r#"{ components.base.generated."/etc/x" = { text = "x"; mode = "rw"; }; }"#,
            "components.base.generated.\"/etc/x\".mode",
        ),
    ];
    for (module, expected) in cases {
        let out = fx.eval(&lib, "worker", &format!("[ {module} ]"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{module} evaluated without error");
        assert!(
            stderr.contains(expected),
            "{module}: expected {expected:?} in:\n{stderr}"
        );
    }
}

/// A Nix module setting `option` to `value`, read from a JSON file (so any string, control
/// characters included, arrives as it is).
fn json_module(fx: &Fixtures, name: &str, option: &str, value: &serde_json::Value) -> String {
    let file = fx.path().join(format!("{name}.json"));
    fs::write(&file, value.to_string()).unwrap();
    format!(
        "[ {{ {option} = builtins.fromJSON (builtins.readFile {}); }} ]",
        file.display()
    )
}

/// The failed assertions of evaluating `image` with `extra`; panics if it evaluates.
fn eval_errors(fx: &Fixtures, lib: &Path, image: &str, extra: &str) -> String {
    let out = fx.eval(lib, image, extra);
    assert!(!out.status.success(), "{extra} evaluated without error");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn authorized_keys_are_checked_as_publish_checks_them() {
    use base64::Engine;
    use diskless_publish::authorized_keys::{AuthorizedKeys, KEY_TYPES};
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    // A well-formed blob of `key_type`: the type as an SSH string, then key bytes.
    let blob = |key_type: &str| {
        let mut b = (key_type.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(key_type.as_bytes());
        b.extend_from_slice(&[0, 0, 0, 32]);
        b.extend_from_slice(&[7; 32]);
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let ssh = |name: &str, keys: &[String]| {
        let keys = json_module(&fx, name, "ssh.authorizedKeys", &serde_json::json!(keys));
        format!("{} ++ [ {{ ssh.enable = true; }} ]", keys)
    };

    // Every key type dropbear accepts, with and without a comment.
    let good: Vec<String> = KEY_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| match i % 2 {
            0 => format!("{t} {} admin@lab é", blob(t)),
            _ => format!("{t}\t{}", blob(t)),
        })
        .collect();
    let (_, plan) = fx.plan(&lib, "worker", &ssh("good-keys", &good));
    let file = generated(&plan, "ssh", "/root/.ssh/authorized_keys");
    assert_eq!(
        file,
        good.iter().map(|k| format!("{k}\n")).collect::<String>()
    );
    AuthorizedKeys::parse(file).unwrap_or_else(|e| panic!("publish refuses what Nix took: {e}"));

    let ed = blob("ssh-ed25519");
    let bad = [
        (
            format!("command=\"/bin/sh\" ssh-ed25519 {ed}"),
            "options before the key",
        ),
        (format!("no-pty ssh-ed25519 {ed}"), "options before the key"),
        ("ssh-dss AAAA".into(), "\"ssh-dss\" is not a key type"),
        ("ssh-ed25519".into(), "ssh-ed25519 without its base64 key"),
        ("ssh-ed25519 AAAA!!".into(), "not valid base64"),
        (format!("ssh-rsa {ed}"), "not a ssh-rsa key"),
        (
            format!("ssh-ed25519 {ed} a\nssh-rsa {}", blob("ssh-rsa")),
            "line break",
        ),
        (format!("ssh-ed25519 {ed} a\u{1b}[2Jb"), "control character"),
    ];
    let keys: Vec<String> = bad.iter().map(|(k, _)| k.clone()).collect();
    let stderr = eval_errors(&fx, &lib, "worker", &ssh("bad-keys", &keys));
    for (i, (key, why)) in bad.iter().enumerate() {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("ssh.authorizedKeys[{i}] ")))
            .unwrap_or_else(|| panic!("{key:?} was not refused:\n{stderr}"));
        assert!(line.contains(why), "{key:?}: expected {why:?} in {line}");
        // In a keys file a line break only starts the next key; an option entry holds one.
        assert!(
            key.contains('\n') || AuthorizedKeys::parse(key).is_err(),
            "publish takes {key:?}, which Nix refuses"
        );
    }
}

#[test]
fn registry_mirrors_keep_their_order_and_are_checked() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let mirrors = serde_json::json!({
        "docker.io": ["https://z.example", "http://10.0.0.1:5000/cache", "https://z.example"],
        "10.0.0.5:5000": ["http://[fd00::2]:5000"],
    });
    let module = json_module(&fx, "mirrors", "containerd.registryMirrors", &mirrors);
    let (_, plan) = fx.plan(&lib, "worker", &module);
    let hosts: toml::Value = toml::from_str(generated(
        &plan,
        "containerd",
        "/etc/containerd/certs.d/docker.io/hosts.toml",
    ))
    .unwrap();
    assert_eq!(
        hosts["server"].as_str(),
        Some("https://registry-1.docker.io")
    );
    let text = generated(
        &plan,
        "containerd",
        "/etc/containerd/certs.d/docker.io/hosts.toml",
    );
    let z = text.find("[host.\"https://z.example\"]").expect(text);
    let ip = text
        .find("[host.\"http://10.0.0.1:5000/cache\"]")
        .expect(text);
    assert!(z < ip, "mirrors out of the order given:\n{text}");
    assert_eq!(text.matches("z.example").count(), 1, "{text}");
    generated(
        &plan,
        "containerd",
        "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml",
    );

    let bad = serde_json::json!({
        "../etc": ["http://a.example"],
        "docker.io": ["ftp://a.example", "http://a.example/b?c", "http://a\"]\nx"],
    });
    let module = json_module(&fx, "bad-mirrors", "containerd.registryMirrors", &bad);
    let stderr = eval_errors(&fx, &lib, "worker", &module);
    for expected in [
        "registry \"../etc\" is not a host name",
        "containerd.registryMirrors.\"docker.io\"[0]: \"ftp://a.example\" is not",
        "containerd.registryMirrors.\"docker.io\"[1]",
        "containerd.registryMirrors.\"docker.io\"[2]",
    ] {
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn options_doc_is_current() {
    let lib = or_skip!(nix_env());
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo().join("nix/options-doc.nix"))
        .arg("--argstr")
        .arg("nixpkgsLib")
        .arg(&lib)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: String = serde_json::from_slice(&out.stdout).unwrap();
    let committed = fs::read_to_string(repo().join("docs/options.md")).unwrap();
    assert!(
        generated == committed,
        "docs/options.md is stale: regenerate it as docs/nix.md says"
    );
}

/// `nix` with flakes enabled, as the flake's users run it.
fn nix() -> Command {
    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command flakes"]);
    cmd
}

/// Why the flake cannot be evaluated here, if it cannot: it is read from git, so flake.nix
/// must be tracked, and `nix` must be able to build into its store.
fn flake_env() -> Result<PathBuf, String> {
    let lib = nix_env()?;
    if !nix()
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("`nix` not found (Debian: apt-get install nix-bin)".into());
    }
    let tracked = Command::new("git")
        .args(["ls-files", "--error-unmatch", "flake.nix", "flake.lock"])
        .current_dir(repo())
        .output()
        .is_ok_and(|o| o.status.success());
    if !tracked {
        return Err("flake.nix is not tracked by git here (nix reads flakes from git)".into());
    }
    Ok(lib)
}

/// A flake whose `legacyPackages` is nix/stub-nixpkgs.nix over these fixtures, with the
/// pinned nixpkgs' rustc or (`Some`) another.
fn stub_nixpkgs(lib: &Path, fx: &Fixtures, rustc: Option<&str>) -> PathBuf {
    let dir = fx
        .path()
        .join(format!("stub-nixpkgs-{}", rustc.unwrap_or("pinned")));
    fs::create_dir_all(&dir).unwrap();
    let lib_dir = if lib.join("lib/default.nix").exists() {
        lib.join("lib")
    } else {
        lib.to_owned()
    };
    let flake = format!(
        r#"{{
  outputs = _: let
    lib = import {lib};
    stub = system: import {stub} {{
      inherit lib system;
      fixtures = "{fixtures}";
      kernelVersion = "{version}";{rustc}
    }};
  in {{
    inherit lib;
    legacyPackages.x86_64-linux = stub "x86_64-linux";
    legacyPackages.aarch64-linux = stub "aarch64-linux";
  }};
}}
"#,
        lib = lib_dir.display(),
        stub = repo().join("nix/stub-nixpkgs.nix").display(),
        fixtures = fx.path().display(),
        version = fx.kernel_version,
        rustc = rustc
            .map(|v| format!("\n      rustcVersion = \"{v}\";"))
            .unwrap_or_default(),
    );
    fs::write(dir.join("flake.nix"), flake).unwrap();
    dir
}

/// Runs a flake command against this repository with nixpkgs replaced by the stub.
fn with_stub(stub: &Path, args: &[&str]) -> Output {
    nix()
        .args(args)
        // No binary cache is reachable, and nothing here is in one.
        .args(["--option", "substitute", "false"])
        .args(["--impure", "--override-input", "nixpkgs"])
        .arg(format!("path:{}", stub.display()))
        .output()
        .expect("run nix")
}

/// Builds `attr` of this flake and returns its output path.
fn flake_build(stub: &Path, attr: &str) -> Result<PathBuf, String> {
    let installable = format!("{}#{attr}", repo().display());
    let out = with_stub(stub, &["build", "--no-link", "--json", &installable]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let built: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(PathBuf::from(
        built[0]["outputs"]["out"].as_str().expect("out path"),
    ))
}

#[test]
fn flake_checks_and_builds_with_stub_nixpkgs() {
    let lib = or_skip!(flake_env());
    let fx = or_skip!(Fixtures::new());
    let stub = stub_nixpkgs(&lib, &fx, None);

    // Every output of every system evaluates, and has the shape `nix flake check` expects.
    let repo_arg = repo().display().to_string();
    let check = with_stub(&stub, &["flake", "check", "--no-build", &repo_arg]);
    assert!(
        check.status.success(),
        "nix flake check:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // The plan as `nix build .#worker-image` makes it: store paths, closure expanded.
    let plan_path = flake_build(&stub, "packages.x86_64-linux.worker-image.plan")
        .unwrap_or_else(|e| panic!("building the worker plan:\n{e}"));
    let plan = Plan::load(&plan_path).unwrap_or_else(|e| panic!("{e}"));
    // One closure per component: what all share (the C library stand-in every package
    // refers to) in nix-store, each program in its own component's segment.
    let shared = trees(&plan, "nix-store");
    assert!(
        shared.len() == 1 && shared[0].to_string_lossy().ends_with("-libc-stub"),
        "nix-store should hold exactly the shared closure part (libc): {shared:?}"
    );
    let in_trees = |name: &str, p: &str| {
        trees(&plan, name)
            .iter()
            .any(|t| Path::new(p).starts_with(t))
    };
    let kubelet = &plan.node.services[1].command[0];
    assert!(
        in_trees("kubelet", kubelet) && kubelet.contains("-kubelet-"),
        "kubelet {kubelet} should be the slimmed copy, in the kubelet segment"
    );
    let proxy = &plan.node.services[2];
    assert!(
        proxy.name == "kube-proxy"
            && in_trees("kube-proxy", &proxy.command[0])
            && proxy.command[0].contains("-kube-proxy-"),
        "kube-proxy {:?} should be the slimmed copy, in its own segment",
        proxy.command
    );
    // Packed as the kubelet's, and mounted only where its service runs: a standalone node's
    // init deletes it unmounted.
    let segment = component(&plan, "kube-proxy");
    assert_eq!(segment.packing, diskless_builder::plan::Packing::Squashfs);
    assert_eq!(segment.condition_path, proxy.condition_path);
    assert_eq!(
        segment.condition_path.as_deref(),
        Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG)
    );
    let containerd = &plan.node.services[0].command[0];
    assert!(
        in_trees("containerd", containerd),
        "{containerd} should be in the containerd segment"
    );
    let init = component(&plan, "base").files[0]
        .source
        .display()
        .to_string();
    assert!(
        in_trees("base", &init),
        "/init source {init} is not in the base segment"
    );
    let placed: Vec<PathBuf> = plan
        .components
        .iter()
        .flat_map(|c| trees(&plan, &c.name))
        .collect();
    let mut unique = placed.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        placed.len(),
        unique.len(),
        "a store path in two segments: {placed:?}"
    );
    assert!(plan.kernel.image.is_file(), "{:?}", plan.kernel.image);
    for image in &plan.images {
        assert!(image.archive.is_file(), "{:?}", image.archive);
    }

    // A nixpkgs whose rustc is older than Cargo.toml's rust-version (as nixos-25.05's 1.86
    // was) is refused with the reason, before any crate is compiled.
    let old = stub_nixpkgs(&lib, &fx, Some("1.86.0"));
    let eval = with_stub(
        &old,
        &[
            "eval",
            "--raw",
            &format!("{repo_arg}#packages.x86_64-linux.diskless.drvPath"),
        ],
    );
    let stderr = String::from_utf8_lossy(&eval.stderr);
    assert!(
        !eval.status.success() && stderr.contains("diskless needs rustc >= "),
        "rustc 1.86 was not refused:\n{stderr}"
    );

    // And an image itself: `diskless build` inside a Nix build (the smaller one, for time).
    let plan_path = flake_build(&stub, "packages.x86_64-linux.containerd-only-image.plan")
        .unwrap_or_else(|e| panic!("building the containerd-only plan:\n{e}"));
    let plan = Plan::load(&plan_path).unwrap_or_else(|e| panic!("{e}"));
    let out = flake_build(&stub, "packages.x86_64-linux.containerd-only-image")
        .unwrap_or_else(|e| panic!("nix build .#containerd-only-image:\n{e}"));
    check_output(&out, &plan);
}
