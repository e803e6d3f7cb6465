//! Step 4a: kernel modules, loaded with `finit_module` straight from the image: no modprobe, no
//! `modules.dep` parsing at boot. The builder lists them in a valid order and gives each the
//! modules it must follow (`after`: dependencies, softdeps), so independent chains (virtio-net,
//! overlay, bridge, netfilter) load on every CPU at once: relocating a module is CPU work, and
//! one at a time it was a second of boot under TCG. Not fatal: a missing driver is reported and
//! the boot goes on, since the console is still useful to find out why.

use crate::sys::{self, SysError};
use diskless_contract::image::ModuleRef;
use std::os::fd::AsRawFd;
use std::sync::{Condvar, Mutex};

/// Required modules that did not load, each as `name (why)`.
#[derive(Debug, thiserror::Error)]
#[error("could not load {}", .0.join(", "))]
pub struct ModulesError(pub Vec<String>);

pub struct Loaded {
    pub loaded: usize,
    pub already: usize,
    pub failed_optional: Vec<String>,
    pub workers: usize,
}

/// What the workers share: modules not yet taken, which are finished (loaded or failed).
struct Queue {
    pending: Vec<usize>,
    done: Vec<bool>,
    results: Vec<(usize, Result<bool, String>)>,
}

pub fn load_all(modules: &[ModuleRef]) -> Result<Loaded, ModulesError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    load_with(modules, workers, |path| {
        load(path).map_err(|e| e.to_string())
    })
}

/// The modules named in `names` that the image has, with everything they must follow, in
/// the image's order.
pub fn closure(all: &[ModuleRef], names: &[&str]) -> Vec<ModuleRef> {
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    // `after` names only earlier modules, so one backwards pass closes the set.
    for m in all.iter().rev() {
        if want.contains(&m.name) {
            want.extend(m.after.iter().cloned());
        }
    }
    all.iter()
        .filter(|m| want.contains(&m.name))
        .cloned()
        .collect()
}

/// Loads `modules` on `workers` threads with `loader` (finit_module, or a recorder in tests);
/// a loader's error is only a reason in the list of what failed.
fn load_with(
    modules: &[ModuleRef],
    workers: usize,
    loader: impl Fn(&str) -> Result<bool, String> + Sync,
) -> Result<Loaded, ModulesError> {
    // Only earlier modules count as prerequisites, so the first pending module is always
    // ready and no contract can make the workers wait forever.
    let after: Vec<Vec<usize>> = modules
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (0..i)
                .filter(|&j| m.after.contains(&modules[j].name))
                .collect()
        })
        .collect();
    let queue = Mutex::new(Queue {
        pending: (0..modules.len()).collect(),
        done: vec![false; modules.len()],
        results: Vec::new(),
    });
    let cv = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| worker(modules, &after, &queue, &cv, &loader));
        }
    });
    let mut results = queue.into_inner().unwrap().results;
    results.sort_by_key(|(i, _)| *i);

    let mut out = Loaded {
        loaded: 0,
        already: 0,
        failed_optional: Vec::new(),
        workers,
    };
    let mut errors = Vec::new();
    for (i, r) in results {
        let m = &modules[i];
        match r {
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
        Err(ModulesError(errors))
    }
}

/// Takes the first pending module whose `after` set is done, loads it, repeats. A module
/// whose dependency failed is still tried: the kernel then names the missing symbol.
fn worker(
    modules: &[ModuleRef],
    after: &[Vec<usize>],
    queue: &Mutex<Queue>,
    cv: &Condvar,
    loader: &(impl Fn(&str) -> Result<bool, String> + Sync),
) {
    let mut q = queue.lock().unwrap();
    loop {
        if q.pending.is_empty() {
            return;
        }
        let ready = q
            .pending
            .iter()
            .position(|&i| after[i].iter().all(|&j| q.done[j]));
        let Some(pos) = ready else {
            q = cv.wait(q).unwrap();
            continue;
        };
        let i = q.pending.remove(pos);
        drop(q);
        let r = loader(&modules[i].path);
        q = queue.lock().unwrap();
        q.done[i] = true;
        q.results.push((i, r));
        cv.notify_all();
    }
}

/// Loads one module file; `Ok(false)` when it is already loaded or built in.
fn load(path: &str) -> Result<bool, SysError> {
    let f = std::fs::File::open(path).map_err(sys::io("open", path))?;
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
        Err(sys::io("finit_module", path)(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, after: &[&str]) -> ModuleRef {
        ModuleRef {
            name: name.into(),
            path: name.into(),
            optional: false,
            after: after.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Every module starts only after its prerequisites finished, whatever the interleaving.
    #[test]
    fn prerequisites_finish_first_on_many_workers() {
        let mods = vec![
            m("virtio_ring", &[]),
            m("virtio", &["virtio_ring"]),
            m("overlay", &[]),
            m("llc", &[]),
            m("stp", &["llc"]),
            m("bridge", &["llc", "stp"]),
            m("virtio_net", &["virtio", "virtio_ring"]),
            m(
                "br_netfilter",
                &["bridge", "llc", "stp", "builtin_not_listed"],
            ),
        ];
        for _ in 0..50 {
            let log = Mutex::new(Vec::new());
            let out = load_with(&mods, 4, |p| {
                log.lock().unwrap().push(format!("start {p}"));
                std::thread::yield_now();
                log.lock().unwrap().push(format!("end {p}"));
                Ok(true)
            })
            .unwrap();
            assert_eq!(out.loaded, mods.len());
            let log = log.into_inner().unwrap();
            let at = |e: &str| log.iter().position(|l| l == e).unwrap();
            for x in &mods {
                for a in x
                    .after
                    .iter()
                    .filter(|a| mods.iter().any(|y| &y.name == *a))
                {
                    assert!(at(&format!("end {a}")) < at(&format!("start {}", x.name)));
                }
            }
        }
    }

    /// A contract naming a later module as a prerequisite cannot make the workers wait forever.
    #[test]
    fn later_prerequisites_are_ignored() {
        let mods = vec![m("a", &["b"]), m("b", &["a"])];
        let out = load_with(&mods, 2, |_| Ok(true)).unwrap();
        assert_eq!(out.loaded, 2);
    }

    #[test]
    fn closure_takes_prerequisites_in_image_order() {
        let mods = vec![
            m("crc32c", &[]),
            m("loop", &[]),
            m("libcrc32c", &["crc32c"]),
            m("overlay", &[]),
            m("squashfs", &["libcrc32c", "crc32c"]),
            m("bridge", &[]),
        ];
        let names: Vec<String> = closure(&mods, &["squashfs", "overlay", "absent"])
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["crc32c", "libcrc32c", "overlay", "squashfs"]);
    }

    #[test]
    fn failures_are_reported_by_name() {
        let mods = vec![m("ok", &[]), m("bad", &["ok"])];
        let e = load_with(&mods, 2, |p| {
            if p == "bad" {
                Err("nope".into())
            } else {
                Ok(true)
            }
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("bad (nope)"), "{e}");
    }
}
