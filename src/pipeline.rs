//! (in progress) Runs the build pipeline.
use crate::plan::Plan;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Args, Clone)]
pub struct BuildOptions {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {}

impl BuildReport {
    pub fn print_summary(&self) {}
}

pub fn build(_plan: &Plan, _options: &BuildOptions) -> anyhow::Result<BuildReport> {
    anyhow::bail!("not implemented yet")
}

pub fn write_atomic(_path: &Path, _bytes: &[u8]) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
