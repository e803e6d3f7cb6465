//! The `base` segment, the same for every role (the Nix module `base.nix`): the init as
//! `/init`, busybox with every applet linked, a usr-merged layout, the directories the init
//! mounts on, and a minimal /etc.

use crate::entries::{dir, gen, link};
use crate::error::HostPlanError;
use crate::machine::Machine;
use diskless_builder::plan::{BinaryEntry, Component, FileEntry, Mode, SymlinkEntry};
use std::collections::BTreeMap;

pub fn component(machine: &Machine) -> Result<Component, HostPlanError> {
    Ok(Component {
        name: "base".into(),
        binaries: vec![BinaryEntry {
            source: machine.init.clone(),
            dest: Some("/init".into()),
        }],
        files: vec![FileEntry {
            source: "/bin/busybox".into(),
            dest: "/usr/bin/busybox".into(),
            mode: Some(Mode(0o755)),
        }],
        symlinks: [
            vec![
                link("/bin", "usr/bin"),
                link("/sbin", "usr/sbin"),
                link("/lib", "usr/lib"),
                link("/lib64", "usr/lib64"),
            ],
            busybox_links()?,
        ]
        .concat(),
        directories: vec![
            dir("/dev", 0o755),
            dir("/proc", 0o555),
            dir("/sys", 0o555),
            dir("/run", 0o755),
            dir("/tmp", 0o1777),
            dir("/root", 0o700),
            dir("/mnt", 0o755),
            dir("/var/log", 0o755),
            dir("/var/lib", 0o755),
            dir("/var/tmp", 0o1777),
        ],
        generated: etc(),
        ..Default::default()
    })
}

/// A minimal /etc: the system's name, localhost, root and nobody, name lookups from files
/// then DNS.
fn etc() -> Vec<diskless_builder::plan::GeneratedEntry> {
    vec![
        gen(
            "/etc/os-release",
            format!(
                "NAME=\"diskless\"\nID=diskless\nID_LIKE=debian\nVERSION_ID=\"{v}\"\nPRETTY_NAME=\"diskless worker {v}\"\n",
                v = env!("CARGO_PKG_VERSION")
            ),
        ),
        gen("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        gen("/etc/resolv.conf", ""),
        gen("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        gen("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        gen("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n"),
    ]
}

/// Every busybox applet as a symlink in /usr/bin or /usr/sbin (the image is usr-merged).
fn busybox_links() -> Result<Vec<SymlinkEntry>, HostPlanError> {
    let out = std::process::Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .map_err(HostPlanError::Busybox)?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut links = BTreeMap::new();
    for line in list.lines() {
        let Some(applet) = line.rsplit('/').next().filter(|a| !a.is_empty()) else {
            continue;
        };
        let sbin = line.starts_with("sbin/") || line.starts_with("usr/sbin/");
        let (path, target) = if sbin {
            (format!("/usr/sbin/{applet}"), "../bin/busybox")
        } else {
            (format!("/usr/bin/{applet}"), "busybox")
        };
        if applet != "busybox" {
            links.insert(path, target.to_string());
        }
    }
    Ok(links
        .into_iter()
        .map(|(path, target)| SymlinkEntry { path, target })
        .collect())
}
