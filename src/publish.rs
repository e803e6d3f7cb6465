//! `diskless publish | rollback | gc` against a boot server directory (the TFTP/HTTP root).
//!
//! Safety comes from ordering: objects are copied (temp name, fsync, rename, hash checked again)
//! before anything refers to them; a generation record is written before the entries that
//! render it; every entry is replaced atomically. So a publish killed at any point leaves every
//! entry pointing at complete objects: machines boot the old image or the new one, never a half.
//! Publishes to one destination are serialised with `flock` on `DEST/.lock`.
//!
//! Layout of DEST (see docs/boot-server.md):
//! `boot.ipxe` (what DHCP hands out) → `hosts/<mac>.ipxe` if it exists, else the default image's
//! entry or `menu.ipxe`; `<image>.ipxe`; `objects/<sha256>`; `generations/<n>.json`.

use crate::index::{Artifact, Index};
use crate::inventory::{Host, Inventory, KubeletMode};
use crate::resolve::{Content, Entry, EntryKind, Tree};
use crate::store::{sha256_hex, write_atomic};
use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const GENERATION_VERSION: u32 = 1;

#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    /// Output directory of `diskless build` (every `<name>.json` in it is published).
    pub out: PathBuf,
    /// The boot server directory (TFTP/HTTP root, or a mounted share).
    #[arg(long)]
    pub to: String,
    /// Inventory of machines (TOML, docs/boot-server.md); default: keep the published one.
    #[arg(long)]
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
    pub dest: PathBuf,
    /// None when nothing changed.
    pub generation: Option<u64>,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub images: Vec<String>,
    pub hosts: usize,
}

fn dest_dir(to: &str) -> anyhow::Result<PathBuf> {
    if to.starts_with("ssh://") {
        bail!(
            "--to {to}: ssh destinations are not supported yet; publish to a local directory \
             (the server's TFTP/HTTP root mounted over NFS or SSHFS) instead"
        );
    }
    Ok(PathBuf::from(to))
}

/// Test hook: `DISKLESS_FAILPOINT=<step>` kills the process right after that step, to prove
/// that a publish interrupted there leaves a consistent boot server.
fn failpoint(step: &str) {
    if std::env::var("DISKLESS_FAILPOINT").is_ok_and(|v| v == step) {
        eprintln!("diskless: failpoint {step}: aborting");
        std::process::abort();
    }
}

/// An exclusive lock on DEST, released when dropped.
struct Lock(std::fs::File);

impl Lock {
    fn take(dest: &Path) -> anyhow::Result<Lock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dest.join(".lock"))
            .with_context(|| format!("cannot write to {}: is it writable?", dest.display()))?;
        // SAFETY: flock on a file descriptor we own; blocks until other publishers finish.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            bail!(
                "cannot lock {}: {}",
                dest.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking our own descriptor; closing it would release the lock anyway.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
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

pub fn generations(dest: &Path) -> anyhow::Result<Vec<Generation>> {
    let dir = dest.join("generations");
    let mut gens = Vec::new();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(gens);
    };
    for e in rd {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            gens.push(
                serde_json::from_str::<Generation>(&text)
                    .with_context(|| format!("{} is not a generation record", p.display()))?,
            );
        }
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

fn load_index(dest: &Path, sha: &str) -> anyhow::Result<Index> {
    Index::load(&dest.join(crate::index::object_path(sha)))
}

/// Every object a generation needs.
fn referenced(dest: &Path, g: &Generation) -> anyhow::Result<BTreeSet<String>> {
    let mut set = BTreeSet::new();
    for img in g.images.values() {
        set.insert(img.index.clone());
        let index = load_index(dest, &img.index)?;
        set.extend(index.objects().into_iter().map(|o| o.sha256.to_string()));
    }
    set.extend(g.hosts.values().map(|h| h.node_segment.sha256.clone()));
    Ok(set)
}

