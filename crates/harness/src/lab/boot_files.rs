//! The files a boot serves, from what `run`/`check` were given: a build output's image entry
//! (as built, or with the check hook's argument and initrd rendered in), or a published boot
//! server directory's entries (as published, or likewise rendered).

use crate::error::Context;
use crate::error::Error;
use crate::machine::boot_server::BootFiles;
use crate::machine::hook;
use crate::options::BootOptions;
use diskless_builder::ipxe::Extra;
use diskless_builder::words::BaseUrl;
use diskless_builder::{index::Index, store::object_path};
use diskless_publish::Additions;
use std::path::Path;

/// A published boot server: every entry as served, or with `add` (the check hook) rendered
/// into every image and host entry, and a kernel for the KVM probe.
fn prepare_server(args: &BootOptions, add: &Additions) -> crate::error::Result<BootFiles> {
    let dest = &args.out;
    let generation = diskless_publish::generations(dest)
        .with_context(|| format!("cannot read the generations of {}", dest.display()))?
        .pop()
        .ok_or_else(|| {
            Error::bad_input(format!(
                "{} has no generations/: publish to it first",
                dest.display()
            ))
        })?;
    let (name, image) = generation
        .images
        .iter()
        .next()
        .ok_or_else(|| Error::bad_input("the newest generation publishes no image"))?;
    let index = Index::load(&dest.join(object_path(&image.index)))
        .with_context(|| format!("cannot load the index of image {name}"))?;
    if !dest.join("boot.ipxe").is_file() {
        return Err(Error::bad_input(format!(
            "{} has no boot.ipxe: is it a published boot server directory?",
            dest.display()
        )));
    }
    let scripts = if add.cmdline.is_empty() && add.initrds.is_empty() {
        // Exactly what the lab's boot server serves.
        published_entries(dest)?
    } else {
        diskless_publish::local_entries(dest, add)
            .context("cannot render the boot server's entries")?
    };
    Ok(BootFiles {
        files: scripts
            .into_iter()
            .map(|(rel, text)| (rel, text.into_bytes()))
            .collect(),
        kernel: dest.join(index.kernel.object_path()),
        image: name.to_string(),
    })
}

/// The `.ipxe` files of a boot server directory and its `hosts/`, as they are.
fn published_entries(dest: &Path) -> crate::error::Result<Vec<(String, String)>> {
    let mut scripts = Vec::new();
    for dir in ["", "hosts"] {
        let Ok(rd) = std::fs::read_dir(dest.join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".ipxe") {
                continue;
            }
            let rel = if dir.is_empty() {
                file
            } else {
                format!("{dir}/{file}")
            };
            scripts.push((rel, std::fs::read_to_string(e.path())?));
        }
    }
    scripts.sort();
    Ok(scripts)
}

/// `add` holds the check hook's kernel argument and initrd; `hook` the segment's bytes.
pub fn prepare(
    args: &BootOptions,
    add: &Additions,
    hook: Option<Vec<u8>>,
) -> crate::error::Result<BootFiles> {
    let mut prepared = if args.server {
        prepare_server(args, add)?
    } else {
        prepare_build(args, add)?
    };
    if let Some(bytes) = hook {
        prepared.files.push((hook::SEGMENT.to_string(), bytes));
    }
    Ok(prepared)
}

/// A build output directory: its image's entry, or with `add` rendered in.
fn prepare_build(args: &BootOptions, add: &Additions) -> crate::error::Result<BootFiles> {
    let index_path = args.out.join(format!("{}.json", args.name));
    let index_bytes = std::fs::read(&index_path).map_err(|e| {
        Error::bad_input(format!(
            "cannot read {}: {e}: is {} the output of `diskless build` (and --name right)?",
            index_path.display(),
            args.out.display()
        ))
    })?;
    let index = Index::load(&index_path).map_err(|e| {
        Error::bad_input(format!(
            "{} is not an image index: {e:#}",
            index_path.display()
        ))
    })?;
    let kernel = args.out.join(index.kernel.object_path());
    for path in std::iter::once(kernel.clone()).chain(
        index
            .segments
            .iter()
            .map(|s| args.out.join(s.object_path())),
    ) {
        if !path.is_file() {
            return Err(Error::bad_input(format!(
                "{} is missing: the output directory is incomplete; rebuild it",
                path.display()
            )));
        }
    }
    let sha = diskless_builder::store::sha256_hex(&index_bytes);
    let script = if add.cmdline.is_empty() && add.initrds.is_empty() {
        // Exactly what a lab's boot server would serve.
        let p = args.out.join(format!("{}.ipxe", args.name));
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?
    } else {
        let extra = Extra {
            comment: None,
            cmdline: add.cmdline.clone(),
            initrds: add.initrds.clone(),
        };
        diskless_builder::ipxe::script(&index, &sha, &BaseUrl::default(), &extra)
    };
    Ok(BootFiles {
        files: vec![("boot.ipxe".into(), script.into_bytes())],
        kernel,
        image: index.name.into(),
    })
}
