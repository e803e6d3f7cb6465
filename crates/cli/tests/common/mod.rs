//! Helpers shared by the boot-server tests: a lab with tiny images, running the real `diskless`
//! binary, snapshots for "untouched" checks, and a throwaway sshd.
#![allow(dead_code)] // each test crate uses a different subset

pub mod sshd;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn diskless() -> Command {
    Command::new(env!("CARGO_BIN_EXE_diskless"))
}

pub fn ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}{}",
        cmd,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn fails(cmd: &mut Command) -> String {
    let o: Output = cmd.output().unwrap();
    assert!(!o.status.success(), "{cmd:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Path (relative to `dir`) → bytes of every file below `dir`, for "untouched" checks.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Copies a directory tree (a published DEST) so each trial starts from the same state.
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from).into_iter().flatten() {
        let target = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    /// `DISKLESS_SSH` for the commands this lab runs (ssh tests).
    pub ssh: Option<String>,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kernel"),
            diskless_builder::resolve::bzimage::fake_for_tests(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ca.crt"),
            b"-----BEGIN CERTIFICATE-----\nx\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), b"abcdef.0123456789abcdef\n").unwrap();
        Lab { dir, ssh: None }
    }

    /// `diskless` with this lab's environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = diskless();
        if let Some(ssh) = &self.ssh {
            cmd.env("DISKLESS_SSH", ssh);
        }
        cmd
    }

    /// Publishes every build output in `outs` to `to` at once; asserts that each succeeded.
    pub fn publish_concurrently(&self, outs: &[PathBuf], to: &str) {
        let children: Vec<_> = outs
            .iter()
            .map(|out| {
                self.cmd()
                    .arg("publish")
                    .arg(out)
                    .args(["--to", to])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds a tiny image named `name` whose config says `version` into `out`.
    pub fn build(&self, out: &str, name: &str, version: &str) -> PathBuf {
        self.build_with(out, name, version, serde_json::json!([]))
    }

    /// As `build`, with `extra` components appended to the plan.
    pub fn build_with(
        &self,
        out: &str,
        name: &str,
        version: &str,
        extra: serde_json::Value,
    ) -> PathBuf {
        let mut components = vec![
            serde_json::json!({"name": "base", "generated": [{"dest": "/etc/base", "contents": "same in every version"}]}),
            serde_json::json!({"name": "config", "generated": [{"dest": "/etc/version", "contents": version}]}),
        ];
        components.extend(extra.as_array().unwrap().iter().cloned());
        let plan = serde_json::json!({
            "version": 1, "name": name, "description": format!("test image {version}"),
            "kernel": {"image": self.p("kernel"), "cmdline": "console=ttyS0"},
            "compression": {"algorithm": "gzip"},
            "components": components,
        });
        let plan_path = self.p(&format!("{name}-{version}.json"));
        std::fs::write(&plan_path, plan.to_string()).unwrap();
        ok(diskless()
            .args(["build", "--no-cache", "--plan"])
            .arg(&plan_path)
            .arg("--out")
            .arg(self.p(out)));
        self.p(out)
    }

    pub fn inventory(&self, text: &str) -> PathBuf {
        let p = self.p("inventory.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `diskless publish OUT --to DEST --json`; DEST is a path or an ssh:// URL.
    pub fn publish(
        &self,
        out: &Path,
        dest: impl AsRef<OsStr>,
        inventory: Option<&Path>,
    ) -> serde_json::Value {
        let mut cmd = self.cmd();
        cmd.arg("publish")
            .arg(out)
            .arg("--to")
            .arg(dest)
            .arg("--json");
        if let Some(i) = inventory {
            cmd.arg("--inventory").arg(i);
        }
        serde_json::from_str(&ok(&mut cmd)).unwrap()
    }

    pub fn verify(&self, dest: impl AsRef<OsStr>) {
        ok(self.cmd().arg("verify").arg("--to").arg(dest));
    }
}

pub const INVENTORY: &str = r#"
default_image = "worker"
menu_timeout = 3

[join]
api_server = "https://10.0.2.100:6443"
ca_file = "ca.crt"
token_file = "token"

[[hosts]]
mac = "52:54:00:12:34:56"
hostname = "s2"
image = "worker"
labels = { "node.kubernetes.io/worker" = "" }
kernel_args = "diskless.debug"
kubelet_mode = "join"

[[hosts]]
mac = "52:54:00:12:34:57"
hostname = "s3"
image = "worker"
"#;

/// The objects/<sha> names an entry refers to.
pub fn objects_of(entry: &str) -> Vec<String> {
    entry
        .split_whitespace()
        .filter_map(|w| w.split("objects/").nth(1).map(String::from))
        .collect()
}
