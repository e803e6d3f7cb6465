//! The boot server: publish (idempotent, atomic), host entries and per-node segments from an
//! inventory, rollback, gc, crash safety at every step, and bad input that leaves DEST untouched.
//! These use small images; the QEMU proof that a published directory boots is in the boot tests.

mod common;

use common::{diskless, fails, objects_of, ok, snapshot, Lab, INVENTORY};

/// Objects on the boot server are trusted by hash, not by name: one overwritten with other
/// bytes of the same size and one truncated are copied again by the next publish.
#[test]
fn damaged_objects_are_repaired_by_the_next_publish() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("srv");
    lab.publish(&out, &dest, None);
    let before = snapshot(&dest);
    let entry = std::fs::read_to_string(dest.join("worker.ipxe")).unwrap();
    let objects = objects_of(&entry);
    let (a, b) = (
        dest.join("objects").join(&objects[0]),
        dest.join("objects").join(&objects[1]),
    );
    let size = std::fs::metadata(&a).unwrap().len() as usize;
    std::fs::write(&a, vec![b'x'; size]).unwrap();
    std::fs::write(&b, b"").unwrap();
    fails(diskless().arg("verify").arg("--to").arg(&dest));
    let r = lab.publish(&out, &dest, None);
    assert!(r["generation"].is_null(), "{r}");
    assert_eq!(r["objects_repaired"], 2, "{r}");
    assert_eq!(r["objects_copied"], 2, "{r}");
    assert_eq!(before, snapshot(&dest));
    lab.verify(&dest);
}

#[test]
fn publish_twice_is_a_no_op_and_hosts_get_their_own_segment() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("srv");
    let inv = lab.inventory(INVENTORY);
    let first = lab.publish(&out, &dest, Some(&inv));
    assert_eq!(first["generation"], 1);
    assert!(first["objects_copied"].as_u64().unwrap() >= 4);
    let before = snapshot(&dest);
    let second = lab.publish(&out, &dest, Some(&inv));
    assert!(second["generation"].is_null(), "{second}");
    assert_eq!(second["objects_copied"], 0);
    assert_eq!(
        before,
        snapshot(&dest),
        "a second identical publish changed files"
    );
    lab.verify(&dest);

    let boot = std::fs::read_to_string(dest.join("boot.ipxe")).unwrap();
    assert!(
        boot.contains("hosts/${mac:hexhyp}.ipxe") && boot.contains("worker.ipxe"),
        "{boot}"
    );
    let menu = std::fs::read_to_string(dest.join("menu.ipxe")).unwrap();
    assert!(
        menu.contains("item worker worker  test image 1") && menu.contains("--timeout 3000"),
        "{menu}"
    );

    let shared = std::fs::read_to_string(dest.join("worker.ipxe")).unwrap();
    let host = std::fs::read_to_string(dest.join("hosts/52-54-00-12-34-56.ipxe")).unwrap();
    // The host's own kernel arguments; its identity travels only in the node segment's node.json.
    assert!(
        host.contains(" diskless.debug\n") && !host.contains("diskless.hostname"),
        "{host}"
    );
    let shared_objs = objects_of(&shared);
    let host_objs = objects_of(&host);
    assert_eq!(
        host_objs.len(),
        shared_objs.len() + 1,
        "host entry = image + node segment"
    );
    let node = host_objs.last().unwrap();
    assert!(!shared_objs.contains(node) && !menu.contains(node.as_str()));
    let other = std::fs::read_to_string(dest.join("hosts/52-54-00-12-34-57.ipxe")).unwrap();
    assert_ne!(
        objects_of(&other).last().unwrap(),
        node,
        "each host has its own segment"
    );

    // Inside the node segment: identity and join material, secrets mode 0600.
    let bytes = std::fs::read(dest.join("objects").join(node)).unwrap();
    let files = diskless_builder::inspect::list_cpio(
        &diskless_builder::inspect::decompress(&bytes).unwrap(),
    )
    .unwrap();
    let mode = |name: &str| {
        files
            .iter()
            .find(|f| f.0 == name)
            .unwrap_or_else(|| panic!("{name} not in {files:?}"))
            .1
            & 0o7777
    };
    assert_eq!(mode(".diskless/node/kubelet/bootstrap-kubeconfig"), 0o600);
    assert_eq!(mode(".diskless/node/kubelet/ca.crt"), 0o600);
    assert_eq!(mode(".diskless/node/node.json"), 0o600);
    assert!(
        !files.iter().any(|f| f.0 == "etc/hostname"),
        "the hostname has one channel, node.json: {files:?}"
    );
}

