//! `diskless publish | rollback | gc` against a boot server directory (the TFTP/HTTP root).
//!
//! Safety comes from ordering, and this file holds that ordering, once, for every transport:
//! 1. objects are copied (temp name, fsync, rename, hash checked again) before anything refers
//!    to them;
//! 2. a generation record is written before the entries that render it;
//! 3. every entry is replaced atomically: image entries, then host entries, then the shared
//!    `menu.ipxe` and `boot.ipxe` that lead to them;
//! 4. `gc` removes records before the objects only they referenced.
//!
//! So a publish killed at any point leaves every entry pointing at complete objects: machines
//! boot the old image or the new one, never a half. Publishes to one destination are serialised
//! with `flock` on `DEST/.lock`. `DISKLESS_FAILPOINT` (see `failpoint`) lets tests kill a
//! publish between the steps.
//!
//! DEST is a local directory or `ssh://host/path`; `dest` does the file operations for either.
//! The rest, one concern per module: `generation` (the records and what they reference),
//! `node` (per-node segments), `entries` (rendering records to iPXE text), `inventory`,
//! `verify` (`verify --to`).
//!
//! Layout of DEST (see docs/boot-server.md):
//! `boot.ipxe` (what DHCP hands out) → `hosts/<mac>.ipxe` if it exists, else the default image's
//! entry or `menu.ipxe`; `<image>.ipxe`; `objects/<sha256>`; `generations/<n>.json`.

use crate::inventory::Inventory;
use dest::{Dest, Snapshot, Source};
use diskless_builder::index::Index;
use diskless_builder::store::sha256_hex;
use diskless_builder::words::Word;
use generation::{read_generations, read_indexes, record, referenced, GENERATION_VERSION};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub mod authorized_keys;
mod controlplane;
mod dest;
mod entries;
mod error;
mod foreign;
mod generation;
pub mod inventory;
pub mod kubeconfig;
mod local;
mod node;
pub mod snapshot;
pub mod token;
mod tool;
mod verify;

pub use controlplane::ControlPlaneError;
pub use dest::DestError;
pub use entries::{entries, Additions, Entries, EntryError};
pub use error::PublishError;
pub use generation::{format_utc, Generation, Indexes, PublishedHost, PublishedImage};
pub use generation::{GenerationError, IndexError};
pub use local::{generations, local_entries};
pub use node::NodeError;
pub use tool::ToolError;
pub use verify::verify_dest;

#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Output directory of `diskless build` (every `<name>.json` in it is published).
    pub out: PathBuf,
    /// The boot server: a directory (TFTP/HTTP root, or a mounted share) or
    /// `ssh://[user@]host[:port]/path` (ssh command from `DISKLESS_SSH`, default `ssh`).
    pub to: String,
    /// Inventory of machines (TOML, docs/boot-server.md); default: keep the published one.
    pub inventory: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub dest: String,
    /// None when nothing changed.
    pub generation: Option<u64>,
    pub objects_copied: u64,
    /// Of those, objects DEST had under their name with other bytes (copied again).
    pub objects_repaired: u64,
    pub bytes_copied: u64,
    pub images: Vec<String>,
    pub hosts: usize,
}

#[derive(Debug, Serialize)]
pub struct GcReport {
    pub kept_generations: Vec<u64>,
    pub removed_generations: Vec<u64>,
    pub removed_objects: u64,
    pub freed_bytes: u64,
}

