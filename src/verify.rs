//! (in progress)
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn print(&self) {}
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

pub fn verify(_out: &Path) -> anyhow::Result<VerifyReport> {
    anyhow::bail!("not implemented yet")
}