/// Copies one object into DEST unless present, checking its hash on both sides.
fn copy_object(src: &Path, dest: &Path, sha: &str) -> anyhow::Result<Option<u64>> {
    let target = dest.join(crate::index::object_path(sha));
    if target.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
    if sha256_hex(&bytes) != sha {
        bail!(
            "{} does not hash to its name: the build output is damaged; rebuild it",
            src.display()
        );
    }
    write_atomic(&target, &bytes).with_context(|| format!("cannot write {}", target.display()))?;
    let copied = std::fs::read(&target)?;
    if sha256_hex(&copied) != sha {
        let _ = std::fs::remove_file(&target);
        bail!(
            "{} changed while being copied; publish again",
            target.display()
        );
    }
    Ok(Some(bytes.len() as u64))
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("inventory: cannot read {what} {}", path.display()))
}

/// The files of one host's node segment: identity, join material, SSH keys; mode 0600 where secret.
/// Join material goes where the Nix kubelet module's `join.*` options expect it by default.
fn node_files(inv: &Inventory, host: &Host) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let mut files = BTreeMap::new();
    let node = serde_json::json!({
        "hostname": host.hostname,
        "mac": host.mac,
        "labels": host.labels,
        "taints": host.taints,
        "kubelet_mode": match host.kubelet_mode { KubeletMode::Join => "join", KubeletMode::Standalone => "standalone" },
    });
    files.insert(
        "/.diskless/node/node.json".to_string(),
        (serde_json::to_vec_pretty(&node)?, 0o600),
    );
    files.insert(
        "/etc/hostname".to_string(),
        (format!("{}\n", host.hostname).into_bytes(), 0o644),
    );
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
            "/.diskless/node/kubelet/bootstrap-kubeconfig".into(),
            (kubeconfig.into_bytes(), 0o600),
        );
        files.insert(
            "/.diskless/node/kubelet/ca.crt".into(),
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
    let seg = crate::segment::write("node", &tree, 0)?;
    let codec = crate::compress::Codec {
        algorithm: crate::plan::Algorithm::Zstd,
        level: 3,
        window_log: 0,
    };
    Ok(codec.compress("node", &seg.cpio, 1)?)
}

