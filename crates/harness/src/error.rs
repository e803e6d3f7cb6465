//! What `run`, `check` and the scenarios' entry points return when they fail, by whose move it
//! is to fix: the node ([`Error::CheckFailed`]), the machine this runs on
//! ([`Error::Environment`]), the caller's input ([`Error::BadInput`]), or none of those, the lab
//! itself ([`Error::Lab`]: a daemon that would not start, a publish that failed, I/O). A leaf:
//! every layer raises these; the binary maps them to exit codes.
//!
//! Inside the crate, modules still pass `anyhow::Error` with context; the places that know a
//! failure is the environment's or the input's raise the typed variant into it, and
//! [`Error::from_anyhow`] finds it again at the boundary, with the whole context chain as its
//! message.

/// A failed run or check.
#[derive(Debug, thiserror::Error)]
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

    /// The typed error somewhere in `e`'s chain, its message the whole chain; else
    /// [`Error::Lab`].
    pub fn from_anyhow(e: anyhow::Error) -> Error {
        let message = format!("{e:#}");
        match e.chain().find_map(|c| c.downcast_ref::<Error>()) {
            Some(Error::CheckFailed { what, failures }) => Error::CheckFailed {
                what,
                failures: failures.clone(),
            },
            Some(Error::Environment { .. }) => Error::Environment { message },
            Some(Error::BadInput { .. }) => Error::BadInput { message },
            Some(Error::Stopped { .. }) => Error::Stopped { message },
            Some(Error::Lab { .. }) | None => match e.downcast::<Error>() {
                Ok(typed) => typed,
                Err(_) => Error::Lab { message },
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_typed_cause_is_found_under_context() {
        let e = Err::<(), _>(Error::environment(
            "busybox missing (apt-get install busybox)",
        ))
        .context("cannot start the guest")
        .unwrap_err();
        match Error::from_anyhow(e) {
            Error::Environment { message } => assert_eq!(
                message,
                "cannot start the guest: busybox missing (apt-get install busybox)"
            ),
            other => panic!("{other:?}"),
        }
        let plain = Error::from_anyhow(anyhow::anyhow!("etcd exited"));
        assert!(matches!(plain, Error::Lab { .. }));
    }
}
