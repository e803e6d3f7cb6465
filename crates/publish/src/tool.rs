//! Running the cluster's tools (`kubectl`, `etcdctl`, `etcdutl`) the way publish needs them:
//! standard input given, both outputs captured, the exit status judged by the caller. A tool
//! that does not start is an environment problem, told apart from one that ran and refused.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not installed, or not where the inventory says.
    #[error("cannot run {}: {cause} (install it, or give its path in the inventory)", program.display())]
    Missing {
        program: PathBuf,
        cause: std::io::Error,
    },
    /// It ran and said no; `why` is its own message.
    #[error("{what}: {why}")]
    Failed { what: String, why: String },
}

impl ToolError {
    /// Whether this machine lacks the tool (rather than the cluster refusing).
    pub fn is_environment(&self) -> bool {
        matches!(self, ToolError::Missing { .. })
    }
}

/// Runs `program args…` with `stdin`; its stdout on success, else `Failed` with `what` and
/// what `why` makes of its stderr.
pub(crate) fn run(
    program: &Path,
    args: Vec<std::ffi::OsString>,
    stdin: Vec<u8>,
    what: impl FnOnce() -> String,
    why: impl FnOnce(&str) -> String,
) -> Result<Vec<u8>, ToolError> {
    let out = duct::cmd(program, args)
        .stdin_bytes(stdin)
        .stdout_capture()
        .stderr_capture()
        .unchecked()
        .run()
        .map_err(|cause| ToolError::Missing {
            program: program.to_owned(),
            cause,
        })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            what: what(),
            why: why(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(out.stdout)
}
