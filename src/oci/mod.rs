//! Container images preloaded into the image (issue 4). Placeholder until that work lands.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OciCommand {}

pub fn main(cmd: &OciCommand) -> anyhow::Result<()> {
    match *cmd {}
}
