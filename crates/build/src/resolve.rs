//! plan → resolved tree: every component becomes a checked map of absolute paths to entries
//! ([`crate::tree`]), with ELF library closures, kernel modules and symlinks followed.

use crate::compress::{Codec, CompressError};
use crate::kmod::{KmodError, ModuleTree};
use crate::plan::{Algorithm, Component, Compression, Mode, Node, Packing, Plan, PreloadImage};
pub use crate::tree::{Content, Entry, EntryKind, Tree};
use diskless_contract::image::ModuleRef;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

/// The ceiling on a symlink chain, as the kernel's (`MAXSYMLINKS` = 40).
const MAX_HOPS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{origin}: cannot read {path}: {source}")]
    Read {
        origin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {path} is a {kind}; only regular files, directories and symlinks go into an image")]
    FileType {
        origin: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{path} is written by {first} and by {second} with different {what}; remove one or make them identical")]
    Conflict {
        path: String,
        first: String,
        second: String,
        what: &'static str,
    },
    #[error("{origin}: symlink loop at {path} (more than {MAX_HOPS} links followed)")]
    Loop { origin: String, path: String },
    #[error("{origin}: {path} is {size} bytes; a cpio (newc) file holds at most 4 GiB - 1")]
    TooLarge {
        origin: String,
        path: String,
        size: u64,
    },
    #[error(transparent)]
    Elf(#[from] crate::elf::ElfError),
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Compress(#[from] CompressError),
}

/// A plan after every check: what the segment writer and the index need, nothing else.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub description: String,
    pub kernel: PathBuf,
    pub cmdline: String,
    pub codec: Codec,
    pub components: Vec<ResolvedComponent>,
    pub modules: Vec<ModuleRef>,
    pub images: Vec<PreloadImage>,
    pub node: Node,
    pub plan_sha256: String,
}

#[derive(Debug, Clone)]
pub struct ResolvedComponent {
    pub name: String,
    pub codec: Codec,
    pub packing: crate::plan::Packing,
    pub tree: Tree,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ResolveError {
    ResolveError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Segment and image names end up in file names and URLs: keep them boring.
pub fn check_name(field: &str, name: &str) -> Result<(), ResolveError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{name:?} is not a valid name: use [a-z0-9][a-z0-9._-]*, at most 64 characters"
            ),
        ))
    }
}

/// Destinations are absolute, normalized paths: no `..`, `.`, `//` or trailing `/`.
pub fn check_dest(field: &str, dest: &str) -> Result<(), ResolveError> {
    let bad = |why: &str| Err(invalid(field, format!("destination {dest:?} {why}")));
    if !dest.starts_with('/') {
        return bad("is not absolute; write it as /path/inside/the/image");
    }
    if dest == "/" {
        return bad("is the root itself");
    }
    if dest.contains('\0') {
        return bad("contains a NUL byte");
    }
    if dest.ends_with('/') || dest.contains("//") {
        return bad("has an empty path component; remove the extra '/'");
    }
    if dest.split('/').any(|c| c == ".." || c == ".") {
        return bad("contains '.' or '..'; give the normalized path");
    }
    Ok(())
}

/// Lexically joins a symlink target onto the directory holding the link.
fn join_target(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        link.rsplit_once('/')
            .map(|(dir, _)| dir.split('/').filter(|c| !c.is_empty()).collect())
            .unwrap_or_default()
    };
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Source file mode → image mode: executable or not, nothing else from the build host.
fn normalized_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.is_dir() || meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

fn check_readable(origin: &str, path: &Path) -> Result<std::fs::Metadata, ResolveError> {
    let read_err = |source| ResolveError::Read {
        origin: origin.into(),
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_file() {
        // Open now so an unreadable file fails before anything is written.
        std::fs::File::open(path).map_err(read_err)?;
    }
    Ok(meta)
}

/// Collects one component's entries.
struct Collector<'a> {
    component: &'a str,
    tree: Tree,
}

