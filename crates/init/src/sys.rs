//! Thin wrappers over the few syscalls std does not offer, each returning an error that names
//! what was attempted.

use std::ffi::CString;
use std::io;

/// A syscall that failed, with what it was asked to do.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// `device` is the mount's source (a device, or the filesystem's name).
    #[error("mount {fstype} {device} on {target}: {err}")]
    Mount {
        fstype: String,
        device: String,
        target: String,
        err: io::Error,
    },
    #[error("mount --move {from} {to}: {err}")]
    Move {
        from: String,
        to: String,
        err: io::Error,
    },
    #[error("make the bind mount read-only: {0}")]
    ReadOnly(Box<SysError>),
    #[error("chroot {path}: {err}")]
    Chroot { path: String, err: io::Error },
    #[error("sethostname {name}: {err}")]
    Sethostname { name: String, err: io::Error },
    #[error("getrandom: {0}")]
    Getrandom(io::Error),
    /// A filesystem call: `op` is `mkdir`, `write`, `read`…
    #[error("{op} {path}: {err}")]
    Io {
        op: &'static str,
        path: String,
        err: io::Error,
    },
}

/// `map_err(sys::io("mkdir", dir))`: a filesystem call's error with what was attempted.
pub fn io(op: &'static str, path: impl Into<String>) -> impl FnOnce(io::Error) -> SysError {
    let path = path.into();
    move |err| SysError::Io { op, path, err }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in paths built by the init")
}

/// `mount(2)`; `data` is the filesystem's option string.
pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), SysError> {
    let (s, t, f, d) = (cstr(source), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: all four pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError::Mount {
            fstype: fstype.to_owned(),
            device: source.to_owned(),
            target: target.to_owned(),
            err: io::Error::last_os_error(),
        })
    }
}

/// Moves the mount at `from` to `to` (`mount --move`).
pub fn mount_move(from: &str, to: &str) -> Result<(), SysError> {
    let (s, t) = (cstr(from), cstr(to));
    // SAFETY: valid NUL-terminated strings; MS_MOVE ignores fstype and data, which may be NULL.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError::Move {
            from: from.to_owned(),
            to: to.to_owned(),
            err: io::Error::last_os_error(),
        })
    }
}

/// Bind-mounts `from` on `to` read-only (a bind mount ignores MS_RDONLY until remounted).
pub fn bind_read_only(from: &str, to: &str) -> Result<(), SysError> {
    mount(from, to, "", libc::MS_BIND | libc::MS_REC, "")?;
    mount(
        "",
        to,
        "",
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        "",
    )
    .map_err(|e| SysError::ReadOnly(Box::new(e)))
}

pub fn chroot(path: &str) -> Result<(), SysError> {
    let p = cstr(path);
    // SAFETY: valid NUL-terminated string.
    if unsafe { libc::chroot(p.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(SysError::Chroot {
            path: path.to_owned(),
            err: io::Error::last_os_error(),
        })
    }
}

/// `statfs(2)` of a path: (filesystem magic, block size, total blocks, free blocks).
pub fn statfs(path: &str) -> io::Result<(i64, u64, u64, u64)> {
    let p = cstr(path);
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and a writable struct of the right type.
    if unsafe { libc::statfs(p.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((
        st.f_type as i64,
        st.f_bsize as u64,
        st.f_blocks as u64,
        st.f_bfree as u64,
    ))
}

pub fn sethostname(name: &str) -> Result<(), SysError> {
    // SAFETY: pointer and length describe the bytes of `name`.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } == 0 {
        Ok(())
    } else {
        Err(SysError::Sethostname {
            name: name.to_owned(),
            err: io::Error::last_os_error(),
        })
    }
}

/// `MemTotal` from `/proc/meminfo`, in bytes.
pub fn mem_total() -> Option<u64> {
    meminfo_kb("MemTotal").map(|kb| kb * 1024)
}

pub fn meminfo_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Random bytes from the kernel (`getrandom`, which blocks only until the pool is seeded).
pub fn random_bytes(buf: &mut [u8]) -> Result<(), SysError> {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SysError::Getrandom(e));
        }
        filled += n as usize;
    }
    Ok(())
}
