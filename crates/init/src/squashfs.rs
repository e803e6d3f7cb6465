//! Step 3a: squashfs-packed segments. The builder may ship a segment's `/usr` and `/nix/store`
//! files as one squashfs image instead of cpio entries (docs/image-contract.md): the kernel then
//! copies a compressed file instead of unpacking every byte, and the decompressed pages are
//! page cache the kernel can drop and re-read. Here each image is attached to a loop device
//! (read-only, autoclear) and mounted read-only; `switchroot` then stacks those mounts and the
//! initramfs's own `/usr` into one read-only overlay. The modules this needs (`loop`,
//! `squashfs`, `overlay`) are loaded first, ahead of step 4. A segment whose `condition_path`
//! is absent on this node is not mounted at all: its image is deleted from the initramfs, which
//! returns its RAM.

use crate::sys;
use diskless_contract::image::{ImageContract, ModuleRef, SegmentRef};
use std::os::fd::AsRawFd;
use std::path::Path;

/// A squashfs image that could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error(transparent)]
    Sys(#[from] sys::SysError),
    #[error("open /dev/loop-control: {0} (is the loop module loaded?)")]
    LoopControl(std::io::Error),
    #[error("no free loop device: {0}")]
    NoFreeLoop(std::io::Error),
    #[error("attach {image} to {dev}: {err}")]
    Attach {
        image: String,
        dev: String,
        err: std::io::Error,
    },
}

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

/// The squashfs-packed segments, in boot order, split into those this boot mounts (as
/// `(segment, image)`) and those it leaves out (`exists` says their condition is absent).
pub fn split(
    contract: &ImageContract,
    exists: impl Fn(&Path) -> bool,
) -> (Vec<(String, String)>, Vec<&SegmentRef>) {
    let mut kept = Vec::new();
    let mut left = Vec::new();
    for s in &contract.segments {
        match &s.squashfs {
            None => {}
            Some(image) if s.wanted(&exists) => kept.push((s.name.clone(), image.clone())),
            Some(_) => left.push(s),
        }
    }
    (kept, left)
}

/// Deletes the images of the segments left out, so their RAM is returned before the root
/// moves; says which and how much, if any.
pub fn drop_left_out(left: &[&SegmentRef]) -> Option<String> {
    if left.is_empty() {
        return None;
    }
    let names: Vec<(&str, Option<&str>)> = left
        .iter()
        .map(|s| (s.name.as_str(), s.condition_path.as_deref()))
        .collect();
    let images = left.iter().filter_map(|s| s.squashfs.as_deref());
    Some(crate::leftout::remove("segments", &names, images, "freed"))
}

/// Attaches `image` to a free loop device, read-only. Returns the device and its open file:
/// with autoclear the device detaches on its last close, so the caller keeps it open until the
/// mount holds the device (which then detaches when unmounted).
fn attach(image: &str) -> Result<(String, std::fs::File), SquashfsError> {
    let file = std::fs::File::open(image).map_err(sys::io("open", image))?;
    let ctl = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(SquashfsError::LoopControl)?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number or -1.
    let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
    if n < 0 {
        return Err(SquashfsError::NoFreeLoop(std::io::Error::last_os_error()));
    }
    let dev = format!("/dev/loop{n}");
    let lo = std::fs::OpenOptions::new()
        .read(true)
        .open(&dev)
        .map_err(sys::io("open", &dev))?;
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
        return Err(SquashfsError::Attach {
            image: image.to_owned(),
            dev,
            err: std::io::Error::last_os_error(),
        });
    }
    Ok((dev, lo))
}

/// Mounts `image` read-only on `target` through a loop device.
pub fn mount(image: &str, target: &str) -> Result<(), SquashfsError> {
    std::fs::create_dir_all(target).map_err(sys::io("mkdir", target))?;
    let (dev, _open) = attach(image)?;
    Ok(sys::mount(&dev, target, "squashfs", libc::MS_RDONLY, "")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(name: &str, squashfs: Option<&str>, condition: Option<&str>) -> SegmentRef {
        SegmentRef {
            name: name.into(),
            sentinel: format!("/.diskless/segments/{name}"),
            content: "00".into(),
            squashfs: squashfs.map(String::from),
            condition_path: condition.map(String::from),
        }
    }

    fn contract(segments: Vec<SegmentRef>) -> ImageContract {
        ImageContract {
            version: diskless_contract::image::CONTRACT_VERSION,
            name: "t".into(),
            unpacked_bytes: 0,
            segments,
            modules: vec![],
            sysctls: Default::default(),
            cgroup_controllers: vec![],
            network: Default::default(),
            services: vec![],
            images: vec![],
        }
    }

    #[test]
    fn a_segment_is_left_out_only_where_its_condition_is_absent() {
        let join = "/.diskless/node/kubelet/bootstrap-kubeconfig";
        let c = contract(vec![
            segment("base", None, None),
            segment("kubelet", Some("/k.sqfs"), None),
            segment("kube-proxy", Some("/p.sqfs"), Some(join)),
        ]);
        let (kept, left) = split(&c, |_| false);
        assert_eq!(kept, [("kubelet".to_string(), "/k.sqfs".to_string())]);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "kube-proxy");
        let (kept, left) = split(&c, |p| p == Path::new(join));
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[1].0, "kube-proxy");
        assert!(left.is_empty());
    }

    #[test]
    fn a_left_out_image_is_deleted_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("p.sqfs");
        std::fs::write(&image, vec![0u8; 1_500_000]).unwrap();
        let s = segment("kube-proxy", image.to_str(), Some("/absent"));
        let line = drop_left_out(&[&s]).unwrap();
        assert_eq!(
            line,
            "segments left out: kube-proxy (/absent absent); 1.5 MB freed"
        );
        assert!(!image.exists());
        assert_eq!(drop_left_out(&[]), None);
    }
}