impl Collector<'_> {
    fn insert(&mut self, path: String, entry: Entry) -> Result<(), ResolveError> {
        insert_checked(&mut self.tree, path, entry)
    }

    fn origin(&self, field: &str) -> String {
        format!("component {}: {field}", self.component)
    }

    /// Adds a host file at its own path, reproducing each symlink met on the way (`/lib64 ->
    /// usr/lib64`), so the image has the same layout the binary was linked against.
    fn add_host_path(&mut self, path: &Path, origin: &str) -> Result<(), ResolveError> {
        let mut pending = path.to_string_lossy().into_owned();
        let mut hops = 0;
        'restart: loop {
            let mut cur = String::new();
            let parts: Vec<String> = pending
                .split('/')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            for (i, part) in parts.iter().enumerate() {
                cur = format!("{cur}/{part}");
                let meta =
                    std::fs::symlink_metadata(&cur).map_err(|source| ResolveError::Read {
                        origin: origin.into(),
                        path: PathBuf::from(&cur),
                        source,
                    })?;
                if meta.file_type().is_symlink() {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(ResolveError::Loop {
                            origin: origin.into(),
                            path: path.display().to_string(),
                        });
                    }
                    let target = std::fs::read_link(&cur).map_err(|source| ResolveError::Read {
                        origin: origin.into(),
                        path: PathBuf::from(&cur),
                        source,
                    })?;
                    let target = target.to_string_lossy().into_owned();
                    self.insert(
                        cur.clone(),
                        Entry {
                            kind: EntryKind::Symlink(target.clone()),
                            mode: 0o777,
                            origin: origin.into(),
                        },
                    )?;
                    let rest = parts[i + 1..].join("/");
                    pending = join_target(&cur, &target);
                    if !rest.is_empty() {
                        pending = format!("{pending}/{rest}");
                    }
                    continue 'restart;
                }
            }
            let meta = check_readable(origin, Path::new(&cur))?;
            return self.insert(
                cur.clone(),
                Entry {
                    kind: EntryKind::File(Content::Path {
                        path: PathBuf::from(&cur),
                        size: meta.len(),
                    }),
                    mode: normalized_mode(&meta),
                    origin: origin.into(),
                },
            );
        }
    }

    fn add_tree(&mut self, source: &Path, dest: &str, origin: &str) -> Result<(), ResolveError> {
        let root_meta = check_readable(origin, source)?;
        if !root_meta.is_dir() {
            return Err(invalid(
                origin,
                format!("{} is not a directory", source.display()),
            ));
        }
        let walk = walkdir::WalkDir::new(source)
            .follow_links(false)
            .sort_by_file_name();
        for item in walk {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(source).to_owned();
                ResolveError::Read {
                    origin: origin.into(),
                    path,
                    source: e.into(),
                }
            })?;
            let rel = item
                .path()
                .strip_prefix(source)
                .expect("walkdir stays below its root");
            let rel = rel.to_string_lossy();
            let to = if rel.is_empty() {
                dest.to_string()
            } else {
                format!("{dest}/{rel}")
            };
            let ft = item.file_type();
            let entry = if ft.is_symlink() {
                let target =
                    std::fs::read_link(item.path()).map_err(|source| ResolveError::Read {
                        origin: origin.into(),
                        path: item.path().to_owned(),
                        source,
                    })?;
                EntryKind::Symlink(target.to_string_lossy().into_owned())
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                let meta = check_readable(origin, item.path())?;
                self.insert(
                    to,
                    Entry {
                        kind: EntryKind::File(Content::Path {
                            path: item.path().to_owned(),
                            size: meta.len(),
                        }),
                        mode: normalized_mode(&meta),
                        origin: origin.into(),
                    },
                )?;
                continue;
            } else {
                return Err(ResolveError::FileType {
                    origin: origin.into(),
                    path: item.path().to_owned(),
                    kind: "special file (device, socket or fifo)",
                });
            };
            let mode = if matches!(entry, EntryKind::Dir) {
                0o755
            } else {
                0o777
            };
            self.insert(
                to,
                Entry {
                    kind: entry,
                    mode,
                    origin: origin.into(),
                },
            )?;
        }
        Ok(())
    }
}

/// Adds `entry` at `path`: an identical entry already there is fine, a different one is a
/// conflict naming both origins; files over the newc size limit are refused.
fn insert_checked(tree: &mut Tree, path: String, entry: Entry) -> Result<(), ResolveError> {
    if let Some(old) = tree.entries.get(&path) {
        if !same_entry(old, &entry)? {
            return Err(ResolveError::Conflict {
                path,
                first: old.origin.clone(),
                what: describe_difference(old, &entry),
                second: entry.origin,
            });
        }
        return Ok(());
    }
    if let EntryKind::File(c) = &entry.kind {
        if c.size() > u32::MAX as u64 {
            return Err(ResolveError::TooLarge {
                origin: entry.origin,
                path,
                size: c.size(),
            });
        }
    }
    tree.entries.insert(path, entry);
    Ok(())
}

