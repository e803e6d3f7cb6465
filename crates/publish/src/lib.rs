//! `diskless publish | rollback | gc` against a boot server directory (the TFTP/HTTP root).
//!
//! Safety comes from ordering: objects are copied (temp name, fsync, rename, hash checked again)
//! before anything refers to them; a generation record is written before the entries that
//! render it; every entry is replaced atomically. So a publish killed at any point leaves every
//! entry pointing at complete objects: machines boot the old image or the new one, never a half.
//! Publishes to one destination are serialised with `flock` on `DEST/.lock`. DEST is a local
//! directory or `ssh://host/path`; `dest` does the file operations for either, so this file
//! holds the ordering that the safety argument rests on, once.
//!
//! Layout of DEST (see docs/boot-server.md):
//! `boot.ipxe` (what DHCP hands out) → `hosts/<mac>.ipxe` if it exists, else the default image's
//! entry or `menu.ipxe`; `<image>.ipxe`; `objects/<sha256>`; `generations/<n>.json`.

use crate::inventory::{Host, Inventory, KubeletMode};
use anyhow::{bail, Context};
use dest::{Dest, Snapshot, Source};
use diskless_build::index::{Artifact, Index};
use diskless_build::store::sha256_hex;
use diskless_build::tree::{Content, Entry, EntryKind, Tree};
use diskless_contract::node::{NodeConfig, BOOTSTRAP_KUBECONFIG, CLIENT_CA, NODE_JSON};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod dest;
mod entries;
pub mod inventory;
pub use entries::Additions;

const GENERATION_VERSION: u32 = 1;

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

/// One publish: what the boot server serves, all of it derived from this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    pub version: u32,
    pub number: u64,
    /// Seconds since 1970 (publishing is an event; its time is not part of any image).
    pub published_at: u64,
    pub images: BTreeMap<String, PublishedImage>,
    pub default_image: Option<String>,
    pub menu_timeout: u32,
    /// By normalized MAC (`52-54-00-12-34-56`).
    pub hosts: BTreeMap<String, PublishedHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedImage {
    /// sha256 of the image index.
    pub index: String,
    pub description: String,
    /// When this index was first published.
    pub published_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedHost {
    pub hostname: String,
    pub image: String,
    pub kernel_args: String,
    /// The per-node segment (identity and secrets), served only through this host's entry.
    pub node_segment: Artifact,
    /// sha256 of what went into the node segment, to reuse it when nothing changed.
    pub inputs: String,
}

#[derive(Debug, Serialize)]
pub struct PublishReport {
    pub dest: String,
    /// None when nothing changed.
    pub generation: Option<u64>,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub images: Vec<String>,
    pub hosts: usize,
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

/// `2026-11-24 23:05 UTC` from seconds since 1970 (civil-from-days, Howard Hinnant).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Every entry of a local boot server directory's newest generation, rendered afresh with
/// `add` (the harness's check hook): what `diskless check --server` serves.
pub fn local_entries(dest: &Path, add: &Additions) -> anyhow::Result<Vec<(String, String)>> {
    let d = Dest::Local(dest.to_owned());
    let snap = d.snapshot()?;
    let g = read_generations(&d, &snap)?.pop().with_context(|| {
        format!(
            "{} has no generations/: publish to it first",
            dest.display()
        )
    })?;
    let mut indexes = Indexes::new();
    read_indexes(&d, &mut indexes, g.images.values().map(|i| i.index.clone()))?;
    let e = entries::entries(&g, &indexes, add)?;
    Ok(e.images
        .into_iter()
        .chain(e.hosts)
        .chain(e.shared)
        .collect())
}

/// The generation records of a local boot server directory, oldest first.
pub fn generations(dest: &Path) -> anyhow::Result<Vec<Generation>> {
    let dest = Dest::Local(dest.to_owned());
    read_generations(&dest, &dest.snapshot()?)
}

fn read_generations(dest: &Dest, snap: &Snapshot) -> anyhow::Result<Vec<Generation>> {
    let mut gens = Vec::new();
    for (name, bytes) in &snap.texts {
        if !name.starts_with("generations/") {
            continue;
        }
        gens.push(
            serde_json::from_slice::<Generation>(bytes)
                .with_context(|| format!("{}/{name} is not a generation record", dest.name()))?,
        );
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

/// Image indexes by digest, as read from DEST (an unreadable one keeps its error for later).
pub(crate) type Indexes = BTreeMap<String, Result<Index, String>>;

/// Reads the indexes `shas` from DEST's objects in one batch, adding them to `indexes`.
fn read_indexes(
    dest: &Dest,
    indexes: &mut Indexes,
    shas: impl IntoIterator<Item = String>,
) -> anyhow::Result<()> {
    let wanted: Vec<String> = shas
        .into_iter()
        .filter(|s| !indexes.contains_key(s))
        .map(|s| diskless_build::index::object_path(&s))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (rel, bytes) in dest.read(&wanted)? {
        let sha = rel.trim_start_matches("objects/").to_string();
        let index = serde_json::from_slice::<Index>(&bytes).map_err(|e| {
            format!(
                "{rel} is not an image index of version {}: {e}",
                diskless_build::index::INDEX_VERSION
            )
        });
        indexes.insert(sha, index);
    }
    Ok(())
}

pub(crate) fn index_of<'a>(indexes: &'a Indexes, sha: &str) -> anyhow::Result<&'a Index> {
    match indexes.get(sha) {
        Some(Ok(index)) => Ok(index),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("image index objects/{sha} is missing"),
    }
}

/// Every object a generation needs.
fn referenced(indexes: &Indexes, g: &Generation) -> anyhow::Result<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for img in g.images.values() {
        set.insert(img.index.clone());
        let index = index_of(indexes, &img.index)?;
        set.extend(index.objects().into_iter().map(|o| o.sha256.to_string()));
    }
    set.extend(g.hosts.values().map(|h| h.node_segment.sha256.clone()));
    Ok(set)
}

/// `<image>.ipxe` and `hosts/<mac>.ipxe`: the names machines fetch.
fn is_entry(rel: &str) -> bool {
    rel.ends_with(".ipxe")
        && match rel.split_once('/') {
            None => true,
            Some((dir, name)) => dir == "hosts" && !name.contains('/'),
        }
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("inventory: cannot read {what} {}", path.display()))
}

