//! Step 6b: warm the page cache with the programs the later steps run, when they come from
//! squashfs. A page fault on a squashfs file decompresses its whole block while the faulting
//! program waits. Reading the files sequentially in a background thread while the images
//! import decompresses them with readahead instead, and the pages stay reclaimable.

use std::io::Read;

/// Executables to warm once containerd answers, in the order they will run: the shim and runc
/// (the first container), then the later services' programs (kubelet). Not containerd, whose
/// own start is best left the CPU, nor `ctr`, which runs at once and pages itself in. Missing
/// programs are skipped.
pub fn targets(later: &[diskless_contract::image::Service]) -> Vec<String> {
    let mut out = vec!["containerd-shim-runc-v2".to_string(), "runc".to_string()];
    out.extend(later.iter().filter_map(|s| s.command.first().cloned()));
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
