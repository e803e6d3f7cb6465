//! Publishing to `ssh://` against a real sshd on 127.0.0.1: the tree it makes is the one a local
//! publish makes, a second publish changes nothing, rollback, gc and `verify --to` work over ssh,
//! concurrent publishes queue on the server-side lock, and an unreachable, unauthorised or
//! unwritable DEST fails with a clear error before anything is written.

mod common;

use common::sshd::{closed_port, Sshd};
use common::{fails, objects_of, ok, snapshot, Lab, INVENTORY};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn lab_with_sshd() -> Option<(Sshd, Lab)> {
    match Sshd::start() {
        Ok(sshd) => {
            let mut lab = Lab::new();
            lab.ssh = Some(sshd.ssh_command());
            Some((sshd, lab))
        }
        Err(why) => {
            println!("skipped: {why}");
            None
        }
    }
}

/// A DEST snapshot with publish times blanked: two publishes of one output differ only there.
fn normalised(files: BTreeMap<PathBuf, Vec<u8>>) -> BTreeMap<PathBuf, String> {
    files
        .into_iter()
        .map(|(path, bytes)| {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let text = if path.starts_with("generations") {
                let mut g: serde_json::Value = serde_json::from_str(&text).unwrap();
                g["published_at"] = 0.into();
                for img in g["images"].as_object_mut().unwrap().values_mut() {
                    img["published_at"] = 0.into();
                }
                g.to_string()
            } else if path == Path::new("menu.ipxe") {
                text.lines()
                    .map(|l| match (l.find("  ("), l.find(", id ")) {
                        (Some(a), Some(b)) => format!("{}  (DATE{}", &l[..a], &l[b..]),
                        _ => l.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else if path.starts_with("objects") {
                // Compared as digests: they are named by content.
                format!("{} bytes", bytes.len())
            } else {
                text
            };
            (path, text)
        })
        .collect()
}

#[test]
fn publish_over_ssh_matches_local_and_rollback_gc_verify_work() {
    let Some((sshd, lab)) = lab_with_sshd() else {
        return;
    };
    let a = lab.build("a", "worker", "A");
    let (local, remote) = (lab.p("local"), lab.p("remote"));
    let url = sshd.url(&remote);

    let first = lab.publish(&a, &url, None);
    assert_eq!(first["generation"], 1, "{first}");
    assert!(first["objects_copied"].as_u64().unwrap() >= 4, "{first}");
    assert_eq!(first["dest"], url.as_str());
    lab.publish(&a, &local, None);
    assert_eq!(
        normalised(snapshot(&local)),
        normalised(snapshot(&remote)),
        "publishing over ssh made another tree than publishing locally"
    );

    let before = snapshot(&remote);
    let second = lab.publish(&a, &url, None);
    assert!(second["generation"].is_null(), "{second}");
    assert_eq!(second["objects_copied"], 0);
    assert_eq!(before, snapshot(&remote), "a no-op publish changed files");
    lab.verify(&url);
    lab.verify(&remote);

    // Host entries and their node segments travel the same way.
    let inv = lab.inventory(INVENTORY);
    assert_eq!(lab.publish(&a, &url, Some(&inv))["generation"], 2);
    let host = std::fs::read_to_string(remote.join("hosts/52-54-00-12-34-56.ipxe")).unwrap();
    assert!(host.contains("# host s2 "), "{host}");
    lab.verify(&url);

    let b = lab.build("b", "worker", "B");
    let entry_a = std::fs::read_to_string(remote.join("worker.ipxe")).unwrap();
    assert_eq!(lab.publish(&b, &url, None)["generation"], 3);
    let entry_b = std::fs::read_to_string(remote.join("worker.ipxe")).unwrap();
    assert_ne!(entry_a, entry_b);
    ok(lab.cmd().args(["rollback", "--to", &url, "worker"]));
    assert_eq!(
        std::fs::read_to_string(remote.join("worker.ipxe")).unwrap(),
        entry_a
    );
    let r: serde_json::Value = serde_json::from_str(&ok(lab
        .cmd()
        .args(["gc", "--keep", "1", "--json", "--to", &url])))
    .unwrap();
    assert_eq!(r["kept_generations"], serde_json::json!([4]), "{r}");
    assert!(r["removed_objects"].as_u64().unwrap() >= 3, "{r}");
    for o in objects_of(&entry_b)
        .into_iter()
        .filter(|o| !objects_of(&entry_a).contains(o))
    {
        assert!(
            !remote.join("objects").join(&o).exists(),
            "{o} not collected"
        );
    }
    for o in objects_of(&entry_a) {
        assert!(remote.join("objects").join(&o).exists(), "{o} collected");
    }
    lab.verify(&url);
    lab.verify(&remote);

    // verify over ssh finds damage, like the local one.
    let victim = remote
        .join("objects")
        .join(objects_of(&entry_a).pop().unwrap());
    std::fs::write(&victim, b"damaged").unwrap();
    let o = lab.cmd().args(["verify", "--to", &url]).output().unwrap();
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("content hashes to"), "{out}");
}

#[test]
fn concurrent_publishes_over_ssh_queue_on_the_lock() {
    let Some((sshd, lab)) = lab_with_sshd() else {
        return;
    };
    let outs: Vec<PathBuf> = ["red", "blue", "green"]
        .iter()
        .map(|name| lab.build(name, name, name))
        .collect();
    let remote = lab.p("remote");
    let url = sshd.url(&remote);
    lab.publish_concurrently(&outs, &url);
    let gens = diskless_publish::generations(&remote).unwrap();
    assert_eq!(
        gens.iter().map(|g| g.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // Each publish saw the one before it: none of the images was lost.
    assert_eq!(gens[2].images.len(), 3, "{:?}", gens[2].images.keys());
    lab.verify(&url);
}

#[test]
fn unreachable_unauthorised_or_unwritable_ssh_dest_fails_before_writing() {
    let Some((sshd, lab)) = lab_with_sshd() else {
        return;
    };
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("never");

    // Nothing listens.
    let url = format!("ssh://127.0.0.1:{}{}", closed_port(), dest.display());
    let e = fails(lab.cmd().arg("publish").arg(&out).args(["--to", &url]));
    assert!(
        e.contains(&url) && e.contains("cannot reach") && e.contains("Connection refused"),
        "{e}"
    );
    let e = fails(lab.cmd().args(["verify", "--to", &url]));
    assert!(e.contains(&url) && e.contains("Connection refused"), "{e}");

    // A key the server does not accept.
    let d = sshd.dir.path();
    let o = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(d.join("stranger"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let config = std::fs::read_to_string(d.join("ssh_config"))
        .unwrap()
        .replace("client_key", "stranger");
    std::fs::write(d.join("stranger_config"), config).unwrap();
    let url = sshd.url(&dest);
    let e = fails(
        lab.cmd()
            .env(
                "DISKLESS_SSH",
                format!("ssh -F {}", d.join("stranger_config").display()),
            )
            .arg("publish")
            .arg(&out)
            .args(["--to", &url]),
    );
    assert!(e.contains(&url) && e.contains("Permission denied"), "{e}");

    // A path that cannot be created (its parent is a file).
    let url = sshd.url(&lab.p("kernel").join("srv"));
    let e = fails(lab.cmd().arg("publish").arg(&out).args(["--to", &url]));
    assert!(e.contains(&url) && e.contains("Not a directory"), "{e}");

    // A bad inventory is refused before the server is contacted.
    let inv = lab
        .inventory("[[hosts]]\nmac = \"52:54:00:00:01\"\nhostname = \"a\"\nimage = \"worker\"\n");
    let e = fails(
        lab.cmd()
            .arg("publish")
            .arg(&out)
            .args(["--to", &sshd.url(&dest)])
            .arg("--inventory")
            .arg(&inv),
    );
    assert!(e.contains("not a MAC"), "{e}");
    assert!(
        !dest.exists(),
        "a failed publish created {}",
        dest.display()
    );
}

/// Over ssh too, a directory that is not a boot server is refused before anything (even the
/// lock file) is written into it.
#[test]
fn publish_over_ssh_refuses_a_directory_that_is_not_a_boot_server() {
    let Some((sshd, lab)) = lab_with_sshd() else {
        return;
    };
    let out = lab.build("out", "worker", "1");
    let dest = lab.p("foreign");
    std::fs::create_dir_all(dest.join("hosts")).unwrap();
    std::fs::write(dest.join("boot.ipxe"), "#!ipxe\nchain http://mine/\n").unwrap();
    std::fs::write(dest.join("hosts/52-54-00-12-34-56.ipxe"), "#!ipxe\n").unwrap();
    let before = snapshot(&dest);
    let url = sshd.url(&dest);
    let e = fails(lab.cmd().arg("publish").arg(&out).args(["--to", &url]));
    assert!(
        e.contains(&url) && e.contains("not a diskless boot server") && e.contains("boot.ipxe"),
        "{e}"
    );
    assert_eq!(before, snapshot(&dest));
    assert!(!dest.join(".lock").exists() && !dest.join("objects").exists());
}
