//! The iPXE entry for one image: `kernel`, one `initrd` line per segment (iPXE concatenates them
//! and pads each to 4 bytes, which the kernel's reader needs), the command line, `boot`. URLs are
//! relative to a base so the same output works from TFTP, HTTP or a subdirectory; relative URLs
//! are resolved by iPXE against the script's own URL.

use crate::index::Index;

/// The object digests an iPXE script refers to (`…objects/<sha256>` words), for checks that every
/// entry points at stored objects.
pub fn referenced_objects(script: &str) -> impl Iterator<Item = &str> {
    script
        .split_whitespace()
        .filter_map(|w| w.find("objects/").map(|pos| &w[pos + "objects/".len()..]))
}

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

/// `boot.ipxe`, the entry the DHCP server hands out: the machine's own entry when one exists,
/// else the default image, else the menu. Uses only commands the old iPXE builds in NIC ROMs
/// have (`chain`, `goto`, `${mac:hexhyp}`).
pub fn boot(default_image: Option<&str>) -> String {
    let fallback = match default_image {
        Some(image) => format!("chain --autofree {image}.ipxe || chain --autofree menu.ipxe\n"),
        None => "chain --autofree menu.ipxe\n".to_string(),
    };
    format!(
        "#!ipxe\n# diskless boot entry: hosts/<mac>.ipxe for known machines, else the default.\n\
         echo diskless: looking for hosts/${{mac:hexhyp}}.ipxe\n\
         chain --autofree hosts/${{mac:hexhyp}}.ipxe || goto fallback\n\
         :fallback\n{fallback}\
         echo diskless: no entry could be loaded\nshell\n"
    )
}

/// `menu.ipxe`: every published image with its description, publish date and id.
pub fn menu(g: &crate::publish::Generation) -> String {
    let mut s = String::from("#!ipxe\nmenu diskless images\nitem --gap Images:\n");
    for (name, img) in &g.images {
        s.push_str(&format!(
            "item {name} {name}  {}  ({}, id {})\n",
            img.description,
            crate::publish::format_utc(img.published_at),
            &img.index[..12]
        ));
    }
    let default = g
        .default_image
        .clone()
        .or_else(|| g.images.keys().next().cloned())
        .unwrap_or_default();
    s.push_str("item --gap Tools:\nitem shell iPXE shell\n");
    s.push_str(&format!(
        "choose --timeout {} --default {default} target || goto shell\n",
        g.menu_timeout * 1000
    ));
    s.push_str("iseq ${target} shell && goto shell ||\nchain --autofree ${target}.ipxe || goto shell\n:shell\nshell\n");
    s
}
