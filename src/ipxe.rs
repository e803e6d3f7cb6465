//! The iPXE entry for one image: `kernel`, one `initrd` line per segment (iPXE concatenates them
//! and pads each to 4 bytes, which the kernel's reader needs), the command line, `boot`. URLs are
//! relative to a base so the same output works from TFTP, HTTP or a subdirectory; relative URLs
//! are resolved by iPXE against the script's own URL.

use crate::index::Index;

/// Checks a `--base-url`: empty (relative to the script) or ending in `/`.
pub fn check_base(base: &str) -> Result<(), String> {
    if base.is_empty() || base.ends_with('/') {
        Ok(())
    } else {
        Err(format!(
            "--base-url {base:?} must end with '/' (or be empty for URLs relative to the script)"
        ))
    }
}

/// Renders the script; `extra_cmdline` is appended (per-node arguments, check hooks).
pub fn script(index: &Index, index_sha256: &str, base: &str, extra_cmdline: &str) -> String {
    let mut s = String::from("#!ipxe\n");
    s.push_str(format!("# {} {}", index.name, index.description).trim_end());
    s.push('\n');
    s.push_str(&format!("# index {index_sha256}\n"));
    let mut cmdline = index.cmdline.clone();
    if !extra_cmdline.is_empty() {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(extra_cmdline);
    }
    s.push_str(format!("kernel {base}{} {cmdline}", index.kernel.object_path()).trim_end());
    s.push('\n');
    for seg in &index.segments {
        s.push_str(&format!("initrd {base}{}\n", seg.object_path()));
    }
    s.push_str("boot\n");
    s
}
