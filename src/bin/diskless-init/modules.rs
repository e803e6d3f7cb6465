//! Step 4a: kernel modules, in the order the builder resolved (dependencies first, softdeps
//! before their users), loaded with `finit_module` straight from the image: no modprobe, no
//! `modules.dep` parsing at boot. Not fatal: a missing driver is reported and the boot goes on,
//! since the console is still useful to find out why.

use crate::contract::Module;
use std::os::fd::AsRawFd;

pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    pub failed_optional: Vec<String>,
}

pub fn load_all(modules: &[Module]) -> Result<Loaded, String> {
    let mut out = Loaded {
        loaded: 0,
        already: 0,
        failed_optional: Vec::new(),
    };
    let mut errors = Vec::new();
    for m in modules {
        match load(&m.path) {
            Ok(true) => out.loaded += 1,
            Ok(false) => out.already += 1,
            Err(e) if m.optional => {
                crate::log::warn(&format!("optional module {} not loaded: {e}", m.name));
                out.failed_optional.push(m.name.clone());
            }
            Err(e) => errors.push(format!("{} ({e})", m.name)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(format!("could not load {}", errors.join(", ")))
    }
}

/// Loads one module file; `Ok(false)` when it is already loaded or built in.
fn load(path: &str) -> Result<bool, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let params = c"";
    // SAFETY: finit_module(fd, param_values, flags) with an open fd and a NUL-terminated
    // (empty) parameter string; the kernel only reads both.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        Ok(false)
    } else {
        Err(format!("finit_module {path}: {e}"))
    }
}
