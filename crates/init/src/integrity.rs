//! Step 2: did the whole image arrive? Each segment ends with a sentinel file whose content is
//! the segment's digest. The kernel unpacks segments in order and, when the initramfs tmpfs
//! (capped at 50 % of RAM) fills up, prints `Initramfs unpacking failed` and boots on with the
//! rest missing, so the first missing sentinel tells which segment was lost. Fatal.

use diskless_contract::image::ImageContract;

/// A segment that did not arrive whole; `index` counts from 1.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("segment {name:?} ({index} of {total}) is from another build: sentinel {sentinel} holds {found:?}, the image index says {want:?}; the iPXE entry mixes segments of different builds")]
    OtherBuild {
        name: String,
        index: usize,
        total: usize,
        sentinel: String,
        found: String,
        want: String,
    },
    /// `cause` is the likely reason, with what to do.
    #[error("segment {name:?} ({index} of {total}) is missing (no sentinel {sentinel}): {cause}")]
    Missing {
        name: String,
        index: usize,
        total: usize,
        sentinel: String,
        cause: String,
    },
}

pub fn check(contract: &ImageContract) -> Result<usize, IntegrityError> {
    let total = contract.segments.len();
    for (i, seg) in contract.segments.iter().enumerate() {
        let found = std::fs::read_to_string(&seg.sentinel);
        let cause = match found {
            Ok(text) if text.trim_end_matches('\n') == seg.content => continue,
            Ok(text) => {
                return Err(IntegrityError::OtherBuild {
                    name: seg.name.clone(),
                    index: i + 1,
                    total,
                    sentinel: seg.sentinel.clone(),
                    found: text.trim_end().to_owned(),
                    want: seg.content.clone(),
                })
            }
            Err(_) => missing_cause(contract.unpacked_bytes),
        };
        return Err(IntegrityError::Missing {
            name: seg.name.clone(),
            index: i + 1,
            total,
            sentinel: seg.sentinel.clone(),
            cause,
        });
    }
    Ok(total)
}

/// Explains a missing segment with what the kernel and the RAM size tell us.
fn missing_cause(unpacked: u64) -> String {
    let mem = crate::sys::mem_total().unwrap_or(0);
    let kernel_said = kernel_log_has("Initramfs unpacking failed");
    let mib = |b: u64| b / (1024 * 1024);
    if kernel_said || unpacked > mem / 2 {
        format!(
            "the kernel could not unpack the whole initramfs{}: likely too little RAM. The image unpacks to {} MiB and the kernel's initial rootfs holds at most half of RAM ({} MiB of {} MiB); give the machine more memory (about {} MiB or more)",
            if kernel_said { " (it logged \"Initramfs unpacking failed\")" } else { "" },
            mib(unpacked),
            mib(mem / 2),
            mib(mem),
            mib(unpacked * 2) + 128,
        )
    } else {
        "its `initrd` line is probably missing from the iPXE entry (the image fits in RAM, and the kernel reported no unpacking error)".into()
    }
}

/// Scans the kernel log (`/dev/kmsg`, non-blocking) for a message.
fn kernel_log_has(needle: &str) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return false;
    };
    // Each read returns one record; EAGAIN marks the end of the buffer.
    let mut buf = vec![0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if String::from_utf8_lossy(&buf[..n]).contains(needle) {
                    return true;
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten record
            Err(_) => return false,
        }
    }
}
