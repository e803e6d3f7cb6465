//! Exit codes: what kind of failure ended a command, so that a script, a CI job or a supervisor
//! can tell input to fix from a node that did not come up and from a machine that lacks
//! something, without reading the message. The libraries say which kind their errors are
//! (`is_environment()`, the harness's `Error::CheckFailed`); this is the one place that turns
//! that into a number.

use std::process::ExitCode;

/// `diskless --help`'s last paragraph: the codes below, for people.
pub const CODES_HELP: &str = "\
Exit status:
  0  success
  1  bad input: a plan, inventory, image archive, output directory or option that cannot be
     used (the message names the file, field or path and what to do), or another failure
  2  usage: an unknown command, flag or malformed argument
  3  a failed check: `check` saw the node miss a stage or a check, `verify` found a problem
  4  an environment problem: this machine lacks what the command needs (QEMU, OVMF, KVM, the
     pinned Kubernetes stack, a Debian package, dnsmasq, nginx, ssh); the message says what to
     install";

/// Why a command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Input = 1,
    Check = 3,
    Environment = 4,
}

impl From<Failure> for ExitCode {
    fn from(f: Failure) -> ExitCode {
        ExitCode::from(f as u8)
    }
}

/// A check found the node (or the output) wanting: carried to `main` as this, so that it
/// leaves with [`Failure::Check`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// The kind of the first cause in the chain that says what it is; bad input otherwise (every
/// library error names the file, field or path at fault).
pub fn classify(e: &anyhow::Error) -> Failure {
    for cause in e.chain() {
        if cause.downcast_ref::<CheckFailed>().is_some() {
            return Failure::Check;
        }
        if let Some(f) = harness(cause) {
            return f;
        }
        if environment(cause) {
            return Failure::Environment;
        }
    }
    Failure::Input
}

/// The harness says whose move it is itself.
fn harness(cause: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    match cause.downcast_ref::<diskless_harness::Error>()? {
        diskless_harness::Error::CheckFailed { .. } => Some(Failure::Check),
        diskless_harness::Error::Environment { .. } => Some(Failure::Environment),
        _ => Some(Failure::Input),
    }
}

/// Whether a library error says this machine lacks something.
fn environment(cause: &(dyn std::error::Error + 'static)) -> bool {
    macro_rules! any_environment {
        ($($t:ty),+ $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$t>() {
                return e.is_environment();
            })+
        };
    }
    any_environment!(
        diskless_kube::stack::StackError,
        diskless_hostplan::HostPlanError,
        diskless_publish::PublishError,
        diskless_serve::ServeError,
        diskless_oci::ArchiveError,
        diskless_oci::IngestError,
        diskless_oci::PreloadError,
        diskless_oci::ReferenceError,
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_anywhere_in_the_chain() {
        let plain = anyhow::anyhow!("plan.json: field `kernel`: missing");
        assert_eq!(classify(&plain), Failure::Input);
        let check = anyhow::Error::new(CheckFailed("2 problem(s) in out".into())).context("verify");
        assert_eq!(classify(&check), Failure::Check);
        let stack = diskless_kube::stack::binary("no-such-binary-in-any-stack")
            .map(|_| ())
            .map_err(anyhow::Error::new)
            .map_err(|e| e.context("plan --host"));
        if let Err(e) = stack {
            assert_eq!(classify(&e), Failure::Environment, "{e:#}");
        }
        let harness = anyhow::Error::new(diskless_harness::Error::CheckFailed {
            what: "check",
            failures: vec!["stage kubelet missing".into()],
        });
        assert_eq!(classify(&harness), Failure::Check);
        let qemu = anyhow::Error::new(diskless_harness::Error::environment("install qemu"));
        assert_eq!(classify(&qemu), Failure::Environment);
    }

    #[test]
    fn help_lists_every_code() {
        for code in [0, 1, 2, Failure::Check as u8, Failure::Environment as u8] {
            assert!(CODES_HELP.contains(&format!("\n  {code}  ")), "{code}");
        }
    }
}
