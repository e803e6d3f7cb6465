//! What `run`, `check` and the scenarios' entry points return when they fail, by whose move it
//! is to fix: the node ([`Error::CheckFailed`]), the machine this runs on
//! ([`Error::Environment`]), the caller's input ([`Error::BadInput`]), or none of those, the lab
//! itself ([`Error::Lab`]: a daemon that would not start, a publish that failed, I/O). A leaf:
//! every layer raises these; the binary maps them to exit codes.
//!
//! Inside the crate the same type travels, with context added on the way up
//! ([`Context::context`], as a file system call names its path): a failure keeps its kind
//! (environment, input, lab) and gains the words that say where it happened.

use std::fmt::Display;

/// A failed run or check.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The machine booted but did not do what the check requires; `failures` says what, each
    /// in words (the report printed before says more).
    #[error("{what} failed: {}", failures.join("; "))]
    CheckFailed {
        /// `check`, `control-plane check`.
        what: &'static str,
        failures: Vec<String>,
    },
    /// Something this machine lacks: QEMU, its iPXE ROM, OVMF, busybox, the check hook, the
    /// pinned Kubernetes stack, KVM. The message says what to install or build.
    #[error("{message}")]
    Environment { message: String },
    /// What was given cannot be booted: OUT is not a build output or a boot server directory,
    /// its index or objects are missing, an option is out of range. The message says which.
    #[error("{message}")]
    BadInput { message: String },
    /// The lab failed around the machine (a control plane that would not start, a publish, a
    /// file that could not be written), with its context.
    #[error("{message}")]
    Lab { message: String },
    /// The run was stopped (QEMU exited with an error, or `--timeout` passed).
    #[error("{message}")]
    Stopped { message: String },
}

impl Error {
    pub fn environment(message: impl Into<String>) -> Error {
        Error::Environment {
            message: message.into(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::BadInput {
            message: message.into(),
        }
    }

    pub fn lab(message: impl Into<String>) -> Error {
        Error::Lab {
            message: message.into(),
        }
    }

    /// The same kind of error, its message prefixed with `what: ` (a check's failures are
    /// left as they are: they say what they are).
    pub fn context(self, what: impl Display) -> Error {
        let prefix = |message: String| format!("{what}: {message}");
        match self {
            Error::CheckFailed { .. } => self,
            Error::Environment { message } => Error::Environment {
                message: prefix(message),
            },
            Error::BadInput { message } => Error::BadInput {
                message: prefix(message),
            },
            Error::Lab { message } => Error::Lab {
                message: prefix(message),
            },
            Error::Stopped { message } => Error::Stopped {
                message: prefix(message),
            },
        }
    }

    /// Any other error (I/O, JSON, another crate's), as a lab failure; this crate's own keeps
    /// its kind. The alternate form (`{:#}`) shows an `anyhow` chain whole.
    pub fn from_display<E: Display + 'static>(e: E) -> Error {
        match (&e as &dyn std::any::Any).downcast_ref::<Error>() {
            Some(own) => own.clone(),
            None => Error::lab(format!("{e:#}")),
        }
    }
}

/// Context for any failure: `what` says what was being done (`cannot read FILE`).
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Display + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| Error::from_display(e).context(what))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::from_display(e).context(what()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::lab(what.to_string()))
    }
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| Error::lab(what().to_string()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::lab(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::lab(e.to_string())
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Error {
        Error::lab(format!("cannot make a certificate: {e}"))
    }
}

/// Returns a [`Error::Lab`] made like `format!`.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::lab(format!($($arg)*)))
    };
}
pub(crate) use bail;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind() {
        let e = Err::<(), _>(Error::environment(
            "busybox missing (apt-get install busybox)",
        ))
        .context("cannot start the guest")
        .unwrap_err();
        match e {
            Error::Environment { message } => assert_eq!(
                message,
                "cannot start the guest: busybox missing (apt-get install busybox)"
            ),
            other => panic!("{other:?}"),
        }
        let io = Err::<(), _>(std::io::Error::other("disk full"))
            .context("cannot write x")
            .unwrap_err();
        assert!(matches!(io, Error::Lab { ref message } if message == "cannot write x: disk full"));
    }
}
