//! `diskless.check=image-pressure`: preloaded images survive the kubelet's image GC.
//!
//! On a RAM-only node the image filesystem is the tmpfs root, and no registry can give back an
//! image the kubelet deletes: preloaded images must be pinned (`io.cri-containerd.pinned`).
//! This check fills the root with one preallocated file until it is [`FILL_TO_PERCENT`] full,
//! past the kubelet's `imagefs.available` eviction threshold (15 % by default), and waits for
//! the kubelet to reclaim images. It passes when every *unpinned* preloaded image is deleted
//! (the GC really ran; without one the check fails, as it could not tell) and every pinned one
//! is still there. The file is removed afterwards, whatever the outcome.

use crate::{run, PINNED};
use diskless_contract::image::ImageContract;
use diskless_init::sys;
use std::time::{Duration, Instant};

/// How full the root gets: above any sane `imagefs.available` threshold (the kubelet's default
/// is 15 %), below 100 % so the node's own writes still succeed.
const FILL_TO_PERCENT: u64 = 95;
/// The kubelet looks every 10 s, on stats up to one cadvisor housekeeping (≈ 15 s) old, and
/// deletes no image it first saw less than `imageMinimumGCAge` (2 min by default) ago, counted
/// from its own start for preloaded images.
const LIMIT: Duration = Duration::from_secs(180);
/// On the root, beside containerd's data (`/var/lib/containerd`): the same filesystem.
const FILL: &str = "/var/lib/diskless-check-fill";
/// RAM the node keeps beyond the fill (the kubelet's memory.available threshold is 50 MiB).
const KEEP_FREE: u64 = 96 << 20;

pub fn check(contract: &ImageContract) -> Result<String, String> {
    let (pinned, unpinned): (Vec<_>, Vec<_>) = contract
        .images
        .iter()
        .filter(|i| i.wanted())
        .partition(|i| i.labels.contains_key(PINNED));
    let pinned: Vec<&str> = pinned
        .iter()
        .flat_map(|i| &i.refs)
        .map(String::as_str)
        .collect();
    let unpinned: Vec<&str> = unpinned
        .iter()
        .flat_map(|i| &i.refs)
        .map(String::as_str)
        .collect();
    if unpinned.is_empty() {
        return Err(
            "every preloaded image is pinned: preload one without the label, or \
             nothing shows that the kubelet's image GC ran"
                .into(),
        );
    }
    let (mib, percent) = fill()?;
    let result = wait_for_gc(&pinned, &unpinned);
    let _ = std::fs::remove_file(FILL);
    result.map(|secs| {
        format!(
            "{mib} MiB written, root {percent} % full: the kubelet removed {unpinned:?} after \
             {secs:.1} s and kept {} pinned refs",
            pinned.len()
        )
    })
}

/// Preallocates [`FILL`] so the root is [`FILL_TO_PERCENT`] full; returns the MiB written and
/// how full the root then is.
fn fill() -> Result<(u64, u64), String> {
    let (_, bsize, blocks, bfree) = sys::statfs("/").map_err(|e| format!("statfs /: {e}"))?;
    let (total, free) = (blocks * bsize, bfree * bsize);
    let target_free = total * (100 - FILL_TO_PERCENT) / 100;
    let bytes = free.saturating_sub(target_free);
    let available = sys::meminfo_kb("MemAvailable").unwrap_or(0) * 1024;
    if bytes + KEEP_FREE > available {
        return Err(format!(
            "filling the root to {FILL_TO_PERCENT} % takes {} MiB, but only {} MiB of RAM \
             is available: give the machine more memory",
            bytes >> 20,
            available >> 20
        ));
    }
    let file = std::fs::File::create(FILL).map_err(|e| format!("create {FILL}: {e}"))?;
    // Really allocated, unlike a sparse `set_len`: tmpfs counts these pages as used.
    let len = i64::try_from(bytes).map_err(|_| format!("fill of {bytes} bytes"))?;
    // SAFETY: a valid open file descriptor; mode 0 only allocates.
    let rc = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, len) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_file(FILL);
        return Err(format!("fallocate {} MiB in {FILL}: {e}", bytes >> 20));
    }
    let (_, _, blocks, bfree) = sys::statfs("/").map_err(|e| format!("statfs /: {e}"))?;
    Ok((bytes >> 20, (blocks - bfree) * 100 / blocks.max(1)))
}

/// Seconds until every unpinned ref is gone, failing as soon as a pinned one is.
fn wait_for_gc(pinned: &[&str], unpinned: &[&str]) -> Result<f64, String> {
    let t = Instant::now();
    loop {
        let out = run(
            &["ctr", "-n", "k8s.io", "images", "ls", "-q"],
            Duration::from_secs(20),
        )?;
        let have: Vec<&str> = out.lines().collect();
        let lost: Vec<&&str> = pinned.iter().filter(|r| !have.contains(r)).collect();
        if !lost.is_empty() {
            return Err(format!("pinned images were deleted: {lost:?}"));
        }
        let left: Vec<&&str> = unpinned.iter().filter(|r| have.contains(r)).collect();
        if left.is_empty() {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > LIMIT {
            return Err(format!(
                "{left:?} still present {} s after the root filled: the kubelet's image GC \
                 never ran (is its evictionHard imagefs.available below {} %?)",
                LIMIT.as_secs(),
                100 - FILL_TO_PERCENT
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
