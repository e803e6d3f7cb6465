//! The resolved plan: what the segment writer and the index need, every check passed and every
//! default applied. The plan is what users write (`crate::plan`); this is what the builder uses.

use crate::compress::Codec;
use crate::plan::{Node, PreloadImage};
use crate::squashfs::SquashfsCodec;
use crate::tree::Tree;
use crate::words::Words;
use diskless_contract::image::ModuleRef;
use std::path::PathBuf;

/// A plan after every check: what the segment writer and the index need, nothing else.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub description: Words,
    pub kernel: PathBuf,
    pub cmdline: Words,
    pub codec: Codec,
    pub components: Vec<ResolvedComponent>,
    pub modules: Vec<ModuleRef>,
    pub images: Vec<PreloadImage>,
    pub node: Node,
    pub plan_sha256: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedComponent {
    pub name: String,
    pub codec: Codec,
    pub packing: Packed,
    /// The plan's `condition_path`, checked: only on a squashfs-packed component.
    pub condition_path: Option<String>,
    pub tree: Tree,
}

/// How a resolved component's files travel: only a squashfs-packed one has a block codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    Cpio,
    Squashfs(SquashfsCodec),
}
