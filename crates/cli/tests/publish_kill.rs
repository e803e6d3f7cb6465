//! Crash safety the hard way: the real `diskless publish` of image B over a boot server that
//! serves image A is SIGKILLed after a random delay within a measured full publish, many times,
//! each from a fresh copy of A's server. After every kill, `verify --to` passes, every entry is
//! exactly A's version or B's and names only objects that hash right, and publishing again
//! completes. Also: concurrent publishes queue on the lock instead of losing one another.
//! Set DISKLESS_KILL_SEED to replay a run (the seed and delays are printed).

mod common;

use common::sshd::Sshd;
use common::{copy_tree, ok, snapshot, Lab};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// splitmix64: enough randomness for delays, and replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn seed() -> u64 {
    std::env::var("DISKLESS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Ten hosts, so rendering host entries is a step a kill can land in.
fn inventory() -> String {
    let mut s = String::from("default_image = \"worker\"\n");
    for i in 0..10 {
        s.push_str(&format!(
            "[[hosts]]\nmac = \"52:54:00:00:00:{i:02x}\"\nhostname = \"n{i}\"\nimage = \"worker\"\n"
        ));
    }
    s
}

/// Image B: A's components plus four uncompressed 8 MiB segments of random bytes, so that
/// copying objects takes a measurable time and has several steps.
fn build_big(lab: &Lab, rng: &mut Rng) -> PathBuf {
    let mut extra = Vec::new();
    for i in 0..4 {
        let path = lab.p(&format!("blob{i}"));
        let bytes: Vec<u8> = (0..(8 << 20) / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        std::fs::write(&path, bytes).unwrap();
        extra.push(serde_json::json!({
            "name": format!("blob{i}"),
            "compression": {"algorithm": "none"},
            "files": [{"source": path, "dest": format!("/var/blob{i}")}]
        }));
    }
    lab.build_with("b", "worker", "B", serde_json::Value::Array(extra))
}

/// The entries machines fetch, by path relative to DEST.
fn entries(dest: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(dest)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "ipxe") && p != Path::new("menu.ipxe"))
        .collect()
}

/// Every object an entry names exists and hashes to its name.
fn check_objects(dest: &Path, entry: &Path, text: &str, what: &str) {
    for sha in diskless_builder::ipxe::referenced_objects(text) {
        let bytes = std::fs::read(dest.join("objects").join(sha))
            .unwrap_or_else(|e| panic!("{what}: {} names objects/{sha}: {e}", entry.display()));
        assert_eq!(hex::encode(Sha256::digest(&bytes)), sha, "{what}");
    }
}

/// `dest_of` turns the trial directory into the `--to` argument (a path, or an ssh URL to it).
fn kill_trials(lab: &Lab, trials: usize, dest_of: &dyn Fn(&Path) -> String) {
    let seed = seed();
    let mut rng = Rng(seed);
    let a = lab.build("a", "worker", "A");
    let b = build_big(lab, &mut rng);
    let served_a = lab.p("served-a");
    lab.publish(&a, dest_of(&served_a), Some(&lab.inventory(&inventory())));
    let entries_a = entries(&served_a);

    // A full publish of B, timed: the kills fall within it.
    let served_b = lab.p("served-b");
    copy_tree(&served_a, &served_b);
    let start = Instant::now();
    lab.publish(&b, dest_of(&served_b), None);
    let full = start.elapsed();
    let entries_b = entries(&served_b);
    assert_ne!(entries_a, entries_b);
    println!("seed {seed}; a full publish of B took {full:?}");

    let mut outcomes = BTreeMap::new();
    for trial in 0..trials {
        let dir = lab.p(&format!("trial{trial}"));
        copy_tree(&served_a, &dir);
        let delay = Duration::from_micros(rng.next() % full.as_micros() as u64);
        let mut child = lab
            .cmd()
            .arg("publish")
            .arg(&b)
            .arg("--to")
            .arg(dest_of(&dir))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        let what = format!("trial {trial} (seed {seed}, killed after {delay:?})");

        ok(lab.cmd().arg("verify").arg("--to").arg(dest_of(&dir)));
        let now = entries(&dir);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            entries_a.keys().collect::<Vec<_>>(),
            "{what}"
        );
        let mut versions = String::new();
        for (path, bytes) in &now {
            let version = if bytes == &entries_a[path] {
                'A'
            } else if bytes == &entries_b[path] {
                'B'
            } else {
                panic!(
                    "{what}: {} is neither A's nor B's:\n{}",
                    path.display(),
                    String::from_utf8_lossy(bytes)
                )
            };
            versions.push(version);
            check_objects(&dir, path, &String::from_utf8_lossy(bytes), &what);
        }
        println!(
            "{what}: {}, entries {versions}",
            if status.success() {
                "had finished"
            } else {
                "killed"
            }
        );
        *outcomes.entry(versions).or_insert(0) += 1;

        // Publishing again finishes the job.
        lab.publish(&b, dest_of(&dir), None);
        ok(lab.cmd().arg("verify").arg("--to").arg(dest_of(&dir)));
        assert_eq!(entries(&dir), entries_b, "{what}: after publishing again");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("outcomes (entries in path order, A or B): {outcomes:?}");
}

#[test]
fn publish_sigkilled_at_random_points_leaves_a_or_b() {
    let lab = Lab::new();
    kill_trials(&lab, 15, &|dir| dir.display().to_string());
}

#[test]
fn publish_over_ssh_sigkilled_at_random_points_leaves_a_or_b() {
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let mut lab = Lab::new();
    lab.ssh = Some(sshd.ssh_command());
    kill_trials(&lab, 10, &|dir| sshd.url(dir));
}

#[test]
fn concurrent_publishes_queue_on_the_lock() {
    let lab = Lab::new();
    let outs: Vec<PathBuf> = ["red", "blue", "green", "gold"]
        .iter()
        .map(|name| lab.build(name, name, name))
        .collect();
    let dest = lab.p("srv");
    lab.publish_concurrently(&outs, dest.to_str().unwrap());
    let gens = diskless_publish::generations(&dest).unwrap();
    assert_eq!(
        gens.iter().map(|g| g.number).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Each publish read the one before it: none of the images was lost.
    assert_eq!(gens[3].images.len(), 4, "{:?}", gens[3].images.keys());
    lab.verify(&dest);
}