#[test]
fn publish_a_then_b_then_roll_back_and_gc() {
    let lab = Lab::new();
    let a = lab.build("a", "worker", "A");
    let b = lab.build("b", "worker", "B");
    let dest = lab.p("srv");
    lab.publish(&a, &dest, None);
    let entry_a = std::fs::read_to_string(dest.join("worker.ipxe")).unwrap();
    assert_eq!(lab.publish(&b, &dest, None)["generation"], 2);
    let entry_b = std::fs::read_to_string(dest.join("worker.ipxe")).unwrap();
    assert_ne!(entry_a, entry_b);
    // Shared segments were not copied twice: only config, manifest and index are new.
    ok(diskless()
        .args(["rollback", "--to"])
        .arg(&dest)
        .arg("worker"));
    assert_eq!(
        std::fs::read_to_string(dest.join("worker.ipxe")).unwrap(),
        entry_a
    );
    lab.verify(&dest);

    // Keep the last generation only: B's own objects go, A's (current) stay.
    let r: serde_json::Value = serde_json::from_str(&ok(diskless()
        .args(["gc", "--keep", "1", "--json", "--to"])
        .arg(&dest)))
    .unwrap();
    assert_eq!(r["kept_generations"], serde_json::json!([3]));
    assert!(r["removed_objects"].as_u64().unwrap() >= 3, "{r}");
    for o in objects_of(&entry_a) {
        assert!(dest.join("objects").join(&o).exists());
    }
    for o in objects_of(&entry_b)
        .into_iter()
        .filter(|o| !objects_of(&entry_a).contains(o))
    {
        assert!(
            !dest.join("objects").join(&o).exists(),
            "{o} should be collected"
        );
    }
    lab.verify(&dest);
    let e = fails(
        diskless()
            .args(["rollback", "--to"])
            .arg(&dest)
            .arg("worker"),
    );
    assert!(e.contains("no earlier version"), "{e}");
}

#[test]
fn a_publish_killed_at_any_step_leaves_a_bootable_server() {
    for step in [
        "objects-copied",
        "generation-recorded",
        "images-rendered",
        "hosts-rendered",
    ] {
        let lab = Lab::new();
        let a = lab.build("a", "worker", "A");
        let b = lab.build("b", "worker", "B");
        let dest = lab.p("srv");
        let inv = lab.inventory(INVENTORY);
        lab.publish(&a, &dest, Some(&inv));
        let o = diskless()
            .arg("publish")
            .arg(&b)
            .arg("--to")
            .arg(&dest)
            .env("DISKLESS_FAILPOINT", step)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{step}: the failpoint did not fire");
        // Every entry still refers to complete objects.
        lab.verify(&dest);
        for entry in ["worker.ipxe", "hosts/52-54-00-12-34-56.ipxe"] {
            let text = std::fs::read_to_string(dest.join(entry)).unwrap();
            for obj in objects_of(&text) {
                assert!(dest.join("objects").join(obj).exists(), "{step}: {entry}");
            }
        }
        // And publishing again completes the job.
        lab.publish(&b, &dest, None);
        lab.verify(&dest);
        assert!(std::fs::read_to_string(dest.join("menu.ipxe"))
            .unwrap()
            .contains("test image B"));
    }
}

