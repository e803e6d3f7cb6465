//! Step 1: the kernel filesystems every later step needs. Fatal on failure: without /proc and
//! /dev nothing else can work.

use crate::sys::{io, mount, SysError};

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

pub fn mount_all() -> Result<(), SysError> {
    for dir in ["/proc", "/sys", "/dev", "/run"] {
        std::fs::create_dir_all(dir).map_err(io("mkdir", dir))?;
    }
    mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, "")?;
    mount("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, "")?;
    mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755")?;
    // /run holds sockets and state only: a small cap keeps a runaway writer from eating RAM.
    mount(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755,size=64m",
    )?;
    mount(
        "cgroup2",
        "/sys/fs/cgroup",
        "cgroup2",
        NOSUID_NODEV_NOEXEC,
        "",
    )?;
    for dir in ["/dev/pts", "/dev/shm"] {
        std::fs::create_dir_all(dir).map_err(io("mkdir", dir))?;
    }
    mount(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "gid=5,mode=0620,ptmxmode=0666",
    )?;
    mount(
        "shm",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    Ok(())
}

/// The kernel gives PID 1 `/dev/console` as stdio only if the initramfs has that device node;
/// a builder-made image need not, so reopen it from devtmpfs.
pub fn open_console() {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors; `f` stays open for the call.
            unsafe { libc::dup2(f.as_raw_fd(), fd) };
        }
    }
}