/// The files of one host's node segment: identity, join material, SSH keys; mode 0600 where secret.
/// Join material goes where the Nix kubelet module's `join.*` options expect it by default.
fn node_files(inv: &Inventory, host: &Host) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let mut files = BTreeMap::new();
    // The node's one identity channel: the init reads this file with the same type.
    let node = NodeConfig {
        hostname: host.hostname.clone(),
        mac: host.mac.clone(),
        labels: host.labels.clone(),
        taints: host.taints.clone(),
        kubelet_mode: host.kubelet_mode,
    };
    files.insert(NODE_JSON.to_string(), (node.to_json(), 0o600));
    if host.kubelet_mode == KubeletMode::Join {
        let j = inv.join.as_ref().expect("checked by Inventory::check");
        let token = String::from_utf8(read_secret(&j.token_file, "join.token_file")?)
            .context("join.token_file is not text")?;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: {}\n    certificate-authority: /.diskless/node/kubelet/ca.crt\ncontexts:\n- name: default\n  context:\n    cluster: default\n    user: kubelet-bootstrap\ncurrent-context: default\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: {}\n",
            j.api_server,
            token.trim()
        );
        files.insert(
            BOOTSTRAP_KUBECONFIG.into(),
            (kubeconfig.into_bytes(), 0o600),
        );
        files.insert(
            CLIENT_CA.into(),
            (read_secret(&j.ca_file, "join.ca_file")?, 0o600),
        );
    }
    if let Some(k) = &inv.ssh_authorized_keys_file {
        files.insert(
            "/root/.ssh/authorized_keys".into(),
            (read_secret(k, "ssh_authorized_keys_file")?, 0o600),
        );
    }
    if let Some(dir) = &host.ssh_host_keys_dir {
        let mut keys: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("inventory: cannot read ssh_host_keys_dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_"))
            })
            .collect();
        keys.sort();
        for k in keys {
            let name = k.file_name().unwrap().to_string_lossy().into_owned();
            let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
            files.insert(
                format!("/etc/ssh/{name}"),
                (read_secret(&k, "host key")?, mode),
            );
        }
    }
    Ok(files)
}

/// Builds a node segment. A random nonce inside makes its name unguessable even for someone
/// who knows every non-secret input.
fn node_segment(files: &BTreeMap<String, (Vec<u8>, u32)>) -> anyhow::Result<Vec<u8>> {
    let mut tree = Tree::default();
    for (path, (bytes, mode)) in files {
        tree.entries.insert(
            path.clone(),
            Entry {
                kind: EntryKind::File(Content::Bytes(Arc::new(bytes.clone()))),
                mode: *mode,
                origin: "inventory".into(),
            },
        );
    }
    let mut nonce = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut nonce)?;
    tree.entries.insert(
        "/.diskless/node/nonce".into(),
        Entry {
            kind: EntryKind::File(Content::Bytes(Arc::new(hex::encode(nonce).into_bytes()))),
            mode: 0o600,
            origin: "nonce".into(),
        },
    );
    let seg = diskless_build::segment::write("node", &tree, 0)?;
    let codec = diskless_build::compress::Codec {
        algorithm: diskless_build::plan::Algorithm::Zstd,
        level: 3,
        window_log: 0,
    };
    Ok(codec.compress("node", &seg.cpio, 1)?)
}

