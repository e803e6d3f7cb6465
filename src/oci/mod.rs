//! Container images preloaded into the image (issue 4). Placeholder until that work lands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OciCommand {}

pub fn main(cmd: &OciCommand) -> anyhow::Result<()> {
    match *cmd {}
}

/// One segment per preloaded image (see docs/image-contract.md).
pub struct ImageSegment {
    pub segment_name: String,
    pub tree: crate::resolve::Tree,
    pub contract: crate::contract::ImageRef,
}

pub fn image_segments(images: &[crate::plan::PreloadImage]) -> anyhow::Result<Vec<ImageSegment>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    anyhow::bail!("images: preloading container images is not implemented yet")
}

pub fn default_compression() -> crate::plan::Compression {
    crate::plan::Compression {
        algorithm: crate::plan::Algorithm::None,
        level: None,
        window_log: None,
    }
}