/// Test hook: `DISKLESS_FAILPOINT=<step>` kills the process right after that step, to prove
/// that a publish interrupted there leaves a consistent boot server.
fn failpoint(step: &str) {
    if std::env::var("DISKLESS_FAILPOINT").is_ok_and(|v| v == step) {
        eprintln!("diskless: failpoint {step}: aborting");
        std::process::abort();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The build output's image indexes by image name, each with its sha256.
type BuildImages = BTreeMap<Word, (String, Index)>;

/// Every image index in the build output `out`, by image name, with its sha256. Read
/// completely before DEST is touched, so a bad build output fails before any write.
fn read_build_output(out: &Path) -> Result<BuildImages, PublishError> {
    let mut new_images = BTreeMap::new();
    if !out.exists() {
        return Err(PublishError::NoBuildOutput {
            out: out.to_owned(),
        });
    }
    let unreadable = |cause| PublishError::ReadBuildOutput {
        out: out.to_owned(),
        cause,
    };
    let mut entries: Vec<_> = std::fs::read_dir(out)
        .map_err(unreadable)?
        .collect::<Result<_, _>>()
        .map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(image) = name.strip_suffix(".json") {
            let index =
                Index::load(&e.path()).map_err(|e| PublishError::BuildIndex(format!("{e:#}")))?;
            let bytes = diskless_builder::store::read_regular(&e.path()).map_err(|cause| {
                PublishError::BuildIndex(format!("cannot read {}: {cause}", e.path().display()))
            })?;
            // The name entries use is the index's own (checked when it was read), and a
            // renamed index file would publish one image under two names.
            if index.name.as_str() != image {
                return Err(PublishError::RenamedIndex {
                    path: e.path(),
                    name: index.name.to_string(),
                });
            }
            // What `verify OUT` rejects is not published: missing objects, sizes that lie.
            let problems = diskless_builder::verify::index_objects(out, &name, &index);
            if !problems.is_empty() {
                return Err(PublishError::Incomplete {
                    out: out.to_owned(),
                    problems: problems.join("; "),
                });
            }
            new_images.insert(index.name.clone(), (sha256_hex(&bytes), index));
        }
    }
    if new_images.is_empty() {
        return Err(PublishError::NoImages {
            out: out.to_owned(),
        });
    }
    Ok(new_images)
}

/// Copies the build output's images to DEST and records them as a new generation (with the
/// inventory's hosts, or the current ones); changes nothing when nothing changed.
pub fn publish(args: &PublishOptions) -> Result<PublishReport, PublishError> {
    let dest = Dest::parse(&args.to)?;
    let inventory = load_inventory(args.inventory.as_deref())?;
    let new_images = read_build_output(&args.out)?;
    refuse_foreign(&dest)?;
    // The first contact with DEST: unreachable or unwritable fails here, before any write.
    let _lock = dest.lock(true)?;
    let snap = dest.snapshot()?;
    let gens = read_generations(&dest, &snap)?;
    refuse_foreign_under_lock(&dest, &snap, &gens)?;
    let current = gens.last().cloned();
    let now = now();
    let images = merged_images(current.as_ref(), &new_images, now);
    let machines = machines(inventory.as_ref(), current.as_ref(), &images)?;
    let needed = needed_objects(&new_images);
    let damaged = damaged_objects(&dest, &snap, &needed)?;
    let missing = missing_objects(&args.out, &snap, &needed, &damaged);
    let bytes = copy_objects(&dest, &missing, &machines.node_segments)?;
    failpoint("objects-copied");
    let next = next_generation(current.as_ref(), now, images, machines);
    let (next, recorded) = record_if_changed(&dest, current, next)?;
    let indexes = entry_indexes(&dest, &new_images, &next)?;
    render(&dest, &snap, &next, &indexes)?;
    Ok(PublishReport {
        dest: dest.name(),
        generation: recorded.then_some(next.number),
        objects_copied: missing.len() as u64,
        objects_repaired: damaged.len() as u64,
        bytes_copied: bytes,
        images: new_images.keys().map(Word::to_string).collect(),
        hosts: next.hosts.len(),
    })
}

/// Read before DEST is touched, so a bad inventory fails before any write.
fn load_inventory(path: Option<&Path>) -> Result<Option<(&Path, Inventory)>, PublishError> {
    path.map(|p| Ok((p, Inventory::load(p)?))).transpose()
}

/// A directory that is not ours is refused before the lock creates anything in it.
fn refuse_foreign(dest: &Dest) -> Result<(), PublishError> {
    // Over ssh a DEST that cannot be listed yet (missing, unreachable) is left to the lock to
    // create or report.
    let names = match dest {
        Dest::Local(root) => foreign::local_names(root),
        Dest::Ssh(_) => dest
            .snapshot()
            .map(|s| s.files.into_keys().collect())
            .unwrap_or_default(),
    };
    let has_record = names
        .iter()
        .any(|n| n.starts_with("generations/") && n.ends_with(".json"));
    let foreign = foreign::foreign(&names);
    if !has_record && !foreign.is_empty() {
        return Err(foreign::refusal(&dest.name(), &foreign));
    }
    Ok(())
}

/// Again under the lock, for every transport (over ssh this is the first look).
fn refuse_foreign_under_lock(
    dest: &Dest,
    snap: &Snapshot,
    gens: &[Generation],
) -> Result<(), PublishError> {
    if gens.is_empty() {
        let foreign = foreign::foreign(snap.files.keys());
        if !foreign.is_empty() {
            return Err(foreign::refusal(&dest.name(), &foreign));
        }
    }
    Ok(())
}

/// The current images with the new ones over them; an unchanged index keeps its time (no change).
fn merged_images(
    current: Option<&Generation>,
    new_images: &BuildImages,
    now: u64,
) -> BTreeMap<Word, PublishedImage> {
    let mut images = current.map(|g| g.images.clone()).unwrap_or_default();
    for (name, (sha, index)) in new_images {
        let published_at = match images.get(name) {
            Some(old) if &old.index == sha => old.published_at,
            _ => now,
        };
        images.insert(
            name.clone(),
            PublishedImage {
                index: sha.clone(),
                description: index.description.clone(),
                published_at,
            },
        );
    }
    images
}

/// What a generation says about machines, with the node segments made for them (stored in step 1).
struct Machines {
    default_image: Option<Word>,
    menu_timeout: u32,
    hosts: BTreeMap<String, PublishedHost>,
    node_segments: node::NewSegments,
}

/// The inventory's machines, checked against the images; without one the current ones, or none.
fn machines(
    inventory: Option<&(&Path, Inventory)>,
    current: Option<&Generation>,
    images: &BTreeMap<Word, PublishedImage>,
) -> Result<Machines, PublishError> {
    let names: BTreeSet<String> = images.keys().map(Word::to_string).collect();
    Ok(match (inventory, current) {
        (Some((path, inv)), _) => {
            inv.check_images(path, &names)?;
            let (hosts, node_segments) = node::hosts(inv, path, current)?;
            Machines {
                default_image: inv
                    .default_image
                    .clone()
                    .map(Word::new)
                    .transpose()
                    .map_err(PublishError::DefaultImage)?,
                menu_timeout: inv.menu_timeout,
                hosts,
                node_segments,
            }
        }
        (None, Some(g)) => Machines {
            default_image: g.default_image.clone(),
            menu_timeout: g.menu_timeout,
            hosts: g.hosts.clone(),
            node_segments: Vec::new(),
        },
        (None, None) => Machines {
            default_image: None,
            menu_timeout: 5,
            hosts: BTreeMap::new(),
            node_segments: Vec::new(),
        },
    })
}

/// Only what this publish brings is checked and copied: the new indexes and their objects.
fn needed_objects(new_images: &BuildImages) -> BTreeSet<&str> {
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    for (sha, index) in new_images.values() {
        needed.insert(sha.as_str());
        needed.extend(index.objects().into_iter().map(|o| o.sha256));
    }
    needed
}

/// Needed objects DEST has that no longer hash to their name (overwritten, truncated).
fn damaged_objects(
    dest: &Dest,
    snap: &Snapshot,
    needed: &BTreeSet<&str>,
) -> Result<BTreeSet<String>, PublishError> {
    // Only those are hashed, on the server for ssh.
    let present: BTreeMap<String, u64> = needed
        .iter()
        .map(|o| diskless_builder::store::object_path(o))
        .filter_map(|rel| snap.files.get(&rel).map(|size| (rel, *size)))
        .collect();
    Ok(dest
        .hash_objects(&present)?
        .into_iter()
        .filter(|h| h.digest.as_deref() != Ok(h.name.as_str()))
        .map(|h| h.name)
        .collect())
}

/// The needed objects to copy from the build output: those DEST lacks, and the damaged ones.
fn missing_objects<'a>(
    out: &Path,
    snap: &Snapshot,
    needed: &BTreeSet<&'a str>,
    damaged: &BTreeSet<String>,
) -> Vec<(&'a str, PathBuf)> {
    needed
        .iter()
        .filter(|o| {
            damaged.contains(**o)
                || !snap
                    .files
                    .contains_key(&diskless_builder::store::object_path(o))
        })
        .map(|o| (*o, out.join(diskless_builder::store::object_path(o))))
        .collect()
}

