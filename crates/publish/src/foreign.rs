//! A directory publish may take over: empty, or already a diskless boot server (it has a
//! generation record). Anything else (a hand-written `boot.ipxe`, a web root, another tool's
//! TFTP tree) is refused before a byte is written, because publish replaces `boot.ipxe`,
//! `menu.ipxe`, `<image>.ipxe` and `hosts/*.ipxe` wholesale. What a killed first publish leaves
//! (`.lock`, `.staging/`, objects named by their sha256) does not make a directory foreign:
//! publish writes the generation record before any entry.

use crate::error::PublishError;
use diskless_contract::digest::is_sha256_hex;
use std::path::Path;

/// Whether `rel` (relative to DEST) is something publish itself leaves before the first record.
fn ours(rel: &str) -> bool {
    match rel.split_once('/') {
        None => matches!(
            rel,
            ".lock" | ".staging" | "objects" | "hosts" | "generations"
        ),
        Some(("objects", name)) => is_sha256_hex(name) || name.starts_with(".tmp-"),
        Some((".staging", _)) => true,
        _ => false,
    }
}

/// The names among `rels` that publish did not write.
pub fn foreign<'a>(rels: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
    rels.into_iter().filter(|r| !ours(r)).collect()
}

/// Top-level entries of a local DEST (directories too, which the snapshot does not list) and
/// the files of its `hosts/` and `generations/`. A missing DEST has none.
pub fn local_names(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for dir in ["", "hosts", "generations", "objects"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            names.push(if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            });
        }
    }
    names.sort();
    names
}

/// The refusal, naming DEST and a few of the files at stake.
pub fn refusal(dest: &str, names: &[&String]) -> PublishError {
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("{n:?}")).collect();
    let more = if names.len() > 5 {
        format!(" and {} more", names.len() - 5)
    } else {
        String::new()
    };
    PublishError::Foreign {
        dest: dest.to_string(),
        listed: format!("{}{more}", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_publish_leaves_is_ours() {
        let hex = "ab".repeat(32);
        for r in [
            ".lock",
            ".staging",
            "objects",
            &format!("objects/{hex}"),
            ".staging/x",
        ] {
            assert!(ours(r), "{r}");
        }
        for r in [
            "boot.ipxe",
            "menu.ipxe",
            "index.html",
            "pxelinux.0",
            "hosts/52-54-00-12-34-56.ipxe",
            "objects/kernel",
            "generations/README",
            "images",
        ] {
            assert!(!ours(r), "{r}");
        }
    }
}