/// Writes `bytes` to `path` atomically unless it already holds exactly them.
fn put_entry(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Renders every entry of a generation into DEST.
fn render(dest: &Path, g: &Generation) -> anyhow::Result<()> {
    let mut indexes = BTreeMap::new();
    for (name, img) in &g.images {
        let index = load_index(dest, &img.index)?;
        put_entry(
            &dest.join(format!("{name}.ipxe")),
            crate::ipxe::script(&index, &img.index, "", "").as_bytes(),
        )?;
        indexes.insert(name.clone(), index);
    }
    failpoint("images-rendered");
    for (mac, h) in &g.hosts {
        let index = &indexes[&h.image];
        let img = &g.images[&h.image];
        let mut args = format!("diskless.hostname={}", h.hostname);
        if !h.kernel_args.is_empty() {
            args = format!("{args} {}", h.kernel_args);
        }
        let mut text = crate::ipxe::script(index, &img.index, "../", &args);
        // The node segment comes last, after the image's own segments.
        let boot = text.rfind("boot\n").expect("script ends with boot");
        text.insert_str(
            boot,
            &format!(
                "initrd ../{}\n",
                crate::index::object_path(&h.node_segment.sha256)
            ),
        );
        text.insert_str(
            text.find('\n').unwrap() + 1,
            &format!("# host {} ({mac})\n", h.hostname),
        );
        put_entry(
            &dest.join("hosts").join(format!("{mac}.ipxe")),
            text.as_bytes(),
        )?;
    }
    // Hosts no longer in the inventory lose their entry (and fall back to the default).
    if let Ok(rd) = std::fs::read_dir(dest.join("hosts")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(mac) = name.strip_suffix(".ipxe") {
                if !g.hosts.contains_key(mac) {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
    }
    failpoint("hosts-rendered");
    put_entry(&dest.join("menu.ipxe"), crate::ipxe::menu(g).as_bytes())?;
    put_entry(
        &dest.join("boot.ipxe"),
        crate::ipxe::boot(g.default_image.as_deref()).as_bytes(),
    )?;
    Ok(())
}

fn record(dest: &Path, g: &Generation) -> anyhow::Result<()> {
    let dir = dest.join("generations");
    std::fs::create_dir_all(&dir)?;
    let mut json = serde_json::to_vec_pretty(g)?;
    json.push(b'\n');
    write_atomic(&dir.join(format!("{}.json", g.number)), &json)
        .with_context(|| format!("cannot record generation {} in {}", g.number, dir.display()))
}

pub fn publish(args: &PublishArgs) -> anyhow::Result<PublishReport> {
    let dest = dest_dir(&args.to)?;
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
    std::fs::create_dir_all(&dest)
        .with_context(|| format!("cannot create boot server directory {}", dest.display()))?;
    let _lock = Lock::take(&dest)?;
    std::fs::create_dir_all(dest.join("objects"))
        .with_context(|| format!("cannot write to {}", dest.display()))?;
    let gens = generations(&dest)?;
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
                        let target = dest.join(crate::index::object_path(&sha));
                        write_atomic(&target, &bytes)
                            .with_context(|| format!("cannot write {}", target.display()))?;
                        Artifact {
                            sha256: sha,
                            size: bytes.len() as u64,
                        }
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

    // Objects first.
    let (mut copied, mut bytes) = (0, 0);
    for (sha, index) in new_images.values() {
        let objects = index.objects().into_iter().map(|o| o.sha256.to_string());
        for o in std::iter::once(sha.clone()).chain(objects) {
            if let Some(n) = copy_object(&args.out.join(crate::index::object_path(&o)), &dest, &o)?
            {
                copied += 1;
                bytes += n;
            }
        }
    }
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
    render(&dest, &next)?;
    Ok(PublishReport {
        dest,
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
    let dest = dest_dir(to)?;
    let _lock = Lock::take(&dest)?;
    let gens = generations(&dest)?;
    let current = gens.last().context("nothing has been published here yet")?;
    let now_index = current
        .images
        .get(image)
        .with_context(|| format!("image {image:?} is not published in {}", dest.display()))?;
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
    for o in referenced(&dest, &next)? {
        if !dest.join(crate::index::object_path(&o)).exists() {
            bail!("cannot roll back {image}: object {o} was garbage-collected");
        }
    }
    record(&dest, &next)?;
    render(&dest, &next)?;
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
    let dest = dest_dir(to)?;
    if keep == 0 {
        bail!("--keep must be at least 1: the current generation is always kept");
    }
    let _lock = Lock::take(&dest)?;
    let gens = generations(&dest)?;
    let split = gens.len().saturating_sub(keep);
    let (old, kept) = gens.split_at(split);
    let mut live = BTreeSet::new();
    for g in kept {
        live.extend(referenced(&dest, g)?);
    }
    let mut report = GcReport {
        kept_generations: kept.iter().map(|g| g.number).collect(),
        removed_generations: Vec::new(),
        removed_objects: 0,
        freed_bytes: 0,
    };
    // Records first: a crash after this step leaves unreferenced objects, never dangling records.
    for g in old {
        std::fs::remove_file(dest.join("generations").join(format!("{}.json", g.number)))?;
        report.removed_generations.push(g.number);
    }
    if let Ok(rd) = std::fs::read_dir(dest.join("objects")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                report.freed_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(e.path())?;
                report.removed_objects += 1;
            }
        }
    }
    Ok(report)
}

/// `verify --to DEST`: objects hash to their names, every entry refers to existing objects,
/// and no per-node (secret) segment is reachable from a shared entry.
pub fn verify_dest(to: &str) -> anyhow::Result<crate::verify::VerifyReport> {
    let dest = dest_dir(to)?;
    let mut report = crate::verify::verify_objects(&dest)?;
    let gens = generations(&dest)?;
    let Some(current) = gens.last() else {
        report
            .problems
            .push("no generation recorded: nothing published".into());
        return Ok(report);
    };
    report.images = current.images.keys().cloned().collect();
    for g in &gens {
        match referenced(&dest, g) {
            Ok(objs) => {
                for o in objs {
                    if !dest.join(crate::index::object_path(&o)).exists() {
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
    let mut entries: Vec<PathBuf> = Vec::new();
    for dir in [dest.clone(), dest.join("hosts")] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            entries.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "ipxe")),
            );
        }
    }
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(&dest).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let in_hosts = rel.starts_with("hosts/");
        for sha in crate::ipxe::referenced_objects(&text) {
            if !dest.join("objects").join(sha).exists() {
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
        if let Ok(index) = load_index(&dest, &img.index) {
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
