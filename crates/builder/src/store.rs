//! Content-addressed storage: every artifact is `objects/<sha256 of its bytes>` in the output
//! directory, and the human-facing names are small files replaced atomically. A build either
//! completes or leaves the output directory as it was: objects are written to a temporary name
//! and renamed, and a failed build removes the objects it added.
//!
//! The segment cache lives outside the output (`$XDG_CACHE_HOME/diskless/segments`), keyed by
//! the uncompressed segment's sha256 and the codec, so an unchanged component is never
//! recompressed, whatever output directory it is built into. Cached bytes are verified, not
//! trusted: each entry starts with the sha256 of the rest, checked on every hit, so a cache
//! file that was overwritten, truncated or flipped is rebuilt (with a warning), never stored.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `objects/<hex>`: where every content-addressed artifact lives in an output directory.
pub fn object_path(sha256: &str) -> String {
    format!("objects/{sha256}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 (hex) and length of a file, read in 1 MiB pieces so large objects are not loaded whole.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Reads a file the user named (plan, inventory, secrets, indexes): only a regular file. A FIFO
/// or character device would block for ever (or never end), a directory means nothing; the
/// check is on the opened file, so nothing can be swapped in between.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Opening a FIFO for reading blocks until a writer comes; a directory opens fine and
    // fails on read. Refuse both before opening.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory cannot be read as one)",
        ));
    }
    let mut f = std::fs::File::open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (it changed while being opened)",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and
/// renamed, so readers see the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Objects are world-readable whatever the umask: they are served by TFTP/HTTP.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The `objects/` directory of one output directory, remembering what this run added.
pub struct Store {
    pub root: PathBuf,
    added: Vec<PathBuf>,
}

impl Store {
    pub fn open(root: &Path) -> std::io::Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        let created = !root.exists();
        std::fs::create_dir_all(root.join("objects"))?;
        // Directory modes are fixed, not left to the umask: the tree must not depend on it.
        let mode = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(root.join("objects"), mode.clone())?;
        if created {
            std::fs::set_permissions(root, mode)?;
        }
        Ok(Store {
            root: root.to_owned(),
            added: Vec::new(),
        })
    }

    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.root.join(object_path(sha256))
    }

    /// Stores `bytes` under their digest (a no-op when already there); returns the digest.
    pub fn put(&mut self, bytes: &[u8]) -> std::io::Result<String> {
        let digest = sha256_hex(bytes);
        self.put_with_digest(&digest, bytes)?;
        Ok(digest)
    }

    pub fn put_with_digest(&mut self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.object_path(digest);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == bytes.len() as u64 => return Ok(()),
            _ => {}
        }
        write_atomic(&path, bytes)?;
        self.added.push(path);
        Ok(())
    }

    /// Removes every object this run added: called when a build fails half-way.
    pub fn roll_back(&mut self) {
        for p in self.added.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Marks a reused cache file as just used, for `diskless cache gc` (which keeps recently used
/// files): its access time is set explicitly, since `noatime`/`relatime` mounts do not keep it
/// current. The modification time still says when the content was written. Best effort.
pub fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_times(std::fs::FileTimes::new().set_accessed(std::time::SystemTime::now()));
    }
}

/// Compressed segments by (uncompressed digest, codec).
pub struct Cache {
    dir: Option<PathBuf>,
}

impl Cache {
    pub fn new(dir: Option<PathBuf>) -> Cache {
        Cache { dir }
    }

    /// `$XDG_CACHE_HOME/diskless`, else `~/.cache/diskless`.
    pub fn default_dir() -> Option<PathBuf> {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("diskless"))
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("segments").join(key))
    }

    /// v2: entries carry their own digest (v1 entries, without one, are simply not found).
    pub fn key(cpio_sha256: &str, codec_label: &str) -> String {
        sha256_hex(format!("diskless-segment-v2 {cpio_sha256} {codec_label}").as_bytes())
    }

    /// `Ok(None)` on a miss; `Err` (a warning: treat it as a miss) when the entry's bytes no
    /// longer hash to the digest written with them.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let Ok(mut body) = std::fs::read(&path) else {
            return Ok(None);
        };
        if body.len() >= 32 {
            let digest = body.drain(..32).collect::<Vec<u8>>();
            if Sha256::digest(&body).as_slice() == digest {
                touch(&path);
                return Ok(Some(body));
            }
        }
        Err(format!(
            "segment cache entry {} is corrupt (its bytes do not match its digest): rebuilt",
            path.display()
        ))
    }

    /// Best effort: a cache that cannot be written only costs time, so failures are warnings.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), String> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        let dir = path.parent().expect("cache path has a parent");
        let mut entry = Sha256::digest(bytes).to_vec();
        entry.extend_from_slice(bytes);
        std::fs::create_dir_all(dir)
            .and_then(|_| write_atomic(&path, &entry))
            .map_err(|e| format!("cannot write segment cache {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hit marks the entry as used (what `diskless cache gc` keeps), without changing its
    /// modification time.
    #[test]
    fn cache_hits_mark_the_entry_used() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(d.path().to_owned()));
        let key = Cache::key(&sha256_hex(b"cpio"), "zstd-10");
        cache.put(&key, b"compressed").unwrap();
        let path = d.path().join("segments").join(&key);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(90 * 86_400);
        std::fs::File::open(&path)
            .unwrap()
            .set_times(
                std::fs::FileTimes::new()
                    .set_accessed(old)
                    .set_modified(old),
            )
            .unwrap();
        assert_eq!(cache.get(&key).unwrap().unwrap(), b"compressed");
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.accessed().unwrap() > old + std::time::Duration::from_secs(86_400));
        assert_eq!(meta.modified().unwrap(), old);
    }

    #[test]
    fn cache_hits_are_verified_and_damaged_entries_refused() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(d.path().to_owned()));
        let key = Cache::key(&sha256_hex(b"cpio"), "zstd-10");
        assert_eq!(cache.get(&key), Ok(None));
        cache.put(&key, b"compressed bytes").unwrap();
        assert_eq!(cache.get(&key), Ok(Some(b"compressed bytes".to_vec())));
        let file = d.path().join("segments").join(&key);
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        for damaged in [
            b"garbage".to_vec(),
            Vec::new(),
            flipped,
            good[..40].to_vec(),
        ] {
            std::fs::write(&file, &damaged).unwrap();
            let e = cache.get(&key).unwrap_err();
            assert!(e.contains("corrupt"), "{e}");
        }
    }

    #[test]
    fn objects_are_named_by_their_digest_and_roll_back() {
        let d = tempfile::tempdir().unwrap();
        let mut s = Store::open(d.path()).unwrap();
        let h = s.put(b"hello").unwrap();
        assert_eq!(h, sha256_hex(b"hello"));
        assert_eq!(std::fs::read(s.object_path(&h)).unwrap(), b"hello");
        s.roll_back();
        assert!(!s.object_path(&h).exists());
    }
}
