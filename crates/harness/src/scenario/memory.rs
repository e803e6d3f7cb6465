//! The check hook's memory figures in words: used memory by kind, by filesystem and by
//! process, and MemTotal − MemAvailable accounted the way the kernel estimates it.

/// MemTotal − MemAvailable split the way the kernel computes MemAvailable (6.1
/// `si_mem_available`: free pages, minus the watermark reserve, plus page cache and reclaimable
/// slab beyond the low watermark): what holds pages (tmpfs, anonymous, kernel), what the
/// estimate withholds (reserve, cache below the watermark), and the rest; then the RAM the
/// kernel never counted in MemTotal (struct pages, its image, firmware).
pub fn print_memory_accounting(memory_mib: u32, m: &serde_json::Value) {
    let Some(info) = m.get("meminfo_kb").and_then(|v| v.as_object()) else {
        return;
    };
    let kb = |k: &str| info.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let low = m
        .get("low_watermark_kb")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let reserve = m.get("reserve_kb").and_then(|v| v.as_u64()).unwrap_or(0);
    let used = kb("MemTotal").saturating_sub(kb("MemAvailable"));
    let pagecache = kb("Active(file)") + kb("Inactive(file)");
    let parts = [
        ("shmem (tmpfs roots, containerd data)", kb("Shmem")),
        ("anon (processes)", kb("AnonPages")),
        ("slab unreclaimable", kb("SUnreclaim")),
        ("kernel stacks", kb("KernelStack")),
        ("page tables", kb("PageTables")),
        ("vmalloc (modules…)", kb("VmallocUsed")),
        ("percpu", kb("Percpu")),
        ("watermark reserve", reserve),
        ("page cache below low wmark", (pagecache / 2).min(low)),
        (
            "reclaimable slab below low wmark",
            (kb("KReclaimable") / 2).min(low),
        ),
    ];
    let named: u64 = parts.iter().map(|(_, v)| v).sum();
    let mut line: Vec<String> = parts
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1024.0))
        .collect();
    line.push(format!("rest {:.1}", (used as f64 - named as f64) / 1024.0));
    println!(
        "memory accounted (MB of {:.1} used): {}",
        used as f64 / 1024.0,
        line.join(" · ")
    );
    println!(
        "memory outside MemTotal: {:.1} MB of the VM's {memory_mib} MiB (struct pages, kernel image, firmware); page cache {:.1} MB, buffers {:.1} MB, unevictable {:.1} MB",
        (u64::from(memory_mib) * 1024).saturating_sub(kb("MemTotal")) as f64 / 1024.0,
        kb("Cached") as f64 / 1024.0,
        kb("Buffers") as f64 / 1024.0,
        kb("Unevictable") as f64 / 1024.0,
    );
}

pub fn print_memory(when: &str, m: &serde_json::Value) {
    let kb = |k: &str| m.get(k).and_then(|v| v.as_u64());
    let mb = |v: Option<u64>, div: f64| v.map_or("-".into(), |v| format!("{:.1}", v as f64 / div));
    println!(
        "memory ({when}): used {} MB (MemTotal − MemAvailable) · image on tmpfs and initramfs {} MB · RSS containerd {} MB · kubelet {} MB",
        mb(kb("mem_used_kb"), 1024.0),
        mb(kb("rootfs_used_bytes"), 1048576.0),
        mb(kb("rss_containerd_kb"), 1024.0),
        mb(kb("rss_kubelet_kb"), 1024.0),
    );
    if let (Some(shmem), Some(anon), Some(slab)) = (kb("shmem_kb"), kb("anon_kb"), kb("slab_kb")) {
        println!(
            "memory by kind: shmem (tmpfs) {:.1} MB · anon {:.1} MB · slab {:.1} MB · kernel stacks + page tables {:.1} MB",
            shmem as f64 / 1024.0,
            anon as f64 / 1024.0,
            slab as f64 / 1024.0,
            (kb("kernel_stack_kb").unwrap_or(0) + kb("page_tables_kb").unwrap_or(0)) as f64 / 1024.0,
        );
    }
    if let Some(line) = memory_by_filesystem(m) {
        println!("{line}");
    }
    if let Some(line) = memory_by_process(m) {
        println!("{line}");
    }
}

/// Shmem by where its pages are: the initramfs (the squashfs images itemised) and each tmpfs.
fn memory_by_filesystem(m: &serde_json::Value) -> Option<String> {
    let mb = |b: u64| format!("{:.1}", b as f64 / 1048576.0);
    let initramfs = m.get("initramfs_used_bytes")?.as_u64()?;
    let images: Vec<String> = m
        .get("squashfs_images")?
        .as_array()?
        .iter()
        .filter_map(|i| {
            let file = i.get("file")?.as_str()?;
            let name = file.rsplit('/').next().unwrap_or(file);
            Some(format!("{name} {}", mb(i.get("bytes")?.as_u64()?)))
        })
        .collect();
    let mut parts = vec![format!(
        "initramfs {} (squashfs: {})",
        mb(initramfs),
        images.join(", ")
    )];
    let mut total = initramfs;
    for f in m.get("filesystems")?.as_array()? {
        let used = f.get("used_bytes").and_then(|v| v.as_u64()).unwrap_or(0);
        total += used;
        parts.push(format!(
            "{} {}",
            f.get("mount").and_then(|v| v.as_str()).unwrap_or("?"),
            mb(used)
        ));
    }
    let shmem = m.get("shmem_kb")?.as_u64()? * 1024;
    Some(format!(
        "memory by filesystem (MB): {} · Σ {} of shmem {}",
        parts.join(" · "),
        mb(total),
        mb(shmem)
    ))
}

/// Anonymous memory by process, largest first; the sum next to AnonPages.
fn memory_by_process(m: &serde_json::Value) -> Option<String> {
    let procs = m.get("processes")?.as_array()?;
    let kb = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let total: u64 = procs.iter().map(|p| kb(p, "anon_kb")).sum();
    let parts: Vec<String> = procs
        .iter()
        .filter(|p| kb(p, "anon_kb") >= 512)
        .map(|p| {
            format!(
                "{} {:.1}",
                p.get("name").and_then(|v| v.as_str()).unwrap_or("?"),
                kb(p, "anon_kb") as f64 / 1024.0
            )
        })
        .collect();
    Some(format!(
        "memory by process (anon MB, ≥ 0.5): {} · Σ {:.1} of {} processes, AnonPages {:.1}",
        parts.join(" · "),
        total as f64 / 1024.0,
        procs.len(),
        m.get("anon_kb")?.as_u64()? as f64 / 1024.0
    ))
}
