//! Step 3: move the root out of the initramfs into a real tmpfs and switch into it.
//!
//! Why: the kernel's initial rootfs cannot be `pivot_root`ed away, and runc pivots into every
//! container's root, so containers fail on it (`pivot_root .: invalid argument`). Like
//! LinuxKit's init, we mount a tmpfs, move every file into it (copy, then delete the original at
//! once, so peak memory grows by one file, not by the image), move the kernel filesystems
//! across, `mount --move` the tmpfs over `/`, `chroot` into it and re-exec `/init`, which also
//! drops the last mappings of the deleted initramfs copy of this binary. Fatal on failure.
//!
//! `/usr` and `/nix/store` are not copied: they stay where the kernel unpacked them and are
//! bind-mounted **read-only** into the new root, as immutable systems (Flatcar, Talos, NixOS)
//! mount them. That is most of the image (every binary and module), so the switch costs no copy
//! and no extra memory, and nothing at run time can change the image's programs. runc only needs
//! its process root to be a mount with a parent, which the tmpfs is. When segments carry
//! squashfs images (`squashfs.rs`), each is mounted under `/.diskless/lower/<segment>` and the
//! directory becomes a read-only overlay of those mounts over the initramfs's own copy; the
//! images themselves stay on the initramfs (in `/.diskless/squashfs`), held by their loop devices.

use crate::sys;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Why the root could not move into its tmpfs.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("the image unpacks to {unpacked_mib} MiB but the machine has {mem_mib} MiB of RAM")]
    TooSmall { unpacked_mib: u64, mem_mib: u64 },
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    #[error(transparent)]
    Squashfs(#[from] crate::squashfs::SquashfsError),
    /// Moving one entry of the old root: `what` is `copy`, `symlink`, `mkdir for`…
    #[error("{what} {} to {}: {err}", src.display(), dst.display())]
    Move {
        what: &'static str,
        src: std::path::PathBuf,
        dst: std::path::PathBuf,
        err: std::io::Error,
    },
}

const NEW_ROOT: &str = "/.diskless-root";
/// The kernel filesystems mounted in step 1, carried over into the new root.
const CARRIED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];
/// Image directories kept on the initramfs and bind-mounted read-only (see the module doc).
const KEPT_READ_ONLY: [&str; 2] = ["/usr", "/nix/store"];
/// Where the squashfs images arrive; left on the initramfs.
const SQUASHFS_DIR: &str = "/.diskless/squashfs";
/// The bytes left on the initramfs once the root moved out (the squashfs images and the
/// read-only `/usr`), in decimal: the check hook's memory report reads it, since the old root
/// is out of reach once the switch is done.
pub const INITRAMFS_USED: &str = "/run/diskless/initramfs-used";
/// Set in the environment of the re-executed init so it continues after the switch.
pub const SWITCHED_ENV: &str = "DISKLESS_SWITCHED";

/// Size of the tmpfs root: the image itself plus half of the RAM left beside it, so containerd's
/// layers and logs have room while processes keep the other half (the kernel's default, 50 % of
/// RAM, is too small for a large image on a small machine and needlessly large otherwise).
pub fn root_size(unpacked: u64, mem_total: u64) -> Result<u64, SwitchError> {
    const MIB: u64 = 1024 * 1024;
    if unpacked >= mem_total {
        return Err(SwitchError::TooSmall {
            unpacked_mib: unpacked / MIB,
            mem_mib: mem_total / MIB,
        });
    }
    Ok(unpacked + (mem_total - unpacked) / 2)
}

/// Switches into a tmpfs of `size` bytes; `squashfs` lists (segment, image path) in boot order.
pub fn switch(size: u64, squashfs: &[(String, String)]) -> Result<(u64, u64), SwitchError> {
    fs::create_dir_all(NEW_ROOT).map_err(sys::io("mkdir", NEW_ROOT))?;
    sys::mount(
        "tmpfs",
        NEW_ROOT,
        "tmpfs",
        0,
        &format!("mode=0755,size={size}"),
    )?;
    let root_dev = fs::symlink_metadata("/")
        .map_err(sys::io("stat", "/"))?
        .dev();
    let mut mover = Mover {
        root_dev,
        links: HashMap::new(),
        files: 0,
        bytes: 0,
    };
    mover.move_dir(Path::new("/"), Path::new(NEW_ROOT))?;
    let mut lowers = Vec::new();
    for (segment, image) in squashfs {
        let target = format!("{NEW_ROOT}/.diskless/lower/{segment}");
        crate::squashfs::mount(image, &target)?;
        lowers.push(target);
    }
    for dir in KEPT_READ_ONLY {
        // Later segments on top, the initramfs's own files at the bottom.
        let mut sources: Vec<String> = lowers
            .iter()
            .rev()
            .map(|l| format!("{l}{dir}"))
            .filter(|p| Path::new(p).is_dir())
            .collect();
        if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.dev() == root_dev) {
            sources.push(dir.to_string());
        }
        let target = format!("{NEW_ROOT}{dir}");
        match sources.as_slice() {
            [] => continue,
            [one] => {
                fs::create_dir_all(&target).map_err(sys::io("mkdir", &target))?;
                sys::bind_read_only(one, &target)?;
            }
            many => {
                fs::create_dir_all(&target).map_err(sys::io("mkdir", &target))?;
                // Only lower layers: overlayfs mounts it read-only.
                let opts = format!("lowerdir={}", many.join(":"));
                sys::mount("overlay", &target, "overlay", libc::MS_RDONLY, &opts)?;
            }
        }
    }
    record_initramfs_used();
    for dir in CARRIED {
        let target = format!("{NEW_ROOT}{dir}");
        fs::create_dir_all(&target).map_err(sys::io("mkdir", &target))?;
        sys::mount_move(dir, &target)?;
    }
    std::env::set_current_dir(NEW_ROOT).map_err(sys::io("chdir", NEW_ROOT))?;
    sys::mount_move(".", "/")?;
    sys::chroot(".")?;
    std::env::set_current_dir("/").map_err(sys::io("chdir", "/"))?;
    Ok((mover.files, mover.bytes))
}

