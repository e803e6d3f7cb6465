//! The memory report: MemTotal − MemAvailable and where it is, by kind (`/proc/meminfo`, the
//! zones' reserves), by filesystem (every tmpfs, and the initramfs the kernel unpacked, which
//! holds the squashfs images) and by process (anonymous, file and shmem RSS). The harness
//! prints it (`print_memory_accounting`); `docs/performance.md` reads it.

use crate::service_pid;
use diskless_contract::image::Service;
use diskless_init::switchroot::INITRAMFS_USED;
use diskless_init::sys;
use serde_json::json;
use std::collections::BTreeSet;

/// One JSON object of the figures, read now.
pub fn report(
    runtime: Option<&Service>,
    kubelet: Option<&Service>,
    services: &[Service],
) -> serde_json::Value {
    // One read of /proc/meminfo, so that every figure below is of the same moment.
    let meminfo = meminfo_all();
    let kb = |k: &str| meminfo.get(k).and_then(|v| v.as_u64());
    let rss = |svc: Option<&Service>| {
        let status = status(svc.and_then(|s| service_pid(&s.name))?)?;
        status_kb(&status, "VmRSS")
    };
    let (reserve, low) = zone_reserves_kb().unzip();
    // What the init measured on the initramfs once the root had moved out of it: the squashfs
    // images and the read-only /usr (the old root is out of reach from here).
    let initramfs: Option<u64> = std::fs::read_to_string(INITRAMFS_USED)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    json!({
        "mem_total_kb": kb("MemTotal"),
        "mem_used_kb": kb("MemTotal").zip(kb("MemAvailable")).map(|(t, a)| t - a),
        "rootfs_used_bytes": used_bytes("/") + initramfs.unwrap_or(0),
        "initramfs_used_bytes": initramfs,
        "filesystems": filesystems(),
        "squashfs_images": squashfs_images(),
        "processes": processes(),
        "shmem_kb": kb("Shmem"),
        "anon_kb": kb("AnonPages"),
        "slab_kb": kb("Slab"),
        "kernel_stack_kb": kb("KernelStack"),
        "page_tables_kb": kb("PageTables"),
        "rss_containerd_kb": rss(runtime),
        "rss_kubelet_kb": rss(kubelet),
        "rss_services_kb": services
            .iter()
            .map(|s| (s.name.clone(), json!(rss(Some(s)))))
            .collect::<serde_json::Map<_, _>>(),
        "meminfo_kb": meminfo,
        "reserve_kb": reserve,
        "low_watermark_kb": low,
    })
}

fn used_bytes(path: &str) -> u64 {
    sys::statfs(path)
        .map(|(_, bsize, blocks, bfree)| (blocks - bfree) * bsize)
        .unwrap_or(0)
}

/// Every memory-backed filesystem mounted here, once per device (bind mounts share pages):
/// `[{"mount", "type", "used_bytes"}]`. Their pages are the Shmem that is not the initramfs.
fn filesystems() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = BTreeSet::new();
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "tmpfs" | "devtmpfs" | "ramfs"))
        .filter(|m| seen.insert(m.device.clone()))
        .map(|m| json!({"mount": m.mount, "type": m.fstype, "used_bytes": used_bytes(&m.mount)}))
        .collect()
}

struct Mount {
    device: String,
    mount: String,
    fstype: String,
}

/// `/proc/self/mountinfo` lines: `id parent major:minor root mountpoint options … - type source
/// superoptions`; mount points escape space, tab, newline and backslash in octal.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            Some(Mount {
                device: fields.get(2)?.to_string(),
                mount: unescape(fields.get(4)?),
                fstype: right.split(' ').next()?.to_string(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out + rest
}

/// The squashfs images behind the loop devices: `[{"file", "bytes"}]`. They sit on the
/// initramfs, compressed, for as long as the node runs: most of its Shmem.
fn squashfs_images() -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut images: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let dir = e.path();
            let file = std::fs::read_to_string(dir.join("loop/backing_file")).ok()?;
            let sectors: u64 = std::fs::read_to_string(dir.join("size"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((file.trim().to_string(), sectors * 512))
        })
        .collect();
    images.sort();
    images
        .into_iter()
        .map(|(file, bytes)| json!({"file": file, "bytes": bytes}))
        .collect()
}

