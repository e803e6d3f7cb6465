//! Kernel modules: [`super::kmod`] picks the files and the load order; here they enter the tree,
//! with the `modules.dep` that lets `modprobe` work inside the image.

use super::checks::check_readable;
use super::error::{invalid, ResolveError};
use super::insert::Collector;
use super::kmod::ModuleTree;
use super::modfile::{self, Compression};
use crate::tree::{Content, Entry, EntryKind};
use diskless_contract::image::ModuleRef;
use std::sync::Arc;

/// `loaded` is the image's load order so far; this component's new modules join it.
pub(super) fn add_modules(
    col: &mut Collector,
    names: &[String],
    tree: Option<&ModuleTree>,
    loaded: &mut Vec<ModuleRef>,
) -> Result<(), ResolveError> {
    if names.is_empty() {
        return Ok(());
    }
    let Some(tree) = tree else {
        return Err(invalid(
            col.field("modules"),
            "kernel modules are listed but kernel.modules_dir is not set",
        ));
    };
    let shipment = tree.ship(&col.field("modules"), names, loaded)?;
    for m in shipment.files {
        let origin = col.origin(&format!("modules {}", m.name));
        let meta = check_readable(&origin, &m.source)?;
        let content = match m.compression {
            Compression::None => Content::Path {
                path: m.source,
                size: meta.len(),
            },
            // Decompressed here, once: the init loads plain ELF objects (`modfile.rs`).
            _ => Content::Bytes(Arc::new(
                modfile::read(&m.source).map_err(|why| invalid(col.field("modules"), why))?,
            )),
        };
        col.insert(
            m.dest,
            Entry {
                kind: EntryKind::File(content),
                mode: 0o644,
                origin,
            },
        )?;
    }
    col.insert(
        shipment.dep_path,
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(shipment.dep.into_bytes()))),
            mode: 0o644,
            origin: col.origin("modules (generated modules.dep)"),
        },
    )
}
