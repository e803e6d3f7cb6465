//! What can go wrong at a boot server, over either transport. Messages name DEST (its path or
//! URL) and what to do; an underlying error is part of the message (not a `source`), so the
//! CLI prints each once.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DestError {
    /// `--to ssh://…` that cannot be used.
    #[error("--to {url}: {why}; expected ssh://[user@]host[:port]/absolute/path")]
    SshUrl { url: String, why: String },
    #[error("DISKLESS_SSH is set but empty: unset it or give an ssh command")]
    EmptySshCommand,
    /// The ssh program could not be started: an environment problem.
    #[error("{url}: cannot run {program:?}: {cause} (install an ssh client, or name one in DISKLESS_SSH)")]
    SshProgram {
        url: String,
        program: String,
        cause: std::io::Error,
    },
    /// ssh itself failed (exit 255): the server did not let us in.
    #[error(
        "cannot reach {url} over ssh: {stderr} (check the host, port, user and key; \
         DISKLESS_SSH overrides the ssh command)"
    )]
    Unreachable { url: String, stderr: String },
    /// A script on the server failed.
    #[error("{url}: {what} failed: {stderr}")]
    Remote {
        url: String,
        what: String,
        stderr: String,
    },
    /// The server answered with something we cannot read.
    #[error("{url}: {what}")]
    Garbled { url: String, what: String },
    #[error("{what} does not hash to its name: the build output is damaged; rebuild it")]
    Damaged { what: String },
    #[error("{} changed while being copied; publish again", path.display())]
    Changed { path: PathBuf },
    #[error("{} does not exist (or is not a directory): give the boot server directory `diskless publish` wrote", path.display())]
    NotABootServer { path: PathBuf },
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot write to {}: {cause}; is it writable?", path.display())]
    NotWritable {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Any other I/O failure, with what was being done.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl DestError {
    /// Whether the machine running publish lacks something (an ssh client), rather than the
    /// input or the server being wrong.
    pub fn is_environment(&self) -> bool {
        matches!(self, DestError::SshProgram { .. })
    }
}

/// For `map_err`: an I/O error while doing `context`.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DestError {
    let context = context.into();
    move |cause| DestError::Io { context, cause }
}
