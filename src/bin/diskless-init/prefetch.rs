//! Step 3b: warm the page cache with the programs the next steps run, when they come from
//! squashfs. A page fault on a squashfs file decompresses its whole block while the faulting
//! program waits; containerd (48 MB) faulted in that way took 2–3 s longer to start under TCG
//! than from cpio. Reading the files sequentially in a background thread, while modules load
//! and DHCP runs, decompresses them with readahead instead, and the pages stay reclaimable.

use std::io::Read;

/// Executables to warm, in the order they will run: each service's program, then `ctr`, which
/// imports the preloaded images. Only paths on a read-only squashfs-backed mount matter, but
/// reading a tmpfs file is cheap, so no filtering.
pub fn targets(services: &[crate::contract::Service], images: bool) -> Vec<String> {
    let mut out: Vec<String> = services
        .iter()
        .filter_map(|s| s.command.first().cloned())
        .collect();
    if images {
        out.insert(1.min(out.len()), "ctr".into());
    }
    out
}

/// Resolves a bare program name on the init's PATH.
fn resolve(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        return Some(program.into());
    }
    crate::services::PATH
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Reads every target once in a background thread; errors are ignored (a missing program is
/// reported by the step that runs it).
pub fn spawn(targets: Vec<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        for t in targets {
            if let Some(mut f) = resolve(&t).and_then(|p| std::fs::File::open(p).ok()) {
                while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
            }
        }
    })
}
