//! What the host plan takes from this machine before any component is made: the Debian
//! packages it copies from, the kernel, the node's init binary. Every missing package is named
//! at once, with what to `apt-get install`.

use crate::error::{HostPlanError, MissingFile};
use crate::options::{HostOptions, Runtime};
use std::path::{Path, PathBuf};

/// The kernel and the init the plan boots.
#[derive(Debug, Clone)]
pub struct Machine {
    pub kernel: PathBuf,
    /// `/lib/modules/<version>` of [`Machine::kernel`].
    pub modules_dir: PathBuf,
    pub init: PathBuf,
}

/// Paths of the host packages every reference image needs, with the package to install.
const HOST_FILES: &[(&str, &str)] = &[
    ("/bin/busybox", "busybox-static"),
    ("/usr/sbin/xtables-legacy-multi", "iptables"),
    ("/usr/lib/x86_64-linux-gnu/xtables", "iptables"),
];

/// With `Runtime::Debian`, also these.
const DEBIAN_RUNTIME_FILES: &[(&str, &str)] = &[
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/bin/ctr", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
];

/// dropbear, for [`HostOptions::ssh`].
const SSH_FILES: &[(&str, &str)] = &[("/usr/sbin/dropbear", "dropbear-bin")];

impl Machine {
    /// Checks the packages, then finds the kernel (`--kernel` or the newest installed) and the
    /// init (`--init` or `diskless-init` beside this executable).
    pub fn find(opts: &HostOptions) -> Result<Machine, HostPlanError> {
        check_packages(opts)?;
        let (kernel, modules_dir) = match &opts.kernel {
            Some(k) => {
                let version = k
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("vmlinuz-"))
                    .ok_or_else(|| HostPlanError::KernelName(k.clone()))?;
                (k.clone(), PathBuf::from("/lib/modules").join(version))
            }
            None => newest_kernel()?,
        };
        let init = match &opts.init {
            Some(p) => p.clone(),
            None => default_init()?,
        };
        Ok(Machine {
            kernel,
            modules_dir,
            init,
        })
    }
}

fn check_packages(opts: &HostOptions) -> Result<(), HostPlanError> {
    let debian = match opts.runtime {
        Runtime::Debian => DEBIAN_RUNTIME_FILES,
        Runtime::Stack => &[],
    };
    let ssh = if opts.ssh { SSH_FILES } else { &[] };
    let missing: Vec<MissingFile> = HOST_FILES
        .iter()
        .chain(debian)
        .chain(ssh)
        .filter(|(p, _)| !Path::new(p).exists())
        .map(|&(path, package)| MissingFile { path, package })
        .collect();
    if !missing.is_empty() {
        return Err(HostPlanError::MissingPackages(missing));
    }
    Ok(())
}

/// The newest `/boot/vmlinuz-<version>` whose `/lib/modules/<version>` has a `modules.dep`.
fn newest_kernel() -> Result<(PathBuf, PathBuf), HostPlanError> {
    let mut found = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/boot") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(version) = name.strip_prefix("vmlinuz-") {
                let modules = PathBuf::from("/lib/modules").join(version);
                if modules.join("modules.dep").exists() {
                    found.push((e.path(), modules));
                }
            }
        }
    }
    found.sort();
    found.pop().ok_or(HostPlanError::NoKernel)
}

fn default_init() -> Result<PathBuf, HostPlanError> {
    let exe = std::env::current_exe().map_err(HostPlanError::CurrentExe)?;
    let init = exe.with_file_name("diskless-init");
    if !init.exists() {
        return Err(HostPlanError::NoInit(init));
    }
    Ok(init)
}
