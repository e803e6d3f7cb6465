//! The components as one image: the kernel unpacks every segment into one root, so paths are
//! followed through the symlinks of all components together, loops are refused, and an entry
//! two components share must be the same in both.

use super::error::{ResolveError, MAX_HOPS};
use super::insert::{check_same, insert_checked};
use super::resolved::ResolvedComponent;
use crate::tree::{Entry, EntryKind, Tree};
use std::collections::BTreeMap;

/// Lexically joins a symlink target onto the directory holding the link.
pub(super) fn join_target(link: &str, target: &str) -> String {
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

/// Image-wide view: symlinks of every component, then entries rewritten through them, then
/// cross-component conflicts (identical duplicates stay only where they first appear).
pub(super) fn merge_through_links(
    components: &mut [ResolvedComponent],
) -> Result<(), ResolveError> {
    let mut links = BTreeMap::new();
    let mut link_origin = BTreeMap::new();
    for c in components.iter() {
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
    for c in components.iter_mut() {
        let mut tree = Tree::default();
        for (p, e) in std::mem::take(&mut c.tree.entries) {
            let p = through_image_links(&p, &links, &e.origin)?;
            if let Some(old) = seen.get(&p) {
                check_same(&p, old, &e)?;
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
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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
