//! Kernel modules by name → the files to ship and the order to load them, from the kernel's own
//! `modules.dep`, `modules.alias`, `modules.softdep` and `modules.builtin`.
//!
//! The init loads modules itself with `finit_module` in the order computed here, so it needs no
//! modprobe logic. Two facts measured on Debian 6.1 shape this: `virtio_pci` is not a dependency
//! of `virtio_net` (it must be asked for), and `libcrc32c` has only a *softdep* on `crc32c`
//! (busybox modprobe ignores softdeps), so `pre:` softdeps are followed here. Softdep targets are
//! aliases that may name several modules (`crc32c` → `crc32c_intel`, `crc32c_generic`); those are
//! marked optional, since `crc32c_intel` fails on a CPU without SSE4.2.

use super::modfile::{stored_path, Compression};
use diskless_contract::image::ModuleRef;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("cannot read {path}: {cause}; is `kernel.modules_dir` the module tree of this kernel (/lib/modules/<version>)?")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
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

/// One module file for the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    /// In the module tree on the build host.
    pub source: PathBuf,
    /// How `source` is compressed; the image holds it decompressed (`modfile.rs`).
    pub compression: Compression,
    /// `/lib/modules/<version>/<relpath>` with a plain `.ko` name, where modprobe and the
    /// init look.
    pub dest: String,
}

/// What one component ships of the kernel's modules ([`ModuleTree::ship`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shipment {
    /// Modules new to the image, in load order.
    pub files: Vec<ModuleFile>,
    /// `/lib/modules/<version>/modules.dep`.
    pub dep_path: String,
    /// A `modules.dep` covering every module in the image so far.
    pub dep: String,
}

/// Of `names`, those the image lacks: neither shipped (`loaded`) nor built into the kernel.
pub fn missing<'a>(
    names: &[&'a str],
    loaded: &[ModuleRef],
    tree: Option<&ModuleTree>,
) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|m| !loaded.iter().any(|l| l.name == *m) && !tree.is_some_and(|t| t.is_builtin(m)))
        .collect()
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
            std::fs::read_to_string(&path).map_err(|cause| KmodError::Read { path, cause })
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

    /// Whether `name` is built into the kernel (`modules.builtin`).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// The kernel version this tree belongs to: the directory's name.
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

    /// One component's modules: `names` (plan field `field`) with their dependencies and
    /// softdeps, less those an earlier component ships already. The new ones are appended to
    /// `loaded`, the image's load order, which the init follows.
    pub fn ship(
        &self,
        field: &str,
        names: &[String],
        loaded: &mut Vec<ModuleRef>,
    ) -> Result<Shipment, KmodError> {
        let requests: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{field}[{i}]"), m.clone()))
            .collect();
        let base = format!("/lib/modules/{}", self.version());
        let mut resolved = self.resolve(&requests)?;
        // Modules an earlier component already ships are loaded from there.
        resolved.retain(|m| !loaded.iter().any(|l| l.name == m.name));
        let mut files = Vec::new();
        for m in resolved {
            let dest = format!("{base}/{}", stored_path(&m.relpath));
            loaded.push(ModuleRef {
                name: m.name.clone(),
                path: dest.clone(),
                optional: m.optional,
                after: m.after,
            });
            files.push(ModuleFile {
                name: m.name,
                source: self.dir.join(&m.relpath),
                compression: Compression::of(&m.relpath),
                dest,
            });
        }
        let all: Vec<Module> = loaded
            .iter()
            .map(|l| Module {
                name: l.name.clone(),
                relpath: l.path[base.len() + 1..].to_string(),
                optional: l.optional,
                after: l.after.clone(),
            })
            .collect();
        Ok(Shipment {
            files,
            dep_path: format!("{base}/modules.dep"),
            dep: self.filtered_dep(&all),
        })
    }

    /// A `modules.dep` for exactly these modules, so `modprobe` works inside the image; paths
    /// name the decompressed `.ko` files the image holds.
    pub fn filtered_dep(&self, modules: &[Module]) -> String {
        let mut names: Vec<&String> = modules.iter().map(|m| &m.name).collect();
        names.sort();
        let mut dep = String::new();
        for line in names.into_iter().filter_map(|n| self.dep_lines.get(n)) {
            let (module, deps) = line.split_once(':').unwrap_or((line, ""));
            dep.push_str(&stored_path(module));
            dep.push(':');
            for d in deps.split_whitespace() {
                dep.push(' ');
                dep.push_str(&stored_path(d));
            }
            dep.push('\n');
        }
        dep
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
    fn a_later_ship_skips_what_is_loaded_and_its_dep_covers_all() {
        let (_d, t) = tree();
        let mut loaded = Vec::new();
        let first = t
            .ship("a", &["nf_defrag_ipv6".into()], &mut loaded)
            .unwrap();
        assert_eq!(first.files.len(), 1);
        let second = t.ship("b", &["nf_conntrack".into()], &mut loaded).unwrap();
        let shipped: Vec<&str> = second.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            shipped,
            [
                "crc32c_intel",
                "crc32c_generic",
                "libcrc32c",
                "nf_conntrack"
            ]
        );
        assert_eq!(loaded.len(), 5);
        assert!(
            second.dep.contains("nf_defrag_ipv6.ko:") && second.dep.contains("nf_conntrack.ko:")
        );
        assert_eq!(
            missing(&["libcrc32c", "tmpfs", "virtio_net"], &loaded, Some(&t)),
            ["virtio_net"]
        );
    }

    #[test]
    fn compressed_trees_ship_plain_ko_names_and_a_matching_dep() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("modules.dep"),
            "kernel/net/core/failover.ko.xz:\n\
             kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.xz\n",
        )
        .unwrap();
        let t = ModuleTree::load(d.path()).unwrap();
        let mut loaded = Vec::new();
        let s = t.ship("m", &["net_failover".into()], &mut loaded).unwrap();
        let files: Vec<(&str, Compression)> = s
            .files
            .iter()
            .map(|f| (f.dest.rsplit('/').next().unwrap(), f.compression))
            .collect();
        assert_eq!(
            files,
            [
                ("failover.ko", Compression::Xz),
                ("net_failover.ko", Compression::Zstd)
            ]
        );
        assert!(s.files[0]
            .source
            .ends_with("kernel/net/core/failover.ko.xz"));
        assert!(loaded.iter().all(|m| m.path.ends_with(".ko")));
        assert_eq!(
            s.dep,
            "kernel/net/core/failover.ko:\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"
        );
    }

    #[test]
    fn globs() {
        assert!(glob(b"pci:v00001AF4d*", b"pci:v00001AF4d00001000"));
        assert!(glob(b"a[0-9]c", b"a5c"));
        assert!(!glob(b"a?c", b"ac"));
    }
}
