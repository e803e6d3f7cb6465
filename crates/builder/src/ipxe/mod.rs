//! The iPXE entry for one image: `kernel`, one `initrd` line per segment (iPXE concatenates them
//! and pads each to 4 bytes, which the kernel's reader needs), the command line, `boot`. URLs are
//! relative to a base so the same output works from TFTP, HTTP or a subdirectory; relative URLs
//! are resolved by iPXE against the script's own URL. Every string written here is a
//! [`words`] type, checked where it entered: nothing else can reach a script.

use crate::index::Index;
use crate::words::{BaseUrl, Word, Words};

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
    // The initrd files, in load order: the image's segments, or its single concatenated
    // initrd when it has one, then the extra ones.
    let image_initrds: Vec<String> = match &index.initrd {
        Some(single) => vec![format!("{base}{}", single.object_path())],
        None => index
            .segments
            .iter()
            .map(|seg| format!("{base}{}", seg.object_path()))
            .collect(),
    };
    let initrds: Vec<&str> = image_initrds
        .iter()
        .map(String::as_str)
        .chain(extra.initrds.iter().map(|w| w.as_str()))
        .collect();
    // UEFI: Debian 12's ipxe.efi (2019) boots a bzImage through its EFI stub, which loads only
    // the initrds the command line names (`initrd=<image name>`, iPXE names an image by its
    // URL's last part) and puts them back to back without padding. The single initrd is
    // padded inside, so an image that has one names it and the extras; segments one by one
    // would lose files at an unaligned boundary, so they are not named. BIOS kernels ignore
    // `initrd=` without an address.
    let efi_names: Vec<String> = match &index.initrd {
        Some(_) => initrds
            .iter()
            .map(|u| format!("initrd={}", u.rsplit('/').next().unwrap_or(u)))
            .collect(),
        None => Vec::new(),
    };
    let cmdline: Vec<&str> = efi_names
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(index.cmdline.as_str()))
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
    for initrd in &initrds {
        s.push_str(&format!("initrd {initrd}\n"));
    }
    s.push_str("boot\n");
    s
}