/// Every process with memory of its own: `[{"pid", "name", "anon_kb", "file_kb", "shmem_kb"}]`,
/// largest anonymous first. Anonymous RSS sums to AnonPages (shared pages counted once per
/// process); file RSS is page cache MemAvailable counts as available.
fn processes() -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut procs: Vec<(u64, i32, String, u64, u64)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let status = status(pid)?;
            let anon = status_kb(&status, "RssAnon")?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let file = status_kb(&status, "RssFile").unwrap_or(0);
            let shmem = status_kb(&status, "RssShmem").unwrap_or(0);
            Some((anon, pid, name.trim().to_string(), file, shmem))
        })
        .collect();
    procs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    procs
        .into_iter()
        .map(|(anon, pid, name, file, shmem)| {
            json!({"pid": pid, "name": name, "anon_kb": anon, "file_kb": file, "shmem_kb": shmem})
        })
        .collect()
}

/// `/proc/PID/status`, read once for all the fields a report takes from it.
fn status(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// A `kB` field of a `/proc/PID/status` text; None for kernel threads, which have no memory map.
fn status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// Every `/proc/meminfo` field in kB (the `HugePages_*` counts as they are): the harness
/// splits MemTotal − MemAvailable by kind from these.
fn meminfo_all() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let n: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some((k.to_string(), n.into()))
        })
        .collect()
}

/// From one read of `/proc/zoneinfo`, in kB: the kernel's `totalreserve_pages` (per zone its
/// high watermark plus its largest lowmem reserve; MemAvailable leaves it out, so it counts as
/// used, and it grows with the RAM: min_free_kbytes, watermark_scale_factor) and the sum of the
/// zones' low watermarks (MemAvailable counts as used up to this much page cache and as much
/// reclaimable slab, at most half of each).
fn zone_reserves_kb() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/zoneinfo").ok()?;
    let (reserve, low) = zone_sums(&text);
    Some((reserve * 4, low * 4))
}

/// (Σ min(high + max protection, managed), Σ low) over the zones, in pages: the kernel's
/// `calculate_totalreserve_pages` and `si_mem_available`'s low watermark.
fn zone_sums(zoneinfo: &str) -> (u64, u64) {
    let (mut reserve, mut low) = (0, 0);
    // (high, largest protection, managed) of the zone being read.
    let mut zone: Option<(u64, u64, u64)> = None;
    let close = |zone: Option<(u64, u64, u64)>| zone.map_or(0, |(h, p, m)| (h + p).min(m));
    for line in zoneinfo.lines() {
        if line.starts_with("Node ") {
            reserve += close(zone.replace((0, 0, 0)));
            continue;
        }
        let Some(z) = zone.as_mut() else { continue };
        let line = line.trim();
        let mut words = line.split_whitespace();
        let number = |w: Option<&str>| w.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        match words.next() {
            Some("high") => z.0 = number(words.next()),
            Some("low") => low += number(words.next()),
            Some("managed") => z.2 = number(words.next()),
            Some("protection:") => {
                z.1 = line
                    .trim_start_matches("protection:")
                    .trim_matches(|c| c == ' ' || c == '(' || c == ')')
                    .split(',')
                    .filter_map(|n| n.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    (reserve + close(zone), low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_high_plus_protection_capped_at_managed() {
        let zoneinfo = "Node 0, zone      DMA
  pages free     3000
        min      10
        low      12
        high     14
        spanned  4095
        present  3998
        managed  3976
        protection: (0, 2000, 5000, 5000, 5000)
  pagesets
    cpu: 0
              count: 0
              high:  0
Node 0, zone    DMA32
  pages free     100000
        min      500
        low      600
        high     700
        managed  200000
        protection: (0, 0, 1000, 1000, 1000)
";
        // DMA: 14 + 5000 capped at 3976; DMA32: 700 + 1000.
        assert_eq!(zone_sums(zoneinfo), (3976 + 1700, 612));
    }

    #[test]
    fn mountinfo_gives_device_mount_point_and_type() {
        let text = "22 1 0:21 / /run rw,nosuid - tmpfs run rw\n\
                    30 22 0:21 /x /run/with\\040space rw - tmpfs run rw\n\
                    31 1 7:0 / /.diskless/lower/containerd ro shared:5 - squashfs /dev/loop0 ro\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            (mounts[0].device.as_str(), mounts[0].mount.as_str()),
            ("0:21", "/run")
        );
        assert_eq!(mounts[1].mount, "/run/with space");
        assert_eq!(mounts[2].fstype, "squashfs");
    }
}