/// Renders every entry of a generation into DEST; `files` is DEST's listing from before.
/// An entry already holding exactly its new text is left alone, so a no-op publish writes nothing.
fn render(dest: &Dest, snap: &Snapshot, g: &Generation, indexes: &Indexes) -> anyhow::Result<()> {
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

fn record(dest: &Dest, g: &Generation) -> anyhow::Result<()> {
    let mut json = serde_json::to_vec_pretty(g)?;
    json.push(b'\n');
    dest.write(&format!("generations/{}.json", g.number), &json)
        .with_context(|| format!("cannot record generation {} in {}", g.number, dest.name()))
}

pub fn publish(args: &PublishOptions) -> anyhow::Result<PublishReport> {
    let dest = Dest::parse(&args.to)?;
    let inventory = args
        .inventory
        .as_ref()
        .map(|p| Inventory::load(p))
        .transpose()?;
    // Read the build output completely before touching DEST.
    let mut new_images = BTreeMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot read build output {}", args.out.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(image) = name.strip_suffix(".json") {
            let bytes = std::fs::read(e.path())?;
            let index = Index::load(&e.path())?;
            new_images.insert(image.to_string(), (sha256_hex(&bytes), index));
        }
    }
    if new_images.is_empty() {
        bail!(
            "{} holds no image index (<name>.json): is it the output of `diskless build`?",
            args.out.display()
        );
    }
    // The first contact with DEST: unreachable or unwritable fails here, before any write.
    let _lock = dest.lock(true)?;
    let snap = dest.snapshot()?;
    let files = &snap.files;
    let gens = read_generations(&dest, &snap)?;
    let current = gens.last().cloned();
    let now = now();

    let mut images = current
        .as_ref()
        .map(|g| g.images.clone())
        .unwrap_or_default();
    for (name, (sha, index)) in &new_images {
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
    let names: BTreeSet<String> = images.keys().cloned().collect();
    // New node segments, stored with the image objects below.
    let mut node_segments: Vec<(String, Vec<u8>)> = Vec::new();
    let (default_image, menu_timeout, hosts) = match &inventory {
        Some(inv) => {
            inv.check_images(args.inventory.as_ref().unwrap(), &names)?;
            let mut hosts = BTreeMap::new();
            for h in &inv.hosts {
                let files = node_files(inv, h)?;
                let inputs = sha256_hex(&serde_json::to_vec(&(&files, &h.image, &h.kernel_args))?);
                let previous = current
                    .as_ref()
                    .and_then(|g| g.hosts.get(&h.mac))
                    .filter(|p| p.inputs == inputs);
                let node_segment = match previous {
                    Some(p) => p.node_segment.clone(),
                    None => {
                        let bytes = node_segment(&files)?;
                        let sha = sha256_hex(&bytes);
                        let size = bytes.len() as u64;
                        node_segments.push((sha.clone(), bytes));
                        Artifact { sha256: sha, size }
                    }
                };
                hosts.insert(
                    h.mac.clone(),
                    PublishedHost {
                        hostname: h.hostname.clone(),
                        image: h.image.clone(),
                        kernel_args: h.kernel_args.clone(),
                        node_segment,
                        inputs,
                    },
                );
            }
            (inv.default_image.clone(), inv.menu_timeout, hosts)
        }
        None => match &current {
            Some(g) => (g.default_image.clone(), g.menu_timeout, g.hosts.clone()),
            None => (None, 5, BTreeMap::new()),
        },
    };

    // Objects first, each only when missing.
    let mut present: BTreeSet<&str> = files
        .keys()
        .filter_map(|f| f.strip_prefix("objects/"))
        .collect();
    let mut missing: Vec<(&str, PathBuf)> = Vec::new();
    for (sha, index) in new_images.values() {
        let objects = index.objects().into_iter().map(|o| o.sha256);
        for o in std::iter::once(sha.as_str()).chain(objects) {
            if present.insert(o) {
                missing.push((o, args.out.join(diskless_build::index::object_path(o))));
            }
        }
    }
    let sources: Vec<(&str, Source)> = node_segments
        .iter()
        .map(|(sha, bytes)| (sha.as_str(), Source::Bytes(bytes)))
        .chain(missing.iter().map(|(sha, p)| (*sha, Source::File(p))))
        .collect();
    let copied = missing.len() as u64;
    let bytes = dest.put_objects(&sources)?
        - node_segments
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum::<u64>();
    failpoint("objects-copied");

    let mut next = Generation {
        version: GENERATION_VERSION,
        number: current.as_ref().map(|g| g.number + 1).unwrap_or(1),
        published_at: now,
        images,
        default_image,
        menu_timeout,
        hosts,
    };
    let unchanged = current.as_ref().is_some_and(|c| {
        let mut same = next.clone();
        same.number = c.number;
        same.published_at = c.published_at;
        &same == c
    });
    if unchanged {
        next = current.clone().unwrap();
    } else {
        record(&dest, &next)?;
        failpoint("generation-recorded");
    }
    let mut indexes: Indexes = new_images
        .values()
        .map(|(sha, index)| (sha.clone(), Ok(index.clone())))
        .collect();
    read_indexes(
        &dest,
        &mut indexes,
        next.images.values().map(|i| i.index.clone()),
    )?;
    render(&dest, &snap, &next, &indexes)?;
    Ok(PublishReport {
        dest: dest.name(),
        generation: (!unchanged).then_some(next.number),
        objects_copied: copied,
        bytes_copied: bytes,
        images: new_images.keys().cloned().collect(),
        hosts: next.hosts.len(),
    })
}