/// Step 1: objects first, before anything refers to them; returns the build output's bytes.
fn copy_objects(
    dest: &Dest,
    missing: &[(&str, PathBuf)],
    node_segments: &node::NewSegments,
) -> Result<u64, PublishError> {
    // New node segments go in the same batch (one session over ssh); the report counts only
    // what came from the build output.
    let sources: Vec<(&str, Source)> = node_segments
        .iter()
        .map(|(sha, bytes)| (sha.as_str(), Source::Bytes(bytes)))
        .chain(missing.iter().map(|(sha, p)| (*sha, Source::File(p))))
        .collect();
    let made: u64 = node_segments.iter().map(|(_, b)| b.len() as u64).sum();
    Ok(dest.put_objects(&sources)? - made)
}

/// The generation this publish makes: numbered after `current`, published `now`.
fn next_generation(
    current: Option<&Generation>,
    now: u64,
    images: BTreeMap<Word, PublishedImage>,
    machines: Machines,
) -> Generation {
    Generation {
        version: GENERATION_VERSION,
        number: current.map(|g| g.number + 1).unwrap_or(1),
        published_at: now,
        images,
        default_image: machines.default_image,
        menu_timeout: machines.menu_timeout,
        hosts: machines.hosts,
    }
}

/// Step 2: the record, unless only number and time would differ (then nothing to write).
fn record_if_changed(
    dest: &Dest,
    current: Option<Generation>,
    next: Generation,
) -> Result<(Generation, bool), PublishError> {
    if let Some(c) = current {
        let mut same = next.clone();
        same.number = c.number;
        same.published_at = c.published_at;
        if same == c {
            return Ok((c, false));
        }
    }
    record(dest, &next)?;
    failpoint("generation-recorded");
    Ok((next, true))
}

