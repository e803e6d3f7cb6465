//! (in progress) Resolves the reference worker plan from this machine's Debian packages.
use crate::plan::Plan;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args, Clone, Default)]
pub struct HostArgs {
    /// kubelet binary to include (Debian packages none).
    #[arg(long, env = "KUBELET")]
    pub kubelet: Option<PathBuf>,
}

pub fn host_plan(_args: &HostArgs) -> anyhow::Result<(Plan, Vec<String>)> {
    anyhow::bail!("not implemented yet")
}