/// Restores the previous index of `image` (the newest earlier generation with a different
/// one) as a new generation.
pub fn rollback(to: &str, image: &str) -> anyhow::Result<u64> {
    let dest = Dest::parse(to)?;
    let _lock = dest.lock(false)?;
    let snap = dest.snapshot()?;
    let files = &snap.files;
    let gens = read_generations(&dest, &snap)?;
    let current = gens.last().context("nothing has been published here yet")?;
    let now_index = current
        .images
        .get(image)
        .with_context(|| format!("image {image:?} is not published in {}", dest.name()))?;
    let previous = gens
        .iter()
        .rev()
        .filter_map(|g| g.images.get(image))
        .find(|i| i.index != now_index.index)
        .with_context(|| format!("no earlier version of {image} is recorded to roll back to"))?;
    let mut next = current.clone();
    next.number += 1;
    next.published_at = now();
    next.images.insert(image.to_string(), previous.clone());
    let mut indexes = Indexes::new();
    read_indexes(
        &dest,
        &mut indexes,
        next.images.values().map(|i| i.index.clone()),
    )?;
    let needed =
        referenced(&indexes, &next).with_context(|| format!("cannot roll back {image}"))?;
    for o in needed {
        if !files.contains_key(&diskless_build::index::object_path(&o)) {
            bail!("cannot roll back {image}: object {o} was garbage-collected");
        }
    }
    record(&dest, &next)?;
    render(&dest, &snap, &next, &indexes)?;
    Ok(next.number)
}

#[derive(Debug, Serialize)]
pub struct GcReport {
    pub kept_generations: Vec<u64>,
    pub removed_generations: Vec<u64>,
    pub removed_objects: u64,
    pub freed_bytes: u64,
}

/// Keeps the newest `keep` generations and the objects they reference; removes the rest.
pub fn gc(to: &str, keep: usize) -> anyhow::Result<GcReport> {
    let dest = Dest::parse(to)?;
    if keep == 0 {
        bail!("--keep must be at least 1: the current generation is always kept");
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
    // Records first: a crash after this step leaves unreferenced objects, never dangling records.
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

/// The object half of `verify` for a destination without a local path: digests computed on
/// the server.
fn verify_remote_objects(
    dest: &Dest,
    files: &BTreeMap<String, u64>,
) -> anyhow::Result<diskless_build::verify::VerifyReport> {
    let mut report = diskless_build::verify::VerifyReport {
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

/// `verify --to DEST`: objects hash to their names, every entry refers to existing objects,
/// and no per-node (secret) segment is reachable from a shared entry.
pub fn verify_dest(to: &str) -> anyhow::Result<diskless_build::verify::VerifyReport> {
    let dest = Dest::parse(to)?;
    let (snap, mut report) = match &dest {
        Dest::Local(path) => {
            let report = diskless_build::verify::verify_objects(path)?;
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
    report.images = current.images.keys().cloned().collect();
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
                    if !files.contains_key(&diskless_build::index::object_path(&o)) {
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
        for sha in diskless_build::ipxe::referenced_objects(&text) {
            if !files.contains_key(&diskless_build::index::object_path(sha)) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::format_utc(1_795_999_500), "2026-11-30 00:45 UTC");
    }
}