/// The indexes the entries render: the build output's, already read, and DEST's for the rest.
fn entry_indexes(
    dest: &Dest,
    new_images: &BuildImages,
    next: &Generation,
) -> Result<Indexes, PublishError> {
    let mut indexes: Indexes = new_images
        .values()
        .map(|(sha, index)| (sha.clone(), Ok(index.clone())))
        .collect();
    read_indexes(
        dest,
        &mut indexes,
        next.images.values().map(|i| i.index.clone()),
    )?;
    Ok(indexes)
}

/// Restores the previous index of `image` (the newest earlier generation with a different
/// one) as a new generation.
pub fn rollback(to: &str, image: &str) -> Result<u64, PublishError> {
    let dest = Dest::parse(to)?;
    let _lock = dest.lock(false)?;
    let snap = dest.snapshot()?;
    let files = &snap.files;
    let gens = read_generations(&dest, &snap)?;
    let current = gens.last().ok_or(PublishError::NothingPublished)?;
    let (key, now_index) =
        current
            .images
            .get_key_value(image)
            .ok_or_else(|| PublishError::NotPublished {
                image: image.to_string(),
                dest: dest.name(),
            })?;
    let previous = gens
        .iter()
        .rev()
        .filter_map(|g| g.images.get(image))
        .find(|i| i.index != now_index.index)
        .ok_or_else(|| PublishError::NoEarlierVersion {
            image: image.to_string(),
        })?;
    let mut next = current.clone();
    next.number += 1;
    next.published_at = now();
    next.images.insert(key.clone(), previous.clone());
    let mut indexes = Indexes::new();
    read_indexes(
        &dest,
        &mut indexes,
        next.images.values().map(|i| i.index.clone()),
    )?;
    let needed = referenced(&indexes, &next).map_err(|cause| PublishError::RollbackIndex {
        image: image.to_string(),
        cause,
    })?;
    for o in needed {
        if !files.contains_key(&diskless_builder::store::object_path(&o)) {
            return Err(PublishError::Collected {
                image: image.to_string(),
                object: o,
            });
        }
    }
    record(&dest, &next)?;
    render(&dest, &snap, &next, &indexes)?;
    Ok(next.number)
}