fn describe_difference(a: &Entry, b: &Entry) -> &'static str {
    match (&a.kind, &b.kind) {
        (EntryKind::File(_), EntryKind::File(_)) if a.mode != b.mode => "modes",
        (EntryKind::File(_), EntryKind::File(_)) => "contents",
        (EntryKind::Symlink(_), EntryKind::Symlink(_)) => "targets",
        (EntryKind::Dir, EntryKind::Dir) => "modes",
        _ => "types (file, directory, symlink)",
    }
}

/// True when two entries would leave the same thing in the image.
fn same_entry(a: &Entry, b: &Entry) -> Result<bool, ResolveError> {
    if a.mode != b.mode {
        return Ok(false);
    }
    Ok(match (&a.kind, &b.kind) {
        (EntryKind::Dir, EntryKind::Dir) => true,
        (EntryKind::Symlink(x), EntryKind::Symlink(y)) => x == y,
        (EntryKind::File(x), EntryKind::File(y)) => {
            if x.size() != y.size() {
                return Ok(false);
            }
            if let (Content::Path { path: p, .. }, Content::Path { path: q, .. }) = (x, y) {
                if p == q {
                    return Ok(true);
                }
            }
            content_bytes(x, &a.origin)? == content_bytes(y, &b.origin)?
        }
        _ => false,
    })
}

fn content_bytes(c: &Content, origin: &str) -> Result<Arc<Vec<u8>>, ResolveError> {
    match c {
        Content::Bytes(b) => Ok(b.clone()),
        Content::Path { path, .. } => {
            std::fs::read(path)
                .map(Arc::new)
                .map_err(|source| ResolveError::Read {
                    origin: origin.into(),
                    path: path.clone(),
                    source,
                })
        }
    }
}

fn mode_or(mode: Option<Mode>, default: u32) -> u32 {
    mode.map(|m| m.0).unwrap_or(default)
}

