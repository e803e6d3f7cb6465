//! Rules on what a plan names, checked before anything is written: names, destinations, modes,
//! and source files that exist and can be read.

use super::error::{invalid, ResolveError};
use crate::plan::{Component, Mode, Packing, Plan};
use std::collections::BTreeSet;
use std::path::Path;

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

/// Segment names (components and `image-<name>`) are unique and not the builder's own; preloaded
/// images have references and a container runtime to import them.
pub(super) fn check_segments_and_services(plan: &Plan) -> Result<(), ResolveError> {
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
        // The init refuses a contract with a ref containerd could not parse: so does the plan.
        for (j, r) in img.refs.iter().enumerate() {
            diskless_contract::reference::Reference::qualified(r)
                .map_err(|e| invalid(format!("images[{i}].refs[{j}]"), e))?;
        }
    }
    // The init's rules for services, checked here so a plan the node would refuse never builds.
    diskless_contract::image::check_services(&plan.node.services)
        .map_err(|e| invalid("node.services", e))?;
    diskless_contract::image::check_network(&plan.node.network)
        .map_err(|e| invalid("node.network", e))?;
    let runtime = Some(crate::plan::Role::ContainerRuntime);
    if !plan.images.is_empty() && !plan.node.services.iter().any(|s| s.role == runtime) {
        return Err(invalid(
            "images",
            "preloaded images need a service with role \"container-runtime\" (containerd) to import them into",
        ));
    }
    Ok(())
}

/// A component's `condition_path`: absolute (the contract's rule, which the init applies too),
/// and only on a squashfs-packed component, the only kind the init can leave out.
pub(super) fn check_component_condition(
    field: &str,
    c: &Component,
) -> Result<Option<String>, ResolveError> {
    let Some(p) = &c.condition_path else {
        return Ok(None);
    };
    diskless_contract::image::check_condition_path(p).map_err(|e| invalid(field, e))?;
    if c.packing == Packing::Cpio {
        return Err(invalid(
            field,
            "only a squashfs-packed component can be left out at boot (the kernel unpacks a cpio segment before the init runs): set packing \"squashfs\" or drop condition_path",
        ));
    }
    Ok(Some(p.clone()))
}

/// Source file mode → image mode: executable or not, nothing else from the build host.
pub(super) fn normalized_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.is_dir() || meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// The plan's mode if it gives one, else the entry kind's default.
pub(super) fn mode_or(mode: Option<Mode>, default: u32) -> u32 {
    mode.map(|m| m.0).unwrap_or(default)
}

/// A source must exist; a regular file must also open, so it fails before anything is written.
pub(super) fn check_readable(origin: &str, path: &Path) -> Result<std::fs::Metadata, ResolveError> {
    let read_err = |cause| ResolveError::Read {
        origin: origin.into(),
        path: path.to_owned(),
        cause,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.is_file() {
        std::fs::File::open(path).map_err(read_err)?;
    }
    Ok(meta)
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
    fn a_component_condition_is_absolute_and_needs_squashfs_packing() {
        let c = |packing, path: &str| Component {
            name: "kube-proxy".into(),
            packing,
            condition_path: Some(path.into()),
            ..Default::default()
        };
        let f = "components[4] (kube-proxy).condition_path";
        let join = "/.diskless/node/kubelet/bootstrap-kubeconfig";
        assert_eq!(
            check_component_condition(f, &c(Packing::Squashfs, join)).unwrap(),
            Some(join.to_string())
        );
        assert_eq!(
            check_component_condition(f, &Component::default()).unwrap(),
            None
        );
        let e = check_component_condition(f, &c(Packing::Squashfs, "node/x"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(f) && e.contains("absolute"), "{e}");
        let e = check_component_condition(f, &c(Packing::Cpio, join))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(f) && e.contains("packing \"squashfs\"") && e.contains("drop"),
            "{e}"
        );
    }
}