/// Keeps the newest `keep` generations and the objects they reference; removes the rest.
pub fn gc(to: &str, keep: usize) -> Result<GcReport, PublishError> {
    let dest = Dest::parse(to)?;
    if keep == 0 {
        return Err(PublishError::KeepNone);
    }
    let _lock = dest.lock(false)?;
    let snap = dest.snapshot()?;
    let files = &snap.files;
    let gens = read_generations(&dest, &snap)?;
    let split = gens.len().saturating_sub(keep);
    let (old, kept) = gens.split_at(split);
    let mut indexes = Indexes::new();
    read_indexes(
        &dest,
        &mut indexes,
        kept.iter()
            .flat_map(|g| g.images.values().map(|i| i.index.clone())),
    )?;
    let mut live = BTreeSet::new();
    for g in kept {
        live.extend(referenced(&indexes, g)?);
    }
    let mut report = GcReport {
        kept_generations: kept.iter().map(|g| g.number).collect(),
        removed_generations: old.iter().map(|g| g.number).collect(),
        removed_objects: 0,
        freed_bytes: 0,
    };
    // Step 4, records first: a crash after this step leaves unreferenced objects, never dangling records.
    let records: Vec<String> = old
        .iter()
        .map(|g| format!("generations/{}.json", g.number))
        .collect();
    dest.remove(&records)?;
    let mut dead = Vec::new();
    for (rel, size) in files {
        if let Some(name) = rel.strip_prefix("objects/") {
            if !live.contains(name) {
                report.freed_bytes += size;
                report.removed_objects += 1;
                dead.push(rel.clone());
            }
        }
    }
    dest.remove(&dead)?;
    Ok(report)
}

/// Step 3: renders every entry of a generation into DEST; `snap` is DEST as read before.
/// An entry already holding exactly its new text is left alone, so a no-op publish writes nothing.
fn render(
    dest: &Dest,
    snap: &Snapshot,
    g: &Generation,
    indexes: &Indexes,
) -> Result<(), PublishError> {
    let (files, current) = (&snap.files, &snap.texts);
    // Each group is one batch (one round trip over ssh), written in this order.
    let changed = |group: Vec<(String, String)>| -> Vec<(String, Vec<u8>)> {
        group
            .into_iter()
            .filter(|(rel, text)| current.get(rel).is_none_or(|old| old != text.as_bytes()))
            .map(|(rel, text)| (rel, text.into_bytes()))
            .collect()
    };
    let entries = entries::entries(g, indexes, &Additions::default())?;
    dest.write_batch(&changed(entries.images))?;
    failpoint("images-rendered");
    let hosts = entries.hosts;
    dest.write_batch(&changed(hosts))?;
    // Hosts no longer in the inventory lose their entry (and fall back to the default).
    let stale: Vec<String> = files
        .keys()
        .filter(|f| {
            f.strip_prefix("hosts/")
                .and_then(|n| n.strip_suffix(".ipxe"))
                .is_some_and(|mac| !g.hosts.contains_key(mac))
        })
        .cloned()
        .collect();
    dest.remove(&stale)?;
    failpoint("hosts-rendered");
    dest.write_batch(&changed(entries.shared))?;
    Ok(())
}
