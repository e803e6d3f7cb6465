//! The check hook travels only with images being checked: `diskless check` packs the
//! `diskless-check` binary (built beside `diskless`) into a segment of its own at
//! [`CHECK_HOOK`], served as one more `initrd` after the image's (and the node's) segments.
//! The init starts it when the command line says `diskless.check=`.

use crate::error::Context;
use diskless_builder::compress::Codec;
use diskless_builder::plan::Algorithm;
use diskless_builder::tree::{Content, Entry, EntryKind, Tree};
use diskless_contract::console::CHECK_HOOK;
use std::path::{Path, PathBuf};

/// Where the segment is served, relative to the boot directory's root.
pub const SEGMENT: &str = "diskless-check.cpio.zst";

/// `diskless-check` beside this executable (as Cargo and the Nix package install them).
pub fn default_binary() -> crate::error::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    Ok(exe.with_file_name("diskless-check"))
}

/// The compressed cpio holding `binary` at [`CHECK_HOOK`].
pub fn segment(binary: &Path) -> crate::error::Result<Vec<u8>> {
    let meta = std::fs::metadata(binary).map_err(|e| {
        crate::error::Error::environment(format!(
            "the check hook {} is missing ({e}): build it (`cargo build --workspace --bins`) or pass --hook PATH",
            binary.display()
        ))
    })?;
    let mut tree = Tree::default();
    tree.entries.insert(
        CHECK_HOOK.to_string(),
        Entry {
            kind: EntryKind::File(Content::Path {
                path: binary.to_owned(),
                size: meta.len(),
            }),
            mode: 0o755,
            origin: "check hook".into(),
        },
    );
    let seg = diskless_builder::segment::write("check", &tree, 0)
        .context("cannot write the check hook's segment")?;
    let codec = Codec {
        algorithm: Algorithm::Zstd,
        level: 3,
        window_log: 0,
    };
    codec
        .compress("check", &seg.cpio, 2)
        .context("cannot compress the check hook's segment")
}
