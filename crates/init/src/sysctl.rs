//! Step 4b: sysctls and cgroup v2 controllers from the contract. Not fatal: each failure is
//! named on the console (a sysctl of a module that did not load, a controller the kernel lacks)
//! and the rest are still applied.

use std::collections::BTreeMap;

/// What could not be set; each entry names the key (or controller) and the kernel's answer.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("could not set {}", .0.join(", "))]
    Sysctls(Vec<String>),
    #[error("could not enable in {CONTROLLERS}: {}", .0.join(", "))]
    Controllers(Vec<String>),
}

const CONTROLLERS: &str = "/sys/fs/cgroup/cgroup.subtree_control";

/// `net.ipv4.ip_forward` → `/proc/sys/net/ipv4/ip_forward`.
pub fn sysctl_path(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

pub fn apply_sysctls(sysctls: &BTreeMap<String, String>) -> Result<usize, SysctlError> {
    let mut errors = Vec::new();
    for (k, v) in sysctls {
        if let Err(e) = std::fs::write(sysctl_path(k), v) {
            errors.push(format!("{k}={v} ({e})"));
        }
    }
    if errors.is_empty() {
        Ok(sysctls.len())
    } else {
        Err(SysctlError::Sysctls(errors))
    }
}

/// Writes `+<controller>` for each into the root `cgroup.subtree_control`, one at a time so
/// one unknown controller does not hide the others.
pub fn enable_controllers(controllers: &[String]) -> Result<usize, SysctlError> {
    let mut errors = Vec::new();
    for c in controllers {
        if let Err(e) = std::fs::write(CONTROLLERS, format!("+{c}")) {
            errors.push(format!("{c} ({e})"));
        }
    }
    if errors.is_empty() {
        Ok(controllers.len())
    } else {
        Err(SysctlError::Controllers(errors))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dots_become_slashes() {
        assert_eq!(
            super::sysctl_path("net.bridge.bridge-nf-call-iptables"),
            "/proc/sys/net/bridge/bridge-nf-call-iptables"
        );
    }
}