#[test]
fn bad_inventories_and_destinations_leave_dest_untouched() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("srv");
    lab.publish(&out, &dest, Some(&lab.inventory(INVENTORY)));
    let before = snapshot(&dest);
    let host = |mac: &str, name: &str, image: &str| {
        format!("[[hosts]]\nmac = \"{mac}\"\nhostname = \"{name}\"\nimage = \"{image}\"\n")
    };
    let cases = [
        (
            host("52:54:00:00:00:01", "a", "worker") + &host("52:54:00:00:00:01", "b", "worker"),
            "twice",
        ),
        (
            host("52:54:00:00:00:01", "a", "worker") + &host("52:54:00:00:00:02", "a", "worker"),
            "two hosts",
        ),
        (host("52:54:00:00:01", "a", "worker"), "not a MAC"),
        (host("52:54:00:00:00:01", "a", "nosuch"), "\"nosuch\""),
        (
            INVENTORY.replace(
                "https://10.0.2.100:6443",
                "https://10.0.2.100:6443\\nserver: x",
            ),
            "join.api_server",
        ),
        (
            INVENTORY.replace("https://10.0.2.100:6443", "not a url"),
            "join.api_server",
        ),
        (
            INVENTORY.replace("menu_timeout = 3", "menu_timeout = 4294968"),
            "menu_timeout",
        ),
    ];
    for (text, why) in cases {
        let inv = lab.inventory(&text);
        let e = fails(
            diskless()
                .arg("publish")
                .arg(&out)
                .arg("--to")
                .arg(&dest)
                .arg("--inventory")
                .arg(&inv),
        );
        assert!(e.contains("inventory") && e.contains(why), "{e}");
        assert_eq!(before, snapshot(&dest));
    }
    // An ssh URL without a path is refused before anything is contacted.
    let e = fails(
        diskless()
            .arg("publish")
            .arg(&out)
            .args(["--to", "ssh://lab-server"]),
    );
    assert!(
        e.contains("ssh://lab-server") && e.contains("no path"),
        "{e}"
    );
    let e = fails(
        diskless()
            .arg("publish")
            .arg(&out)
            .args(["--to", "/proc/diskless-dest"]),
    );
    assert!(e.contains("/proc/diskless-dest"), "{e}");
    // A read-only destination (as non-root; root writes anywhere, so use a file as the parent).
    let e = fails(
        diskless()
            .arg("publish")
            .arg(&out)
            .arg("--to")
            .arg(lab.p("kernel").join("srv")),
    );
    assert!(e.contains("cannot create boot server directory"), "{e}");
    assert_eq!(before, snapshot(&dest));
}

/// A directory that is not empty and holds no generation record is someone else's: publish
/// refuses it before writing anything (not even its lock file), naming the files at stake.
#[test]
fn publish_refuses_a_directory_that_is_not_a_boot_server() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let cases: &[(&str, &[u8])] = &[
        ("boot.ipxe", b"#!ipxe\nchain http://my-own-menu/\n"),
        ("menu.ipxe", b"#!ipxe\n"),
        ("index.html", b"<html></html>"),
        ("pxelinux.0", b"\x7fELF"),
        ("hosts/52-54-00-12-34-56.ipxe", b"#!ipxe\n"),
        ("generations/README", b"not a record"),
        ("objects/kernel", b"x"),
        ("images/worker/vmlinuz", b"x"),
    ];
    for (rel, bytes) in cases {
        let dest = lab.p(&format!("foreign-{}", rel.replace('/', "-")));
        let file = dest.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        let before = snapshot(&dest);
        let e = fails(diskless().arg("publish").arg(&out).arg("--to").arg(&dest));
        let top = rel.split('/').next().unwrap();
        assert!(
            e.contains("is not a diskless boot server")
                && e.contains(&dest.display().to_string())
                && e.contains(top),
            "{rel}: {e}"
        );
        assert_eq!(before, snapshot(&dest), "{rel}: DEST changed");
        assert!(!dest.join(".lock").exists(), "{rel}: lock file left behind");
    }
    // What a first publish killed before its record leaves is not foreign: objects by digest.
    let dest = lab.p("half");
    std::fs::create_dir_all(dest.join("objects")).unwrap();
    let leftover = diskless_builder::store::sha256_hex(b"left by a killed publish");
    std::fs::write(
        dest.join("objects").join(&leftover),
        b"left by a killed publish",
    )
    .unwrap();
    std::fs::write(dest.join(".lock"), b"").unwrap();
    lab.publish(&out, &dest, None);
    lab.verify(&dest);
    // And a boot server, once it has a record, takes further publishes.
    lab.publish(&lab.build("out2", "other", "1"), &dest, None);
    lab.verify(&dest);
}

