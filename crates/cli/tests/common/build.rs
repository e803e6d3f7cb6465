//! What the builder tests (`build.rs`, `build_refusals.rs`, `build_squashfs.rs`) share: the
//! real `diskless` binary, tree snapshots, the host reference build, and [`Case`], a plan made
//! in a temporary directory. Included by path.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn diskless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diskless"))
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("diskless runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Relative path → (kind, mode, sha256 of contents or link target) for every entry below `root`.
pub fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, String)> {
    use sha2::{Digest, Sha256};
    let mut m = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let v = if meta.file_type().is_symlink() {
            (
                'l',
                0,
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if meta.is_dir() {
            ('d', mode, String::new())
        } else {
            (
                'f',
                mode,
                hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap())),
            )
        };
        m.insert(rel, v);
    }
    m
}

/// Builds the host reference worker with the given environment and working directory.
pub fn build_host(out: &Path, cwd: &Path, env: &[(&str, &str)], umask: &str, jobs: &str) -> Output {
    let script = format!(
        "umask {umask} && exec {} build --host --out {} --jobs {jobs} --no-cache",
        env!("CARGO_BIN_EXE_diskless"),
        out.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_remove("KUBELET");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

/// Unpacks every segment of a build's index into `dir` with GNU cpio, in boot order.
pub fn unpack_segments(out: &Path, index: &serde_json::Value, dir: &Path) {
    for seg in index["segments"].as_array().unwrap() {
        let bytes =
            std::fs::read(out.join("objects").join(seg["sha256"].as_str().unwrap())).unwrap();
        let data = diskless_builder::inspect::decompress(&bytes).unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("umask 0 && cpio -idm --quiet --no-absolute-filenames")
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &data).unwrap();
        assert!(child.wait().unwrap().success());
    }
}

pub fn host_prereqs() -> bool {
    let ok = Path::new("/usr/bin/containerd").exists() && Path::new("/bin/busybox").exists();
    if !ok {
        println!("skipped: host packages missing (run .ci/run or apt-get install containerd busybox-static)");
    }
    ok
}

/// A plan in a temporary directory with a fake kernel and one file, built to fail.
pub struct Case {
    pub dir: tempfile::TempDir,
}

impl Case {
    pub fn new() -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kernel"),
            diskless_builder::resolve::bzimage::fake_for_tests(),
        )
        .unwrap();
        std::fs::write(dir.path().join("file"), b"contents").unwrap();
        Case { dir }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn plan(&self, components: serde_json::Value) -> String {
        serde_json::json!({
            "version": 1, "name": "bad", "kernel": {"image": self.path("kernel")},
            "components": components
        })
        .to_string()
    }

    /// Builds `plan_text` and returns stderr, asserting failure and an untouched `--out`.
    pub fn fails(&self, plan_text: &str, extra: &[&str]) -> String {
        let plan = self.path("plan.json");
        std::fs::write(&plan, plan_text).unwrap();
        let out = self.path("out");
        let o = run(diskless()
            .args(["build", "--no-cache", "--plan"])
            .arg(&plan)
            .arg("--out")
            .arg(&out)
            .args(extra));
        assert!(!o.status.success(), "expected failure for {plan_text}");
        assert!(!out.exists(), "partial output left in {}", out.display());
        let e = stderr(&o);
        assert!(e.starts_with("error: "), "{e}");
        e
    }
}

/// A module tree with only what squashfs packing needs (the builder copies, never loads, them).
pub fn mount_modules(c: &Case) -> PathBuf {
    let dir = c.path("modules");
    for m in ["loop", "squashfs", "overlay"] {
        std::fs::create_dir_all(dir.join("kernel")).unwrap();
        std::fs::write(dir.join(format!("kernel/{m}.ko")), m).unwrap();
    }
    std::fs::write(
        dir.join("modules.dep"),
        "kernel/loop.ko:\nkernel/squashfs.ko:\nkernel/overlay.ko:\n",
    )
    .unwrap();
    dir
}

/// The entry named `name` in a document's `segments` (the index's or the contract's).
pub fn segment<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no segment {name} in {doc}"))
}
