//! The exit codes `diskless --help` promises, one command each through the real binary: bad
//! input 1, usage 2, a failed check 3 (`verify` of a damaged output), an environment problem 4
//! (no Kubernetes stack where `plan --host` needs one).

#[path = "common/build.rs"]
mod build_common;

use build_common::{diskless, run, stderr, Case};
use std::process::Output;

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn each_kind_of_failure_has_its_code() {
    let c = Case::new();
    // 1: a plan that names a file that is not there.
    std::fs::write(
        c.path("plan.json"),
        c.plan(serde_json::json!([{"name": "base", "files": [{"source": c.path("nope"), "dest": "/nope"}]}])),
    )
    .unwrap();
    let o = run(diskless()
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("plan.json"))
        .arg("--out")
        .arg(c.path("bad-out")));
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));

    // 2: a flag that does not exist.
    let o = run(diskless().arg("--no-such-flag"));
    assert_eq!(code(&o), Some(2), "{}", stderr(&o));

    // 3: verify finds an object that no longer hashes to its name.
    std::fs::write(
        c.path("plan.json"),
        c.plan(serde_json::json!([{"name": "base", "files": [{"source": c.path("file"), "dest": "/file"}]}])),
    )
    .unwrap();
    let out = c.path("out");
    let o = run(diskless()
        .args(["build", "--no-cache", "--plan"])
        .arg(c.path("plan.json"))
        .arg("--out")
        .arg(&out));
    assert!(o.status.success(), "{}", stderr(&o));
    let object = std::fs::read_dir(out.join("objects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let o = run(diskless().arg("verify").arg(&out));
    assert_eq!(code(&o), Some(3), "{}", stderr(&o));

    // 4: the stack `plan --host` would take the kubelet from is not on this machine.
    let o = run(diskless()
        .args(["plan", "--host"])
        .env("DISKLESS_STACK", c.path("no-stack-here")));
    assert_eq!(code(&o), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("DISKLESS_STACK"), "{}", stderr(&o));
}
