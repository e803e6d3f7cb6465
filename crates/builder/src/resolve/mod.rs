//! plan → resolved tree: every component becomes a checked map of absolute paths to entries
//! ([`crate::tree`]), with ELF library closures, kernel modules and symlinks followed.
//!
//! One file per plan entry kind (`files`: files, directories, symlinks, generated; `binaries`;
//! `trees`; `modules`, whose closure and load order come from [`kmod`]); `checks` holds
//! the rules on names, destinations and sources; `insert` is the one place a path enters a tree;
//! `links` makes the components one image through its symlinks; `resolved` is what comes out,
//! `error` what can go wrong. This file runs them in order.

pub mod bzimage;
pub mod elf;
pub mod kmod;
pub mod modfile;

mod error;
mod resolved;

mod binaries;
mod checks;
mod files;
mod insert;
mod links;
mod modules;
mod shape;
mod trees;

pub use checks::{check_dest, check_name};
pub use error::ResolveError;
pub use resolved::{Packed, ResolvedComponent, ResolvedImage};

use crate::compress::Codec;
use crate::plan::{Algorithm, Component, Compression, Packing, Plan};
use crate::squashfs::SquashfsCodec;
use diskless_contract::image::ModuleRef;
use error::invalid;
use insert::Collector;
use kmod::ModuleTree;

/// Checks a plan against the filesystem and turns it into what the segment writer needs.
pub fn resolve(plan: &Plan) -> Result<ResolvedImage, ResolveError> {
    check_name("name", &plan.name)?;
    let codec = Codec::from_plan(&plan.compression, "compression")?;
    let squashfs = SquashfsCodec::from_plan(&plan.squashfs, "squashfs")?;
    let kmeta = checks::check_readable("kernel.image", &plan.kernel.image)?;
    if !kmeta.is_file() {
        return Err(invalid(
            "kernel.image",
            format!("{} is not a file", plan.kernel.image.display()),
        ));
    }
    bzimage::check(&plan.kernel.image).map_err(|e| invalid("kernel.image", e))?;
    let modules = match &plan.kernel.modules_dir {
        Some(dir) => Some(ModuleTree::load(dir)?),
        None => None,
    };
    checks::check_segments_and_services(plan)?;

    // Each component's modules are those earlier ones do not ship already: `loaded` is the
    // image's load order so far.
    let mut loaded = Vec::new();
    let mut components = Vec::new();
    for (i, c) in plan.components.iter().enumerate() {
        components.push(resolve_component(
            i,
            c,
            (codec, squashfs),
            modules.as_ref(),
            &mut loaded,
        )?);
    }
    check_squashfs_modules(plan, &loaded, modules.as_ref())?;
    links::merge_through_links(&mut components)?;
    shape::check_shape(&components)?;

    Ok(ResolvedImage {
        name: plan.name.clone(),
        description: plan.description.clone(),
        kernel: plan.kernel.image.clone(),
        cmdline: plan.kernel.cmdline.clone(),
        codec,
        components,
        modules: loaded,
        images: plan.images.clone(),
        node: plan.node.clone(),
        plan_sha256: crate::store::sha256_hex(plan.canonical_json().as_bytes()),
    })
}

/// One component on its own: one call per entry kind, each inserting through the conflict check.
fn resolve_component(
    index: usize,
    c: &Component,
    (default_codec, default_squashfs): (Codec, SquashfsCodec),
    modules: Option<&ModuleTree>,
    loaded: &mut Vec<ModuleRef>,
) -> Result<ResolvedComponent, ResolveError> {
    let mut col = Collector::new(index, &c.name);
    // Before any source is read: a plan error, not a filesystem one.
    let condition_path = checks::check_component_condition(&col.field("condition_path"), c)?;
    files::add_directories(&mut col, &c.directories)?;
    files::add_symlinks(&mut col, &c.symlinks)?;
    files::add_generated(&mut col, &c.generated)?;
    files::add_files(&mut col, &c.files)?;
    trees::add_trees(&mut col, &c.trees)?;
    binaries::add_binaries(&mut col, &c.binaries)?;
    modules::add_modules(&mut col, &c.modules, modules, loaded)?;
    let codec = match &c.compression {
        Some(comp) => Codec::from_plan(comp, &col.field("compression"))?,
        // The squashfs image is compressed already: zstd over it saved 0.4 % and cost the
        // kernel's unpack a decompression pass.
        None if c.packing == Packing::Squashfs => Codec::from_plan(
            &Compression {
                algorithm: Algorithm::None,
                level: None,
                window_log: None,
            },
            &col.field("compression"),
        )?,
        None => default_codec,
    };
    let packing = match (&c.squashfs, c.packing) {
        (None, Packing::Squashfs) => Packed::Squashfs(default_squashfs),
        (Some(s), Packing::Squashfs) => {
            Packed::Squashfs(SquashfsCodec::from_plan(s, &col.field("squashfs"))?)
        }
        (None, Packing::Cpio) => Packed::Cpio,
        (Some(_), Packing::Cpio) => Err(crate::squashfs::codec::CodecError::NotSquashfs {
            what: col.field("squashfs"),
        })?,
    };
    Ok(ResolvedComponent {
        name: c.name.clone(),
        codec,
        packing,
        condition_path,
        tree: col.tree,
    })
}

/// A squashfs-packed component needs the modules the init mounts it with.
fn check_squashfs_modules(
    plan: &Plan,
    loaded: &[ModuleRef],
    modules: Option<&ModuleTree>,
) -> Result<(), ResolveError> {
    let Some((i, c)) = plan
        .components
        .iter()
        .enumerate()
        .find(|(_, c)| c.packing == Packing::Squashfs)
    else {
        return Ok(());
    };
    let missing = kmod::missing(&["loop", "squashfs", "overlay"], loaded, modules);
    if missing.is_empty() {
        return Ok(());
    }
    Err(invalid(
        format!("components[{i}] ({}).packing", c.name),
        format!(
            "squashfs packing needs the kernel modules {} in the image: add them to a component's modules (or use packing \"cpio\")",
            missing.join(", ")
        ),
    ))
}
