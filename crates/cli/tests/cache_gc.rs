//! `diskless cache gc`: least recently used entries go first, only the builder's own cache
//! files are considered (never the stack, never unknown files or symlink targets), and the
//! output says what was removed.

mod common;

use common::{diskless, fails, ok};
use std::fs::{File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const DAY: u64 = 86_400;

/// Writes `bytes` bytes at `rel`, last used `days` ago.
fn entry(root: &Path, rel: &str, bytes: usize, days: u64) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, vec![1u8; bytes]).unwrap();
    age(&p, days);
    p
}

fn age(p: &Path, days: u64) {
    let t = SystemTime::now() - Duration::from_secs(days * DAY);
    File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

fn hex(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// A cache with entries of every kind, of various ages, plus things gc must leave alone.
struct Fixture {
    _t: tempfile::TempDir,
    root: PathBuf,
    old_blob: PathBuf,
    new_blob: PathBuf,
    old_segment: PathBuf,
    mid_segment: PathBuf,
    old_reference: PathBuf,
    untouchable: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let untouchable = vec![
        entry(&root, "stack/current/bin/kubelet", 100, 400),
        entry(&root, "blobs/notes.txt", 100, 400),
        entry(&root, &format!("blobs/{}", hex('A')), 100, 400), // not lowercase hex
        entry(&root, "segments/short", 100, 400),
        entry(&root, "reference-images/readme", 100, 400),
        entry(&root, &format!("other/{}", hex('a')), 100, 400),
    ];
    // A symlink named like a blob, pointing outside: neither it nor its target is removed.
    let outside = entry(t.path(), "outside", 100, 400);
    std::os::unix::fs::symlink(&outside, root.join(format!("blobs/{}", hex('e')))).unwrap();
    Fixture {
        old_blob: entry(&root, &format!("blobs/{}", hex('a')), 1000, 40),
        new_blob: entry(&root, &format!("blobs/{}", hex('b')), 1000, 0),
        old_segment: entry(&root, &format!("segments/{}", hex('c')), 2000, 90),
        mid_segment: entry(&root, &format!("segments/{}", hex('d')), 500, 10),
        old_reference: entry(&root, "reference-images/pause-0123.oci.tar", 300, 31),
        untouchable: [untouchable, vec![outside]].concat(),
        root,
        _t: t,
    }
}

fn gc(root: &Path, args: &[&str]) -> String {
    ok(diskless()
        .args(["cache", "gc", "--cache-dir"])
        .arg(root)
        .args(args))
}

#[test]
fn max_age_removes_what_was_not_used_since() {
    let f = fixture();
    let out = gc(&f.root, &["--max-age", "30"]);
    for gone in [&f.old_blob, &f.old_segment, &f.old_reference] {
        assert!(!gone.exists(), "{} should be removed", gone.display());
        assert!(
            out.contains(&format!("removed {}", gone.display())),
            "{out}"
        );
    }
    for kept in [&f.new_blob, &f.mid_segment] {
        assert!(kept.exists(), "{} should be kept", kept.display());
    }
    for p in &f.untouchable {
        assert!(p.exists(), "{} must not be touched", p.display());
    }
    assert!(
        out.contains("removed 3 entries (3300 bytes), kept 2 entries (1500 bytes)"),
        "{out}"
    );
}

#[test]
fn keep_bytes_removes_least_recently_used_first() {
    let f = fixture();
    // Newest first: new_blob 1000 (0 d), mid_segment 500 (10 d), old_reference 300 (31 d),
    // old_blob 1000 (40 d), old_segment 2000 (90 d).
    let out = gc(&f.root, &["--keep-bytes", "1800"]);
    for kept in [&f.new_blob, &f.mid_segment, &f.old_reference] {
        assert!(kept.exists(), "{} should be kept", kept.display());
    }
    for gone in [&f.old_blob, &f.old_segment] {
        assert!(!gone.exists(), "{} should be removed", gone.display());
    }
    for p in &f.untouchable {
        assert!(p.exists(), "{} must not be touched", p.display());
    }
    assert!(out.contains("kept 3 entries (1800 bytes)"), "{out}");
    // Zero keeps nothing of the cache proper, still nothing else.
    gc(&f.root, &["--keep-bytes", "0"]);
    assert!(!f.new_blob.exists());
    for p in &f.untouchable {
        assert!(p.exists(), "{} must not be touched", p.display());
    }
}

/// Staging left by an interrupted build is removed once a day old; a live build's is not.
#[test]
fn stale_staging_is_removed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let stale = entry(root, "blobs/.partial-abc/x", 10, 0);
    age(&stale, 2);
    let stale_dir = stale.parent().unwrap().to_owned();
    std::fs::File::open(&stale_dir)
        .unwrap()
        .set_times(
            FileTimes::new()
                .set_accessed(SystemTime::now() - Duration::from_secs(2 * DAY))
                .set_modified(SystemTime::now() - Duration::from_secs(2 * DAY)),
        )
        .unwrap();
    let live = entry(root, "blobs/.partial-def/y", 10, 0);
    let out = gc(root, &["--max-age", "1000"]);
    assert!(!stale_dir.exists(), "{out}");
    assert!(live.exists(), "{out}");
}

#[test]
fn bad_invocations_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let e = fails(
        diskless()
            .args(["cache", "gc", "--max-age", "1", "--cache-dir"])
            .arg(&missing),
    );
    assert!(
        e.contains(&format!("{} does not exist", missing.display())),
        "{e}"
    );
    let e = fails(diskless().args(["cache", "gc"]));
    assert!(e.contains("--max-age") && e.contains("--keep-bytes"), "{e}");
    let e = fails(diskless().args(["cache", "gc", "--max-age", "1", "--keep-bytes", "1"]));
    assert!(e.contains("cannot be used with"), "{e}");
    let e = fails(diskless().args(["cache", "gc", "--max-age", "-3"]));
    assert!(e.contains("--max-age"), "{e}");
}
