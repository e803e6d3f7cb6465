//! Kernel modules by name → the files to ship and the order to load them, from the kernel's own
//! `modules.dep`, `modules.alias`, `modules.softdep` and `modules.builtin`.
//!
//! The init loads modules itself with `finit_module` in the order computed here, so it needs no
//! modprobe logic. Two facts measured on Debian 6.1 shape this: `virtio_pci` is not a dependency
//! of `virtio_net` (it must be asked for), and `libcrc32c` has only a *softdep* on `crc32c`
//! (busybox modprobe ignores softdeps), so `pre:` softdeps are followed here. Softdep targets are
//! aliases that may name several modules (`crc32c` → `crc32c_intel`, `crc32c_generic`); those are
//! marked optional, since `crc32c_intel` fails on a CPU without SSE4.2.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("cannot read {path}: {source}; is `kernel.modules_dir` the module tree of this kernel (/lib/modules/<version>)?")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: unknown kernel module {name:?}: not in modules.dep, modules.alias or modules.builtin of {dir}")]
    Unknown {
        origin: String,
        name: String,
        dir: PathBuf,
    },
}

/// One module to ship and load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Path relative to the module tree (`kernel/drivers/net/virtio_net.ko`).
    pub relpath: String,
    pub optional: bool,
    /// Modules of this list that must be loaded first (its `modules.dep` dependencies and
    /// softdep targets), so the init can load independent chains in parallel.
    pub after: Vec<String>,
}

/// The parsed index files of one module tree.
pub struct ModuleTree {
    pub dir: PathBuf,
    /// module name → (relpath, dependency relpaths as listed)
    deps: BTreeMap<String, (String, Vec<String>)>,
    aliases: Vec<(String, String)>,
    softdeps: BTreeMap<String, Vec<String>>,
    builtin: BTreeSet<String>,
    /// The raw `modules.dep` lines, to write a filtered copy into the image.
    dep_lines: BTreeMap<String, String>,
}

/// `kernel/net/bridge/br_netfilter.ko` → `br_netfilter`; dashes and underscores are one.
pub fn name_of(relpath: &str) -> String {
    let base = relpath.rsplit('/').next().unwrap_or(relpath);
    let base = base.split(".ko").next().unwrap_or(base);
    normalize(base)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Shell-style match with `*`, `?` and `[...]`, as modules.alias patterns use.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(b'['), Some(&c)) => match pattern.iter().position(|&b| b == b']') {
            Some(end) => {
                let set = &pattern[1..end];
                let hit = set.contains(&c)
                    || set
                        .windows(3)
                        .any(|w| w[1] == b'-' && w[0] <= c && c <= w[2]);
                hit && glob(&pattern[end + 1..], &text[1..])
            }
            None => false,
        },
        (Some(p), Some(t)) => p == t && glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