fn resolve_component(
    index: usize,
    c: &Component,
    default_codec: Codec,
    modules: Option<&ModuleTree>,
    loaded: &mut Vec<ModuleRef>,
) -> Result<ResolvedComponent, ResolveError> {
    let field = |f: String| format!("components[{index}] ({}).{f}", c.name);
    let mut col = Collector {
        component: &c.name,
        tree: Tree::default(),
    };
    for (i, d) in c.directories.iter().enumerate() {
        let f = field(format!("directories[{i}]"));
        check_dest(&f, &d.path)?;
        col.insert(
            d.path.clone(),
            Entry {
                kind: EntryKind::Dir,
                mode: mode_or(d.mode, 0o755),
                origin: col.origin(&format!("directories[{i}]")),
            },
        )?;
    }
    for (i, s) in c.symlinks.iter().enumerate() {
        let f = field(format!("symlinks[{i}]"));
        check_dest(&f, &s.path)?;
        if s.target.is_empty() || s.target.contains('\0') {
            return Err(invalid(f, "target is empty or contains a NUL byte"));
        }
        col.insert(
            s.path.clone(),
            Entry {
                kind: EntryKind::Symlink(s.target.clone()),
                mode: 0o777,
                origin: col.origin(&format!("symlinks[{i}]")),
            },
        )?;
    }
    for (i, g) in c.generated.iter().enumerate() {
        let f = field(format!("generated[{i}]"));
        check_dest(&f, &g.dest)?;
        col.insert(
            g.dest.clone(),
            Entry {
                kind: EntryKind::File(Content::Bytes(Arc::new(g.contents.clone().into_bytes()))),
                mode: mode_or(g.mode, 0o644),
                origin: col.origin(&format!("generated[{i}]")),
            },
        )?;
    }
    for (i, file) in c.files.iter().enumerate() {
        let f = field(format!("files[{i}]"));
        check_dest(&f, &file.dest)?;
        let origin = col.origin(&format!("files[{i}] {}", file.source.display()));
        let meta = check_readable(&origin, &file.source)?;
        if !meta.is_file() {
            return Err(invalid(
                f,
                format!(
                    "{} is not a regular file; use `trees` for directories",
                    file.source.display()
                ),
            ));
        }
        col.insert(
            file.dest.clone(),
            Entry {
                kind: EntryKind::File(Content::Path {
                    path: file.source.clone(),
                    size: meta.len(),
                }),
                mode: mode_or(file.mode, normalized_mode(&meta)),
                origin,
            },
        )?;
    }
    for (i, t) in c.trees.iter().enumerate() {
        let f = field(format!("trees[{i}]"));
        let dest = t
            .dest
            .clone()
            .unwrap_or_else(|| t.source.to_string_lossy().into_owned());
        check_dest(&f, &dest)?;
        let origin = col.origin(&format!("trees[{i}] {}", t.source.display()));
        col.add_tree(&t.source, &dest, &origin)?;
    }
    for (i, b) in c.binaries.iter().enumerate() {
        let f = field(format!("binaries[{i}]"));
        let origin = col.origin(&format!("binaries[{i}] {}", b.source.display()));
        let meta = check_readable(&origin, &b.source)?;
        if !meta.is_file() {
            return Err(invalid(
                f,
                format!("{} is not a regular file", b.source.display()),
            ));
        }
        match &b.dest {
            Some(dest) => {
                check_dest(&f, dest)?;
                col.insert(
                    dest.clone(),
                    Entry {
                        kind: EntryKind::File(Content::Path {
                            path: b.source.clone(),
                            size: meta.len(),
                        }),
                        mode: 0o755,
                        origin: origin.clone(),
                    },
                )?;
            }
            None => {
                if !b.source.is_absolute() {
                    return Err(invalid(f, "source must be absolute when dest is not given"));
                }
                col.add_host_path(&b.source, &origin)?;
            }
        }
        for lib in crate::elf::closure(&b.source)? {
            col.add_host_path(&lib, &origin)?;
        }
    }
    if !c.modules.is_empty() {
        let Some(tree) = modules else {
            return Err(invalid(
                field("modules".into()),
                "kernel modules are listed but kernel.modules_dir is not set",
            ));
        };
        let requests: Vec<(String, String)> = c
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (field(format!("modules[{i}]")), m.clone()))
            .collect();
        let base = format!("/lib/modules/{}", tree.version());
        let mut resolved = tree.resolve(&requests)?;
        // Modules an earlier component already ships are loaded from there.
        resolved.retain(|m| !loaded.iter().any(|l| l.name == m.name));
        for m in &resolved {
            let src = tree.dir.join(&m.relpath);
            let origin = col.origin(&format!("modules {}", m.name));
            let meta = check_readable(&origin, &src)?;
            col.insert(
                format!("{base}/{}", m.relpath),
                Entry {
                    kind: EntryKind::File(Content::Path {
                        path: src,
                        size: meta.len(),
                    }),
                    mode: 0o644,
                    origin,
                },
            )?;
            loaded.push(ModuleRef {
                name: m.name.clone(),
                path: format!("{base}/{}", m.relpath),
                optional: m.optional,
                after: m.after.clone(),
            });
        }
        let all: Vec<crate::kmod::Module> = loaded
            .iter()
            .map(|l| crate::kmod::Module {
                name: l.name.clone(),
                relpath: l.path[base.len() + 1..].to_string(),
                optional: l.optional,
                after: l.after.clone(),
            })
            .collect();
        col.insert(
            format!("{base}/modules.dep"),
            Entry {
                kind: EntryKind::File(Content::Bytes(Arc::new(
                    tree.filtered_dep(&all).into_bytes(),
                ))),
                mode: 0o644,
                origin: col.origin("modules (generated modules.dep)"),
            },
        )?;
    }
    let codec = match &c.compression {
        Some(comp) => Codec::from_plan(comp, &field("compression".into()))?,
        // The squashfs image is compressed already: zstd over it saved 0.4 % and cost the
        // kernel's unpack a decompression pass.
        None if c.packing == Packing::Squashfs => Codec::from_plan(
            &Compression {
                algorithm: Algorithm::None,
                level: None,
                window_log: None,
            },
            &field("compression".into()),
        )?,
        None => default_codec,
    };
    Ok(ResolvedComponent {
        name: c.name.clone(),
        codec,
        packing: c.packing,
        tree: col.tree,
    })
}

