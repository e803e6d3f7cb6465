//! (in progress)
use clap::Args;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Args, Clone)]
pub struct InspectArgs {}

#[derive(Debug, Serialize)]
pub struct InspectReport {}

impl InspectReport {
    pub fn print(&self) {}
}

pub fn inspect(_out: &Path, _args: &InspectArgs) -> anyhow::Result<InspectReport> {
    anyhow::bail!("not implemented yet")
}
