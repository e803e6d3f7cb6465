//! The Nix modules' options, evaluated for real as in `nix_eval.rs` (same fixtures and
//! requirements: `nix-instantiate` and `$NIXPKGS_LIB`, else `skipped: …`): a mistaken
//! configuration fails evaluation naming the option, values are checked by the rules publish
//! and the builder apply, and `docs/options.md` is what the modules declare.

#[macro_use]
#[path = "common/nix.rs"]
mod nix_common;

use nix_common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

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
