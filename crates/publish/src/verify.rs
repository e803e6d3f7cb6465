//! `verify --to DEST`: the boot server checked against the promises publish makes.

use crate::dest::{Dest, DestError};
use crate::error::PublishError;
use crate::generation::{index_of, read_generations, read_indexes, referenced, Indexes};
use diskless_builder::verify::VerifyReport;
use std::collections::{BTreeMap, BTreeSet};

/// `verify --to DEST`: objects hash to their names, every entry refers to existing objects,
/// and no per-node (secret) segment is reachable from a shared entry.
pub fn verify_dest(to: &str) -> Result<VerifyReport, PublishError> {
    let dest = Dest::parse(to)?;
    let (snap, mut report) = match &dest {
        Dest::Local(path) => {
            let report = diskless_builder::verify::verify_objects(path)
                .map_err(|e| PublishError::VerifyObjects(format!("{e:#}")))?;
            (dest.snapshot()?, report)
        }
        Dest::Ssh(_) => {
            let snap = dest.snapshot()?;
            let report = verify_remote_objects(&dest, &snap.files)?;
            (snap, report)
        }
    };
    let files = &snap.files;
    let gens = read_generations(&dest, &snap)?;
    let Some(current) = gens.last() else {
        report
            .problems
            .push("no generation recorded: nothing published".into());
        return Ok(report);
    };
    report.images = current.images.keys().map(ToString::to_string).collect();
    let mut indexes = Indexes::new();
    read_indexes(
        &dest,
        &mut indexes,
        gens.iter()
            .flat_map(|g| g.images.values().map(|i| i.index.clone())),
    )?;
    for g in &gens {
        match referenced(&indexes, g) {
            Ok(objs) => {
                for o in objs {
                    if !files.contains_key(&diskless_builder::store::object_path(&o)) {
                        report
                            .problems
                            .push(format!("generation {}: object {o} is missing", g.number));
                    }
                }
            }
            Err(e) => report
                .problems
                .push(format!("generation {}: {e:#}", g.number)),
        }
    }
    let secrets: BTreeSet<String> = gens
        .iter()
        .flat_map(|g| g.hosts.values().map(|h| h.node_segment.sha256.clone()))
        .collect();
    for (rel, bytes) in snap.texts.iter().filter(|(rel, _)| is_entry(rel)) {
        let text = String::from_utf8_lossy(bytes);
        let in_hosts = rel.starts_with("hosts/");
        for sha in diskless_builder::ipxe::referenced_objects(&text) {
            if !files.contains_key(&diskless_builder::store::object_path(sha)) {
                report
                    .problems
                    .push(format!("{rel}: refers to objects/{sha}, which is missing"));
            }
            if secrets.contains(sha) && !in_hosts {
                report.problems.push(format!(
                    "{rel}: shared entry refers to per-node segment {sha}"
                ));
            }
        }
    }
    // No image index may list a per-node segment.
    for img in current.images.values() {
        if let Ok(index) = index_of(&indexes, &img.index) {
            for s in &index.segments {
                if secrets.contains(&s.sha256) {
                    report.problems.push(format!(
                        "image {}: segment {} is a per-node segment",
                        index.name, s.name
                    ));
                }
            }
        }
    }
    Ok(report)
}

/// The object half of `verify` for a destination without a local path: digests computed on
/// the server.
fn verify_remote_objects(
    dest: &Dest,
    files: &BTreeMap<String, u64>,
) -> Result<VerifyReport, DestError> {
    let mut report = VerifyReport {
        objects: 0,
        bytes: 0,
        images: Vec::new(),
        problems: Vec::new(),
    };
    for h in dest.hash_objects(files)? {
        report.object(&h.name, || h.digest.map(|d| (d, h.size)));
    }
    Ok(report)
}

/// `<image>.ipxe` and `hosts/<mac>.ipxe`: the names machines fetch.
fn is_entry(rel: &str) -> bool {
    rel.ends_with(".ipxe")
        && match rel.split_once('/') {
            None => true,
            Some((dir, name)) => dir == "hosts" && !name.contains('/'),
        }
}
