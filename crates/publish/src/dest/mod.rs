//! Where `publish`, `rollback`, `gc` and `verify --to` work: a local directory (`local`) or
//! `ssh://[user@]host[:port]/abs/path` (`ssh`). Publish needs only a handful of operations
//! (snapshot, read a batch, write entries atomically, put objects, remove, hash every object,
//! lock); `Dest` dispatches each to the two transports, so lib.rs keeps its ordering (the
//! crash-safety argument) in one place whatever the transport.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod error;
mod local;
mod ssh;

pub use error::DestError;

use local::LocalLock;
use ssh::{Ssh, SshLock};

/// Subdirectories whose files publish reads or writes; the listing covers these and DEST itself.
const DIRS: [&str; 3] = ["hosts", "objects", "generations"];

pub enum Dest {
    Local(PathBuf),
    Ssh(Ssh),
}

/// Bytes for a new object: a file of the build output, or made in memory (node segments).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// DEST as one run sees it: every file with its size, and the contents of the small files
/// every command reads (generation records and entries), fetched in one round trip.
pub struct Snapshot {
    /// By path relative to DEST: the top level, `hosts/`, `objects/`, `generations/`.
    pub files: BTreeMap<String, u64>,
    /// `generations/*.json`, `*.ipxe`, `hosts/*.ipxe`.
    pub texts: BTreeMap<String, Vec<u8>>,
}

/// Whether publish reads `rel` with the snapshot.
fn is_text(rel: &str) -> bool {
    match rel.split_once('/') {
        None => rel.ends_with(".ipxe"),
        Some(("hosts", name)) => name.ends_with(".ipxe") && !name.contains('/'),
        Some(("generations", name)) => name.ends_with(".json") && !name.contains('/'),
        _ => false,
    }
}

/// One object's digest as `verify --to` sees it.
pub struct ObjectHash {
    pub name: String,
    pub size: u64,
    /// sha256 of the content, or why it could not be read.
    pub digest: Result<String, String>,
}

impl Dest {
    /// Parses `--to`; for ssh nothing is contacted yet (the first operation connects).
    pub fn parse(to: &str) -> Result<Dest, DestError> {
        match to.strip_prefix("ssh://") {
            Some(rest) => Ok(Dest::Ssh(Ssh::parse(to, rest)?)),
            None => Ok(Dest::Local(PathBuf::from(to))),
        }
    }

    /// For messages and reports: the path or URL as the user gave it.
    pub fn name(&self) -> String {
        match self {
            Dest::Local(p) => p.display().to_string(),
            Dest::Ssh(s) => s.url.clone(),
        }
    }

    /// Takes the exclusive lock on DEST, first creating DEST (publish) or requiring it. Also
    /// empties `.staging/`: whatever is there was left by a run that died.
    pub fn lock(&self, create: bool) -> Result<DestLock, DestError> {
        match self {
            Dest::Local(root) => local::lock(root, create).map(DestLock::Local),
            Dest::Ssh(s) => s.lock(create).map(DestLock::Ssh),
        }
    }

    /// Every regular file at the top of DEST and in `hosts/`, `objects/`, `generations/`, with
    /// its size, by path relative to DEST. A missing DEST lists empty locally; over ssh it is an
    /// error (it is the first thing `verify` does, and "cannot cd" is the clearer message).
    fn list(&self) -> Result<BTreeMap<String, u64>, DestError> {
        match self {
            Dest::Local(root) => local::list(root),
            Dest::Ssh(s) => Ok(s.snapshot()?.files),
        }
    }

    /// Lists DEST and reads its generation records and entries (one round trip over ssh).
    pub fn snapshot(&self) -> Result<Snapshot, DestError> {
        match self {
            Dest::Local(_) => {
                let files = self.list()?;
                let texts: Vec<String> = files.keys().filter(|f| is_text(f)).cloned().collect();
                let texts = self.read(&texts)?;
                Ok(Snapshot { files, texts })
            }
            Dest::Ssh(s) => s.snapshot(),
        }
    }