/// Follows `path` through the image's own symlinks (all components together), so that an entry
/// under `/lib/...` lands in `/usr/lib/...` when `/lib -> usr/lib`: otherwise the kernel would
/// replace the symlink with a directory while unpacking.
fn through_image_links(
    path: &str,
    links: &BTreeMap<String, String>,
    origin: &str,
) -> Result<String, ResolveError> {
    let mut path = path.to_string();
    let mut hops = 0;
    'again: loop {
        // Every proper prefix (the entry itself is not followed).
        let mut idx = 0;
        while let Some(off) = path[idx + 1..].find('/') {
            idx += 1 + off;
            let prefix = &path[..idx];
            if let Some(target) = links.get(prefix) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(ResolveError::Loop {
                        origin: origin.into(),
                        path,
                    });
                }
                path = format!("{}{}", join_target(prefix, target), &path[idx..]);
                continue 'again;
            }
        }
        return Ok(path);
    }
}

/// Checks that no symlink in the image leads into a loop (`a -> b`, `b -> a`).
fn check_link_loops(
    links: &BTreeMap<String, String>,
    origins: &BTreeMap<String, String>,
) -> Result<(), ResolveError> {
    for start in links.keys() {
        let mut cur = start.clone();
        let mut hops = 0;
        while let Some(target) = links.get(&cur) {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(ResolveError::Loop {
                    origin: origins.get(start).cloned().unwrap_or_default(),
                    path: start.clone(),
                });
            }
            cur = through_image_links(&join_target(&cur, target), links, &origins[start])?;
        }
    }
    Ok(())
}