/// A path that does not exist is said not to exist (not "is it writable?").
#[test]
fn missing_destinations_are_named_as_missing() {
    let lab = Lab::new();
    let missing = lab.p("no/such/srv");
    for args in [
        vec!["rollback", "--to", missing.to_str().unwrap(), "worker"],
        vec!["gc", "--to", missing.to_str().unwrap()],
        vec!["verify", "--to", missing.to_str().unwrap()],
        vec!["verify", missing.to_str().unwrap()],
        vec!["inspect", missing.to_str().unwrap()],
        vec!["publish", missing.to_str().unwrap(), "--to", "/tmp/x"],
    ] {
        let e = fails(diskless().args(&args));
        assert!(
            e.contains("does not exist") && !e.contains("writable"),
            "{args:?}: {e}"
        );
    }
    assert!(!missing.exists());
}

/// An output `verify OUT` rejects for its index sizes is not published.
#[test]
fn publish_refuses_an_output_whose_index_sizes_lie() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("worker.json")).unwrap()).unwrap();
    for (field, value) in [
        ("/kernel/size", serde_json::json!(1)),
        ("/segments/0/size", serde_json::json!(0)),
        ("/segments/1/size", serde_json::json!(999_999_999u64)),
    ] {
        let bad = lab.p(&format!("bad{}", field.replace('/', "-")));
        common::copy_tree(&out, &bad);
        let mut doc = index.clone();
        *doc.pointer_mut(field).unwrap_or_else(|| panic!("{field}")) = value;
        std::fs::write(bad.join("worker.json"), doc.to_string()).unwrap();
        let o = diskless().arg("verify").arg(&bad).output().unwrap();
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && said.contains("the index says"),
            "{field}: verify: {said}"
        );
        let dest = lab.p("srv");
        let e = fails(diskless().arg("publish").arg(&bad).arg("--to").arg(&dest));
        assert!(
            e.contains("the index says") && e.contains("not a complete build output"),
            "{field}: {e}"
        );
        assert!(!dest.exists(), "{field}: DEST created");
    }
}

/// Group (broadcast, multicast) and all-zero MACs are no machine's: refused in the inventory.
#[test]
fn inventory_refuses_group_and_zero_macs() {
    let lab = Lab::new();
    let out = lab.build("out", "worker", "1");
    for mac in [
        "ff:ff:ff:ff:ff:ff",
        "01:00:5e:00:00:fb",
        "33:33:00:00:00:01",
        "03:00:00:00:00:01",
        "00:00:00:00:00:00",
    ] {
        let inv = lab.inventory(&INVENTORY.replace("52:54:00:12:34:56", mac));
        let dest = lab.p("srv-mac");
        let e = fails(
            diskless()
                .arg("publish")
                .arg(&out)
                .arg("--to")
                .arg(&dest)
                .arg("--inventory")
                .arg(&inv),
        );
        assert!(
            e.contains("inventory")
                && e.contains(mac)
                && (e.contains("multicast") || e.contains("all-zero")),
            "{mac}: {e}"
        );
        assert!(!dest.exists(), "{mac}: DEST created");
    }
}