    /// Reads the files among `rels` that exist, in one round trip over ssh.
    pub fn read(&self, rels: &[String]) -> Result<BTreeMap<String, Vec<u8>>, DestError> {
        match self {
            Dest::Local(root) => local::read(root, rels),
            Dest::Ssh(_) if rels.is_empty() => Ok(BTreeMap::new()),
            Dest::Ssh(s) => s.read(rels),
        }
    }

    /// Replaces `rel` atomically (temp in `.staging/`, fsync, rename). Call under the lock.
    pub fn write(&self, rel: &str, bytes: &[u8]) -> Result<(), DestError> {
        self.write_batch(&[(rel.to_string(), bytes.to_vec())])
    }

    /// Replaces each file atomically, in order (one round trip over ssh).
    pub fn write_batch(&self, files: &[(String, Vec<u8>)]) -> Result<(), DestError> {
        match self {
            Dest::Local(root) => local::write_batch(root, files),
            Dest::Ssh(_) if files.is_empty() => Ok(()),
            Dest::Ssh(s) => s.write_batch(files),
        }
    }

    /// Stores each `objects/<sha>` from its source: the source is hashed first, the copy is
    /// hashed again where it landed (on the server, over ssh: all in one session) before it is
    /// renamed into place. Returns the bytes copied.
    pub fn put_objects(&self, objects: &[(&str, Source)]) -> Result<u64, DestError> {
        let mut total = 0;
        for (sha, src) in objects {
            let (digest, size) = match src {
                Source::File(p) => diskless_builder::store::hash_file(p)
                    .map_err(error::io(format!("cannot read {}", p.display())))?,
                Source::Bytes(b) => (diskless_builder::store::sha256_hex(b), b.len() as u64),
            };
            if digest != *sha {
                let what = match src {
                    Source::File(p) => p.display().to_string(),
                    Source::Bytes(_) => "a generated object".into(),
                };
                return Err(DestError::Damaged { what });
            }
            total += size;
        }
        match self {
            Dest::Local(root) => {
                for (sha, src) in objects {
                    local::put_object(root, sha, *src)?;
                }
            }
            Dest::Ssh(_) if objects.is_empty() => {}
            Dest::Ssh(s) => s.put_objects(objects)?,
        }
        Ok(total)
    }

    /// Removes files (missing ones are not an error), in the order given.
    pub fn remove(&self, rels: &[String]) -> Result<(), DestError> {
        match self {
            Dest::Local(root) => local::remove(root, rels),
            Dest::Ssh(_) if rels.is_empty() => Ok(()),
            Dest::Ssh(s) => s.remove(rels),
        }
    }

    /// Hashes the `objects/` files of `listing` (over ssh with `sha256sum` on the server: only
    /// digests cross the network).
    pub fn hash_objects(
        &self,
        listing: &BTreeMap<String, u64>,
    ) -> Result<Vec<ObjectHash>, DestError> {
        let objects: Vec<(&str, u64)> = listing
            .iter()
            .filter_map(|(rel, size)| Some((rel.strip_prefix("objects/")?, *size)))
            .collect();
        let digests: BTreeMap<String, Result<String, String>> = match self {
            Dest::Local(root) => local::hash_objects(root, objects.iter().map(|(name, _)| *name)),
            Dest::Ssh(s) => s.hash_objects(&objects.iter().map(|(n, _)| *n).collect::<Vec<_>>())?,
        };
        Ok(objects
            .into_iter()
            .map(|(name, size)| ObjectHash {
                name: name.to_string(),
                size,
                digest: digests
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Err("cannot read it".into())),
            })
            .collect())
    }
}

/// Held for the whole run; dropping it releases the lock.
#[allow(dead_code)] // never read: it exists for its Drop
pub enum DestLock {
    Local(LocalLock),
    Ssh(SshLock),
}
