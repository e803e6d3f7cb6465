//! Boots built images in QEMU the way a lab machine does (`diskless run`, `diskless check`).
//! Owned by the node work (issue 3); this is a placeholder until it lands.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Output directory of `diskless build`.
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output directory of `diskless build`.
    pub out: PathBuf,
}

pub fn run(_args: &RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("diskless run is not implemented yet")
}

pub fn check(_args: &CheckArgs) -> anyhow::Result<()> {
    anyhow::bail!("diskless check is not implemented yet")
}
