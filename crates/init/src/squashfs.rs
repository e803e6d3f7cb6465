//! Step 3a: squashfs-packed segments. The builder may ship a segment's `/usr` and `/nix/store`
//! files as one squashfs image instead of cpio entries (docs/image-contract.md): the kernel then
//! copies a compressed file instead of unpacking every byte, and the decompressed pages are
//! page cache the kernel can drop and re-read. Here each image is attached to a loop device
//! (read-only, autoclear) and mounted read-only; `switchroot` then stacks those mounts and the
//! initramfs's own `/usr` into one read-only overlay. The modules this needs (`loop`,
//! `squashfs`, `overlay`) are loaded first, ahead of step 4.

use crate::sys;
use diskless_contract::image::{ImageContract, ModuleRef};
use std::os::fd::AsRawFd;

// From <linux/loop.h>; the libc crate has no loop-device bindings.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The modules needed to mount squashfs images, with what they need first.
pub fn modules(contract: &ImageContract) -> Vec<ModuleRef> {
    crate::modules::closure(&contract.modules, &["loop", "squashfs", "overlay"])
}

/// Attaches `image` to a free loop device, read-only. Returns the device and its open file:
/// with autoclear the device detaches on its last close, so the caller keeps it open until the
/// mount holds the device (which then detaches when unmounted).
fn attach(image: &str) -> Result<(String, std::fs::File), String> {
    let file = std::fs::File::open(image).map_err(|e| format!("open {image}: {e}"))?;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| format!("open /dev/loop-control: {e} (is the loop module loaded?)"))?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(format!(
            "no free loop device: {}",
            std::io::Error::last_os_error()
        ));
    }
    let dev = format!("/dev/loop{n}");
    let lo = std::fs::OpenOptions::new()
        .read(true)
        .open(&dev)
        .map_err(|e| format!("open {dev}: {e}"))?;
    // SAFETY: an all-zero loop_config is valid (no offset, no limit, no encryption).
    let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
    cfg.fd = file.as_raw_fd() as u32;
    cfg.info.flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    let name = image.as_bytes();
    let len = name.len().min(63);
    cfg.info.file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: LOOP_CONFIGURE reads a struct loop_config that lives across the call; the
    // backing fd stays open until the ioctl returns (the kernel takes its own reference).
    if unsafe { libc::ioctl(lo.as_raw_fd(), LOOP_CONFIGURE, &cfg) } != 0 {
        return Err(format!(
            "attach {image} to {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((dev, lo))
}

/// Mounts `image` read-only on `target` through a loop device.
pub fn mount(image: &str, target: &str) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    let (dev, _open) = attach(image)?;
    sys::mount(&dev, target, "squashfs", libc::MS_RDONLY, "")
}
