//! Trees the kernel's initramfs reader would silently cut are refused at build time, with the
//! entries named and nothing written: a file that is also a parent (in one component or across
//! two), names over NAME_MAX, paths over PATH_MAX.

mod common;

use common::{diskless, Lab};
use serde_json::{json, Value};

fn build(lab: &Lab, components: Value) -> Result<(), String> {
    let plan = json!({
        "version": 1, "name": "shape", "kernel": {"image": lab.p("kernel")},
        "compression": {"algorithm": "gzip"}, "components": components,
    });
    let path = lab.p("plan.json");
    std::fs::write(&path, plan.to_string()).unwrap();
    let out = lab.p("out");
    let mut cmd = diskless();
    cmd.args(["build", "--no-cache", "--plan"])
        .arg(&path)
        .arg("--out")
        .arg(&out);
    let o = cmd.output().unwrap();
    if o.status.success() {
        std::fs::remove_dir_all(&out).unwrap();
        Ok(())
    } else {
        assert!(!out.exists(), "a refused build left {}", out.display());
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn generated(dest: &str) -> Value {
    json!({"dest": dest, "contents": "x"})
}

#[test]
fn a_file_cannot_also_be_a_parent() {
    let lab = Lab::new();
    let cases = [
        json!([{"name": "a", "generated": [generated("/etc/x"), generated("/etc/x/y")]}]),
        json!([{"name": "a", "generated": [generated("/etc")]},
               {"name": "b", "generated": [generated("/etc/passwd")]}]),
        json!([{"name": "a", "generated": [generated("/etc/passwd")]},
               {"name": "b", "generated": [generated("/etc")]}]),
        json!([{"name": "a", "generated": [generated("/opt/tool")]},
               {"name": "b", "directories": [{"path": "/opt/tool/lib"}]}]),
        json!([{"name": "a", "symlinks": [{"path": "/srv/link", "target": "/etc/f"}],
                "generated": [generated("/etc/f"), generated("/srv/link/inner")]}]),
    ];
    for (i, components) in cases.into_iter().enumerate() {
        let e = build(&lab, components).unwrap_err();
        assert!(
            e.contains("as the parent of") && e.contains("types (file, directory, symlink)"),
            "case {i}: {e}"
        );
    }
    // The same paths as directories are fine.
    build(
        &lab,
        json!([{"name": "a", "directories": [{"path": "/etc/x"}],
                "generated": [generated("/etc/x/y")]}]),
    )
    .unwrap();
}

#[test]
fn names_and_paths_stay_within_linux_limits() {
    let lab = Lab::new();
    let long = "n".repeat(255);
    build(
        &lab,
        json!([{"name": "a", "generated": [generated(&format!("/etc/{long}"))]}]),
    )
    .unwrap();
    let e = build(
        &lab,
        json!([{"name": "a", "generated": [generated(&format!("/etc/{long}x"))]}]),
    )
    .unwrap_err();
    assert!(e.contains("256 bytes") && e.contains("at most 255"), "{e}");
    let deep = format!("/{}", vec!["d".repeat(200); 21].join("/"));
    let e = build(
        &lab,
        json!([{"name": "a", "generated": [generated(&deep)]}]),
    )
    .unwrap_err();
    assert!(e.contains("at most 4095 bytes"), "{e}");
}