/// Writes [`INITRAMFS_USED`] while `/` is still the initramfs and `/run` is already the tmpfs
/// the new root carries. A report, so a failure is only a missing figure.
fn record_initramfs_used() {
    if let Ok((_, bsize, blocks, bfree)) = sys::statfs("/") {
        let _ = fs::create_dir_all("/run/diskless");
        let _ = fs::write(INITRAMFS_USED, ((blocks - bfree) * bsize).to_string());
    }
}

/// Replaces this process with the copy of `/init` in the new root (same PID 1).
pub fn reexec() -> String {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/init")
        .env(SWITCHED_ENV, "1")
        .exec();
    format!("exec /init in the new root: {err}")
}

struct Mover {
    root_dev: u64,
    /// Hard links: (inode) → first new path, so they stay links instead of copies.
    links: HashMap<u64, std::path::PathBuf>,
    files: u64,
    bytes: u64,
}

impl Mover {
    /// Moves the contents of `from` (on the initramfs) into the existing directory `to`.
    fn move_dir(&mut self, from: &Path, to: &Path) -> Result<(), SwitchError> {
        let read = || sys::io("read", from.display().to_string());
        let entries = fs::read_dir(from).map_err(read())?;
        for entry in entries {
            let entry = entry.map_err(read())?;
            let src = entry.path();
            let meta =
                fs::symlink_metadata(&src).map_err(sys::io("stat", src.display().to_string()))?;
            // Other filesystems (proc, sys, dev, run, the new root itself) are not the image;
            // the read-only directories are bind-mounted instead.
            if meta.dev() != self.root_dev
                || (meta.is_dir()
                    && (KEPT_READ_ONLY.iter().any(|k| src == Path::new(k))
                        || src == Path::new(SQUASHFS_DIR)))
            {
                continue;
            }
            let dst = to.join(entry.file_name());
            self.move_one(&src, &dst, &meta)?;
        }
        Ok(())
    }

    fn move_one(&mut self, src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), SwitchError> {
        let ctx = |what: &'static str, err: std::io::Error| SwitchError::Move {
            what,
            src: src.to_owned(),
            dst: dst.to_owned(),
            err,
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            // A directory holding a mount point of the old root (e.g. `/` holding `/proc`)
            // stays; everything else is removed once emptied.
            fs::create_dir_all(dst).map_err(|e| ctx("mkdir for", e))?;
            self.move_dir(src, dst)?;
            fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(|e| ctx("chmod for", e))?;
            let _ = fs::remove_dir(src);
        } else {
            if ft.is_symlink() {
                let target = fs::read_link(src).map_err(|e| ctx("readlink", e))?;
                std::os::unix::fs::symlink(&target, dst).map_err(|e| ctx("symlink", e))?;
            } else if meta.nlink() > 1 && self.links.contains_key(&meta.ino()) {
                fs::hard_link(&self.links[&meta.ino()], dst).map_err(|e| ctx("link", e))?;
            } else if ft.is_file() {
                fs::copy(src, dst).map_err(|e| ctx("copy", e))?;
                self.bytes += meta.len();
                if meta.nlink() > 1 {
                    self.links.insert(meta.ino(), dst.to_owned());
                }
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket()
            {
                mknod(dst, meta).map_err(|e| ctx("mknod", e))?;
            }
            if meta.uid() != 0 || meta.gid() != 0 {
                std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
                    .map_err(|e| ctx("chown", e))?;
            }
            fs::remove_file(src).map_err(|e| ctx("remove after copying", e))?;
            self.files += 1;
        }
        Ok(())
    }
}

fn mknod(dst: &Path, meta: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(dst.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated path; mode and rdev come from the original node's stat.
    if unsafe { libc::mknod(p.as_ptr(), meta.mode(), meta.rdev()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_image_plus_half_the_rest() {
        const M: u64 = 1024 * 1024;
        assert_eq!(root_size(100 * M, 500 * M).unwrap(), 300 * M);
        assert!(root_size(600 * M, 500 * M)
            .unwrap_err()
            .to_string()
            .contains("600 MiB"));
    }
}
