//! Real-component check of the boot side's input format: image segments, reassembled into the
//! OCI archive stream the init feeds `ctr -n k8s.io images import`, are accepted by a real
//! containerd 1.6 (own root, state and socket), carry their refs, and run under runc.
//! Needs root, containerd, ctr and runc; otherwise prints `skipped: …`.

mod oci_fixtures;

use diskless_builder::tree::{Content, EntryKind};
use diskless_oci::{
    host_reference_images, image_segments_with_cache, ImageSegment, PAUSE_REF, WORKLOAD_REF,
};
use oci_fixtures::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The archive the init streams into `ctr import`: `oci-layout`, the image's index as
/// `index.json`, and every blob it lists, taken from the pool all segments fill together.
fn import_archive(seg: &ImageSegment, pool: &BTreeMap<String, Content>, out: &Path) {
    let bytes = |c: &Content| match c {
        Content::Path { path, .. } => std::fs::read(path).unwrap(),
        Content::Bytes(b) => b.to_vec(),
    };
    let mut members = vec![
        Member::File(
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        Member::File("index.json".into(), bytes(&pool[&seg.contract.index])),
    ];
    for digest in &seg.contract.blobs {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = format!("{}/{hex}", diskless_oci::BLOB_POOL);
        let blob = pool
            .get(&path)
            .unwrap_or_else(|| panic!("{digest} is in no segment"));
        members.push(Member::File(format!("blobs/sha256/{hex}"), bytes(blob)));
    }
    std::fs::write(out, tar_bytes(&members)).unwrap();
}

struct Containerd {
    child: Child,
    socket: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let socket = dir.join("c.sock");
        let config = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\n\
             # CRI is not under test and would want CNI.\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = {ttrpc:?}\n",
            root = dir.join("root"),
            state = dir.join("state"),
            sock = socket,
            ttrpc = dir.join("c.sock.ttrpc"),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { child, socket };
        let start = Instant::now();
        while !c.ctr(&["version"]).status.success() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not answer in 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("containerd answering after {:?}", start.elapsed());
        c
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

#[test]
fn containerd_imports_and_runs_image_segments() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: containerd needs root");
        return;
    }
    for tool in ["containerd", "ctr", "runc"] {
        if which(tool).is_none() {
            println!("skipped: {tool} is not installed (Debian: containerd, runc)");
            return;
        }
    }
    let t = tempfile::tempdir().unwrap();
    let mut images = host_reference_images(&t.path().join("ref")).unwrap();

    // A docker-archive image on top of the busybox image's layer: the conversion path, and a
    // shared layer that only the busybox segment stores.
    let layout = t.path().join("bb-layout");
    untar(&images[1].archive, &layout);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &serde_json::Value| {
        std::fs::read(layout.join("blobs/sha256").join(&d.as_str().unwrap()[7..])).unwrap()
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&index["manifests"][0]["digest"])).unwrap();
    let stored = blob(&manifest["layers"][0]["digest"]);
    let mut tar = Vec::new();
    std::io::copy(
        &mut flate2::read::GzDecoder::new(stored.as_slice()),
        &mut tar,
    )
    .unwrap();
    let base = Layer {
        tar,
        stored,
        z: Z::Gzip,
        declared: None,
    };
    let top = Layer::new(&[("hello.txt", b"hello from a docker-archive\n")], Z::None);
    let docker = write(
        &t.path().join("app.tar.gz"),
        &compress(
            &tar_bytes(&docker_members(&[&base, &top], "app:1")),
            Z::Gzip,
        ),
    );
    images.push(image("app", &docker, "docker.io/library/app:1"));

    let segments = image_segments_with_cache(&images, &t.path().join("cache")).unwrap();
    let mut pool = BTreeMap::new();
    for seg in &segments {
        for (path, e) in &seg.tree.entries {
            if let EntryKind::File(c) = &e.kind {
                pool.insert(path.clone(), c.clone());
            }
        }
    }
    let base_path = format!("{}/{}", diskless_oci::BLOB_POOL, sha(&base.stored));
    assert!(segments[1].tree.entries.contains_key(&base_path));
    assert!(
        !segments[2].tree.entries.contains_key(&base_path),
        "busybox layer stored once"
    );

    // overlayfs is what the node uses; native works everywhere (e.g. inside overlay roots).
    let overlay =
        std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("\toverlay\n"));
    let snapshotter = if overlay { "overlayfs" } else { "native" };
    println!("snapshotter: {snapshotter}");
    let ctd = Containerd::start(t.path());
    for seg in &segments {
        let archive = t.path().join(format!("{}.import.tar", seg.segment_name));
        import_archive(seg, &pool, &archive);
        let start = Instant::now();
        let out = ctd.ok(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().unwrap(),
        ]);
        println!(
            "import {}: {:?}: {}",
            seg.segment_name,
            start.elapsed(),
            out.trim()
        );
    }
    let listed = ctd.ok(&["images", "ls", "-q"]);
    for r in [PAUSE_REF, WORKLOAD_REF, "docker.io/library/app:1"] {
        assert!(
            listed.lines().any(|l| l == r),
            "{r} not in ctr images ls:\n{listed}"
        );
    }

    let run = |image: &str, id: &str, argv: &[&str]| -> String {
        let mut args = vec!["run", "--rm", "--snapshotter", snapshotter, image, id];
        args.extend_from_slice(argv);
        ctd.ok(&args)
    };
    let out = run(
        WORKLOAD_REF,
        "workload",
        &["/bin/echo", "hello from a preloaded image"],
    );
    assert_eq!(out.trim(), "hello from a preloaded image");
    let out = run(
        "docker.io/library/app:1",
        "app",
        &["/bin/cat", "/hello.txt"],
    );
    assert_eq!(out.trim(), "hello from a docker-archive");

    // The pause image must keep running and exit promptly (status 0) on SIGTERM.
    let mut pause = ctd
        .cmd(&[
            "run",
            "--rm",
            "--snapshotter",
            "native",
            PAUSE_REF,
            "sandbox",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let tasks = ctd.ok(&["tasks", "ls"]);
        if tasks
            .lines()
            .any(|l| l.starts_with("sandbox") && l.contains("RUNNING"))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pause never ran:\n{tasks}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        pause.try_wait().unwrap().is_none(),
        "pause exited on its own"
    );
    ctd.ok(&["tasks", "kill", "--signal", "SIGTERM", "sandbox"]);
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = pause.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "pause ignored SIGTERM for 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("pause exited {status} {:?} after SIGTERM", killed.elapsed());
    assert!(status.success(), "pause exits 0 on SIGTERM, got {status}");
}
