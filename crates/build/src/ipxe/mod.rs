//! The iPXE entry for one image: `kernel`, one `initrd` line per segment (iPXE concatenates them
//! and pads each to 4 bytes, which the kernel's reader needs), the command line, `boot`. URLs are
//! relative to a base so the same output works from TFTP, HTTP or a subdirectory; relative URLs
//! are resolved by iPXE against the script's own URL. Every string written here is a
//! [`words`] type, checked where it entered: nothing else can reach a script.

pub mod words;

use crate::index::Index;
use words::{BaseUrl, Word, Words};

/// The object digests an iPXE script refers to (`…objects/<sha256>` words), for checks that every
/// entry points at stored objects.
pub fn referenced_objects(script: &str) -> impl Iterator<Item = &str> {
    script
        .split_whitespace()
        .filter_map(|w| w.find("objects/").map(|pos| &w[pos + "objects/".len()..]))
}

/// What an entry adds to the image's own script: a comment line (who it is for), kernel
/// arguments (a host's own, a check hook's) and initrds loaded after the image's segments (a
/// node's segment, the check hook). Paths are as iPXE fetches them, relative to the script.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub comment: Option<Words>,
    pub cmdline: Vec<Words>,
    pub initrds: Vec<Word>,
}

/// Renders the image's script: `kernel` with the command line, one `initrd` per segment, then
/// the extra initrds, `boot`.
/// `index_sha256` is the index's own digest (checked: it is a path too).
pub fn script(index: &Index, index_sha256: &str, base: &BaseUrl, extra: &Extra) -> String {
    assert!(
        crate::index::is_sha256_hex(index_sha256),
        "index digest {index_sha256:?}"
    );
    let base = base.as_str();
    let mut s = String::from("#!ipxe\n");
    s.push_str(format!("# {} {}", index.name, index.description).trim_end());
    s.push('\n');
    if let Some(c) = &extra.comment {
        s.push_str(&format!("# {c}\n"));
    }
    s.push_str(&format!("# index {index_sha256}\n"));
    let cmdline: Vec<&str> = std::iter::once(index.cmdline.as_str())
        .chain(extra.cmdline.iter().map(Words::as_str))
        .filter(|a| !a.is_empty())
        .collect();
    s.push_str(
        format!(
            "kernel {base}{} {}",
            index.kernel.object_path(),
            cmdline.join(" ")
        )
        .trim_end(),
    );
    s.push('\n');
    for seg in &index.segments {
        s.push_str(&format!("initrd {base}{}\n", seg.object_path()));
    }
    for initrd in &extra.initrds {
        s.push_str(&format!("initrd {initrd}\n"));
    }
    s.push_str("boot\n");
    s
}