impl ModuleTree {
    pub fn load(dir: &Path) -> Result<ModuleTree, KmodError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| KmodError::Read { path, source })
        };
        let mut deps = BTreeMap::new();
        let mut dep_lines = BTreeMap::new();
        for line in read("modules.dep")?.lines() {
            let Some((module, rest)) = line.split_once(':') else {
                continue;
            };
            let name = name_of(module);
            dep_lines.insert(name.clone(), line.to_string());
            deps.insert(
                name,
                (
                    module.to_string(),
                    rest.split_whitespace().map(String::from).collect(),
                ),
            );
        }
        let mut aliases = Vec::new();
        if let Ok(text) = read("modules.alias") {
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if let (Some("alias"), Some(pattern), Some(module)) = (w.next(), w.next(), w.next())
                {
                    aliases.push((normalize(pattern), normalize(module)));
                }
            }
        }
        let mut softdeps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Ok(text) = read("modules.softdep") {
            for line in text.lines() {
                let mut w = line.split_whitespace();
                if w.next() != Some("softdep") {
                    continue;
                }
                let Some(module) = w.next() else { continue };
                let mut pre = false;
                for word in w {
                    match word {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        _ if pre => softdeps
                            .entry(normalize(module))
                            .or_default()
                            .push(normalize(word)),
                        _ => {}
                    }
                }
            }
        }
        let builtin = read("modules.builtin")
            .map(|t| t.lines().map(name_of).collect())
            .unwrap_or_default();
        Ok(ModuleTree {
            dir: dir.to_owned(),
            deps,
            aliases,
            softdeps,
            builtin,
            dep_lines,
        })
    }

    /// The kernel version this tree belongs to: the directory's name.
    /// Whether `name` is built into the kernel (`modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    pub fn version(&self) -> String {
        self.dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Module names a request resolves to: itself, or every module whose alias matches.
    /// Empty for built-in modules.
    fn lookup(&self, request: &str) -> Option<Vec<String>> {
        let n = normalize(request);
        if self.deps.contains_key(&n) {
            return Some(vec![n]);
        }
        if self.builtin.contains(&n) {
            return Some(vec![]);
        }
        let mut hits: Vec<String> = Vec::new();
        for (pattern, module) in &self.aliases {
            if glob(pattern.as_bytes(), n.as_bytes()) && !hits.contains(module) {
                hits.push(module.clone());
            }
        }
        hits.retain(|m| self.deps.contains_key(m) || self.builtin.contains(m));
        if hits.is_empty() {
            None
        } else {
            hits.retain(|m| self.deps.contains_key(m));
            Some(hits)
        }
    }

    /// Resolves requested names into modules in load order (dependencies and softdeps first).
    /// `origin` names the plan field in errors.
    pub fn resolve(&self, requests: &[(String, String)]) -> Result<Vec<Module>, KmodError> {
        let mut order: Vec<Module> = Vec::new();
        for (origin, request) in requests {
            let names = self.lookup(request).ok_or_else(|| KmodError::Unknown {
                origin: origin.clone(),
                name: request.clone(),
                dir: self.dir.clone(),
            })?;
            for name in names {
                self.visit(&name, false, &mut order, &mut BTreeSet::new());
            }
        }
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        optional: bool,
        order: &mut Vec<Module>,
        stack: &mut BTreeSet<String>,
    ) {
        if let Some(m) = order.iter_mut().find(|m| m.name == name) {
            m.optional &= optional;
            return;
        }
        if !stack.insert(name.to_string()) {
            return; // a softdep cycle: the kernel would not load it either way
        }
        let Some((relpath, deps)) = self.deps.get(name) else {
            return;
        };
        let mut after = Vec::new();
        for soft in self.softdeps.get(name).into_iter().flatten() {
            for target in self.lookup(soft).unwrap_or_default() {
                self.visit(&target, true, order, stack);
                after.push(target);
            }
        }
        // modules.dep lists the deepest dependency last; modprobe loads from the end.
        for dep in deps.iter().rev() {
            self.visit(&name_of(dep), optional, order, stack);
            after.push(name_of(dep));
        }
        stack.remove(name);
        // Only what is in the list (built-ins and cycles are not) and not the module itself.
        after.retain(|a| a != name && order.iter().any(|m| &m.name == a));
        after.sort();
        after.dedup();
        if let Some(m) = order.iter_mut().find(|m| m.name == name) {
            m.optional &= optional;
        } else {
            order.push(Module {
                name: name.to_string(),
                relpath: relpath.clone(),
                optional,
                after,
            });
        }
    }

    /// A `modules.dep` for exactly these modules, so `modprobe` works inside the image.
    pub fn filtered_dep(&self, modules: &[Module]) -> String {
        let mut names: Vec<&String> = modules.iter().map(|m| &m.name).collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| self.dep_lines.get(n))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, ModuleTree) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("modules.dep"),
            "kernel/lib/libcrc32c.ko:\n\
             kernel/crypto/crc32c_generic.ko:\n\
             kernel/arch/x86/crypto/crc32c-intel.ko:\n\
             kernel/net/netfilter/nf_conntrack.ko: kernel/net/ipv6/nf_defrag_ipv6.ko kernel/lib/libcrc32c.ko\n\
             kernel/net/ipv6/nf_defrag_ipv6.ko:\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("modules.alias"),
            "alias crc32c crc32c_intel\nalias crc32c crc32c_generic\nalias pci:v00001AF4d* virtio_pci\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("modules.softdep"),
            "softdep libcrc32c pre: crc32c\n",
        )
        .unwrap();
        std::fs::write(d.path().join("modules.builtin"), "kernel/fs/tmpfs.ko\n").unwrap();
        let t = ModuleTree::load(d.path()).unwrap();
        (d, t)
    }

    fn names(m: &[Module]) -> Vec<&str> {
        m.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn dependencies_load_first_deepest_first() {
        let (_d, t) = tree();
        let m = t.resolve(&[("t".into(), "virtio-net".into())]).unwrap();
        assert_eq!(names(&m), ["failover", "net_failover", "virtio_net"]);
    }

    #[test]
    fn softdep_crc32c_precedes_libcrc32c_and_is_optional() {
        let (_d, t) = tree();
        let m = t.resolve(&[("t".into(), "nf_conntrack".into())]).unwrap();
        assert_eq!(
            names(&m),
            [
                "crc32c_intel",
                "crc32c_generic",
                "libcrc32c",
                "nf_defrag_ipv6",
                "nf_conntrack"
            ]
        );
        assert!(m[0].optional && m[1].optional && !m[2].optional);
        // What each must follow: its dependencies and softdep targets, nothing else.
        assert_eq!(m[2].after, ["crc32c_generic", "crc32c_intel"]);
        assert_eq!(m[4].after, ["libcrc32c", "nf_defrag_ipv6"]);
        assert!(m[0].after.is_empty() && m[3].after.is_empty());
    }

    #[test]
    fn builtin_is_fine_and_unknown_is_an_error() {
        let (_d, t) = tree();
        assert!(t
            .resolve(&[("t".into(), "tmpfs".into())])
            .unwrap()
            .is_empty());
        let e = t
            .resolve(&[("components[1].modules[0]".into(), "nosuch".into())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("components[1].modules[0]") && e.contains("\"nosuch\""),
            "{e}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob(b"pci:v00001AF4d*", b"pci:v00001AF4d00001000"));
        assert!(glob(b"a[0-9]c", b"a5c"));
        assert!(!glob(b"a?c", b"ac"));
    }
}
