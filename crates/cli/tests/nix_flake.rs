//! The flake itself, checked and built with `--override-input nixpkgs` pointing at
//! `nix/stub-nixpkgs.nix`: real derivations made of the fixtures of `nix_eval.rs`, since nixpkgs
//! cannot be fetched here. That runs flake.nix, `nix flake check`, closureInfo and
//! nix/mk-image.nix for real. Needs `nix` (Debian's nix-bin) and `$NIXPKGS_LIB`, else each test
//! prints `skipped: …` and returns.

#[macro_use]
#[path = "common/nix.rs"]
mod nix_common;

use diskless_builder::plan::Plan;
use nix_common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
