//! What can stop the host plan. Most of it is the machine, not the request: a Debian package,
//! the kernel, the init binary or the pinned stack is missing. [`HostPlanError::is_environment`]
//! tells those apart, so that the command line can give them their own exit code.

use diskless_kube::stack::StackError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostPlanError {
    /// Host files the plan copies, each with the Debian package that has it.
    #[error(
        "the host reference worker needs Debian packages that are missing: {}",
        missing_list(.0)
    )]
    MissingPackages(Vec<MissingFile>),
    #[error(
        "no kernel found: need /boot/vmlinuz-<version> with /lib/modules/<version>/modules.dep; \
         apt-get install linux-image-amd64, or pass --kernel"
    )]
    NoKernel,
    #[error("--kernel {}: expected a file named vmlinuz-<version>", .0.display())]
    KernelName(PathBuf),
    #[error(
        "cannot find this executable's path (to find diskless-init beside it): pass --init PATH"
    )]
    CurrentExe(#[source] std::io::Error),
    #[error("{} not found: build it (`cargo build --bins`) or pass --init PATH", .0.display())]
    NoInit(PathBuf),
    #[error("cannot run /bin/busybox --list-full")]
    Busybox(#[source] std::io::Error),
    #[error("kubelet {} is not a file (from --kubelet or $KUBELET)", .0.display())]
    KubeletNotAFile(PathBuf),
    /// A binary of the pinned stack that no flag replaces.
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(
        "the worker's kubelet comes from the pinned stack; or pass --kubelet PATH, or --no-kubelet for a containerd-only worker"
    )]
    StackKubelet(#[source] StackError),
    #[error("the control plane's {name} comes from the pinned stack (scripts/build-stack)")]
    StackControlPlane {
        name: String,
        #[source]
        source: StackError,
    },
}

/// A host file the plan needs, and the package to `apt-get install` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFile {
    pub path: &'static str,
    pub package: &'static str,
}

fn missing_list(missing: &[MissingFile]) -> String {
    missing
        .iter()
        .map(|m| format!("{} (apt-get install {})", m.path, m.package))
        .collect::<Vec<_>>()
        .join(", ")
}

impl HostPlanError {
    /// True when the machine lacks something (a package, the kernel, the init, the stack),
    /// false when the request itself is wrong (a `--kernel` or `--kubelet` that cannot be used).
    pub fn is_environment(&self) -> bool {
        match self {
            HostPlanError::KernelName(_) | HostPlanError::KubeletNotAFile(_) => false,
            HostPlanError::MissingPackages(_)
            | HostPlanError::NoKernel
            | HostPlanError::CurrentExe(_)
            | HostPlanError::NoInit(_)
            | HostPlanError::Busybox(_)
            | HostPlanError::Stack(_)
            | HostPlanError::StackKubelet(_)
            | HostPlanError::StackControlPlane { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_packages_name_what_to_install_and_count_as_environment() {
        let e = HostPlanError::MissingPackages(vec![
            MissingFile {
                path: "/bin/busybox",
                package: "busybox-static",
            },
            MissingFile {
                path: "/usr/sbin/runc",
                package: "runc",
            },
        ]);
        assert_eq!(
            e.to_string(),
            "the host reference worker needs Debian packages that are missing: \
             /bin/busybox (apt-get install busybox-static), /usr/sbin/runc (apt-get install runc)"
        );
        assert!(e.is_environment());
        assert!(HostPlanError::StackKubelet(StackError::NoHome).is_environment());
        assert!(!HostPlanError::KubeletNotAFile("/x".into()).is_environment());
        assert!(!HostPlanError::KernelName("/boot/x".into()).is_environment());
    }
}
