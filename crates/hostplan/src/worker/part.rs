//! What one step of the worker plan adds, and how the steps' parts become the plan's segments
//! and services. Generated configuration from every step goes into one `config` segment,
//! last, so that changing it recompresses nothing else.

use diskless_builder::plan::{Component, DirEntry, GeneratedEntry, Service};

/// One step's share of the plan.
#[derive(Debug, Default)]
pub struct Part {
    /// Segments, in image order. Two of one name merge (as `components.<name>` does in the Nix
    /// modules): a later step adds its entries to the earlier segment.
    pub components: Vec<Component>,
    /// Services, in start order.
    pub services: Vec<Service>,
    /// Files for the `config` segment.
    pub config: Vec<GeneratedEntry>,
    /// Directories for the `config` segment.
    pub config_dirs: Vec<DirEntry>,
}

impl From<Component> for Part {
    fn from(c: Component) -> Part {
        Part {
            components: vec![c],
            ..Default::default()
        }
    }
}

/// The segments (each step's in order, then `config`) and the services of `parts`.
pub fn assemble(parts: Vec<Part>) -> (Vec<Component>, Vec<Service>) {
    let mut components: Vec<Component> = Vec::new();
    let mut services = Vec::new();
    let mut config = Component {
        name: "config".into(),
        ..Default::default()
    };
    for part in parts {
        for c in part.components {
            match components.iter_mut().find(|have| have.name == c.name) {
                Some(have) => merge(have, c),
                None => components.push(c),
            }
        }
        services.extend(part.services);
        config.generated.extend(part.config);
        config.directories.extend(part.config_dirs);
    }
    components.push(config);
    (components, services)
}

/// `more`'s entries appended to `into`'s; its segment settings must be `into`'s.
fn merge(into: &mut Component, more: Component) {
    assert!(
        into.packing == more.packing
            && into.compression == more.compression
            && into.squashfs == more.squashfs
            && into.condition_path == more.condition_path,
        "segment {}: two steps set it up differently",
        into.name
    );
    into.files.extend(more.files);
    into.directories.extend(more.directories);
    into.symlinks.extend(more.symlinks);
    into.generated.extend(more.generated);
    into.binaries.extend(more.binaries);
    into.trees.extend(more.trees);
    into.modules.extend(more.modules);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::{bin, dir, gen, service};

    #[test]
    fn same_named_segments_merge_and_config_comes_last() {
        let segment = |name: &str, binary: &str| Component {
            name: name.into(),
            binaries: vec![bin(binary, None)],
            ..Default::default()
        };
        let parts = vec![
            Part {
                components: vec![segment("kubelet", "/k")],
                services: vec![service("kubelet", ["/k"])],
                config: vec![gen("/etc/a", "a")],
                config_dirs: vec![dir("/etc/d", 0o755)],
            },
            Part::from(segment("other", "/o")),
            Part {
                components: vec![segment("kubelet", "/p")],
                services: vec![service("proxy", ["/p"])],
                config: vec![gen("/etc/b", "b")],
                ..Default::default()
            },
        ];
        let (components, services) = assemble(parts);
        let names: Vec<&str> = components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["kubelet", "other", "config"]);
        assert_eq!(components[0].binaries, [bin("/k", None), bin("/p", None)]);
        assert_eq!(
            components[2].generated,
            [gen("/etc/a", "a"), gen("/etc/b", "b")]
        );
        assert_eq!(components[2].directories, [dir("/etc/d", 0o755)]);
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kubelet", "proxy"]);
    }
}