/// Checks a plan against the filesystem and turns it into what the segment writer needs.
pub fn resolve(plan: &Plan) -> Result<ResolvedImage, ResolveError> {
    check_name("name", &plan.name)?;
    let codec = Codec::from_plan(&plan.compression, "compression")?;
    let kmeta = check_readable("kernel.image", &plan.kernel.image)?;
    if !kmeta.is_file() {
        return Err(invalid(
            "kernel.image",
            format!("{} is not a file", plan.kernel.image.display()),
        ));
    }
    let modules = match &plan.kernel.modules_dir {
        Some(dir) => Some(ModuleTree::load(dir)?),
        None => None,
    };
    let mut names = BTreeSet::new();
    for (i, c) in plan.components.iter().enumerate() {
        let f = format!("components[{i}].name");
        check_name(&f, &c.name)?;
        if c.name == "manifest" {
            return Err(invalid(
                f,
                "\"manifest\" is reserved for the segment the builder adds",
            ));
        }
        if !names.insert(c.name.clone()) {
            return Err(invalid(f, format!("two components are named {:?}", c.name)));
        }
    }
    for (i, img) in plan.images.iter().enumerate() {
        let f = format!("images[{i}].name");
        check_name(&f, &img.name)?;
        if !names.insert(format!("image-{}", img.name)) {
            return Err(invalid(
                f,
                format!("segment name image-{} is taken twice", img.name),
            ));
        }
        if img.refs.is_empty() {
            return Err(invalid(
                format!("images[{i}].refs"),
                "give at least one reference",
            ));
        }
    }
    // The init's rules for services, checked here so a plan the node would refuse never builds.
    diskless_contract::image::check_services(&plan.node.services)
        .map_err(|e| invalid("node.services", e))?;
    let runtime = Some(crate::plan::Role::ContainerRuntime);
    if !plan.images.is_empty() && !plan.node.services.iter().any(|s| s.role == runtime) {
        return Err(invalid(
            "images",
            "preloaded images need a service with role \"container-runtime\" (containerd) to import them into",
        ));
    }

    let mut loaded = Vec::new();
    let mut components = Vec::new();
    for (i, c) in plan.components.iter().enumerate() {
        components.push(resolve_component(
            i,
            c,
            codec,
            modules.as_ref(),
            &mut loaded,
        )?);
    }

    // A squashfs-packed component needs the modules the init mounts it with.
    if let Some((i, c)) = plan
        .components
        .iter()
        .enumerate()
        .find(|(_, c)| c.packing == crate::plan::Packing::Squashfs)
    {
        let missing: Vec<&str> = ["loop", "squashfs", "overlay"]
            .into_iter()
            .filter(|m| {
                !loaded.iter().any(|l| l.name == *m)
                    && !modules.as_ref().is_some_and(|t| t.is_builtin(m))
            })
            .collect();
        if !missing.is_empty() {
            return Err(invalid(
                format!("components[{i}] ({}).packing", c.name),
                format!(
                    "squashfs packing needs the kernel modules {} in the image: add them to a component's modules (or use packing \"cpio\")",
                    missing.join(", ")
                ),
            ));
        }
    }

    // Image-wide view: symlinks of every component, then entries rewritten through them, then
    // cross-component conflicts (identical duplicates stay only where they first appear).
    let mut links = BTreeMap::new();
    let mut link_origin = BTreeMap::new();
    for c in &components {
        for (p, e) in &c.tree.entries {
            if let EntryKind::Symlink(t) = &e.kind {
                links.entry(p.clone()).or_insert_with(|| t.clone());
                link_origin
                    .entry(p.clone())
                    .or_insert_with(|| e.origin.clone());
            }
        }
    }
    check_link_loops(&links, &link_origin)?;
    let mut seen: BTreeMap<String, Entry> = BTreeMap::new();
    for c in &mut components {
        let mut tree = Tree::default();
        for (p, e) in std::mem::take(&mut c.tree.entries) {
            let p = through_image_links(&p, &links, &e.origin)?;
            if let Some(old) = seen.get(&p) {
                if !same_entry(old, &e)? {
                    return Err(ResolveError::Conflict {
                        path: p,
                        first: old.origin.clone(),
                        what: describe_difference(old, &e),
                        second: e.origin,
                    });
                }
                if !matches!(e.kind, EntryKind::Dir) {
                    continue;
                }
            }
            insert_checked(&mut tree, p.clone(), e.clone())?;
            seen.entry(p).or_insert(e);
        }
        c.tree = tree;
    }
    // A path that is a directory in one place must not be a symlink in another (usr-merge).
    for (p, e) in &seen {
        if links.contains_key(p) && matches!(e.kind, EntryKind::Dir) {
            return Err(ResolveError::Conflict {
                path: p.clone(),
                first: link_origin[p].clone(),
                second: e.origin.clone(),
                what: "types (file, directory, symlink)",
            });
        }
    }

    Ok(ResolvedImage {
        name: plan.name.clone(),
        description: plan.description.clone(),
        kernel: plan.kernel.image.clone(),
        cmdline: plan.kernel.cmdline.clone(),
        codec,
        components,
        modules: loaded,
        images: plan.images.clone(),
        node: plan.node.clone(),
        plan_sha256: crate::store::sha256_hex(plan.canonical_json().as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_checked() {
        for bad in ["etc/x", "/", "/a/../b", "/a//b", "/a/", "/./a"] {
            assert!(check_dest("f", bad).is_err(), "{bad}");
        }
        check_dest("f", "/etc/containerd/config.toml").unwrap();
    }

    #[test]
    fn targets_join_lexically() {
        assert_eq!(join_target("/lib64", "usr/lib64"), "/usr/lib64");
        assert_eq!(
            join_target("/usr/lib64/ld.so", "../lib/x/ld.so"),
            "/usr/lib/x/ld.so"
        );
        assert_eq!(join_target("/a/b", "/etc/c"), "/etc/c");
    }

    #[test]
    fn entries_follow_image_symlinks() {
        let mut links = BTreeMap::new();
        links.insert("/lib".to_string(), "usr/lib".to_string());
        assert_eq!(
            through_image_links("/lib/x86_64-linux-gnu/libc.so.6", &links, "t").unwrap(),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(through_image_links("/lib", &links, "t").unwrap(), "/lib");
    }

    #[test]
    fn symlink_loops_are_errors() {
        let mut links = BTreeMap::new();
        links.insert("/a".to_string(), "b".to_string());
        links.insert("/b".to_string(), "a".to_string());
        let origins = links
            .keys()
            .map(|k| (k.clone(), "component x".to_string()))
            .collect();
        let e = check_link_loops(&links, &origins).unwrap_err().to_string();
        assert!(e.contains("symlink loop"), "{e}");
    }
}
