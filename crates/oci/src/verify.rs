//! Digests: hashing while copying, and checking a blob against the descriptor that names it.
//! Every blob that reaches a segment went through `check_blob`, so a corrupt or substituted
//! archive fails the build instead of failing `ctr import` on a node at boot.

use oci_spec::image::{Descriptor, Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use diskless_builder::store::sha256_hex;

/// A blob that is not what its descriptor names, or a digest this builder cannot use.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("{what} has digest {digest}: only sha256 digests are supported")]
    NotSha256 { what: String, digest: String },
    #[error("{what} has digest {digest:?}: a sha256 digest is 64 lowercase hex digits")]
    NotHex { what: String, digest: String },
    #[error(
        "{what} blob sha256:{want} is corrupt: its content hashes to sha256:{actual}; \
         rebuild or re-download the archive"
    )]
    Corrupt {
        what: String,
        want: String,
        actual: String,
    },
    #[error("{what} blob sha256:{want} has {actual} bytes but its descriptor says {declared}")]
    Size {
        what: String,
        want: String,
        actual: u64,
        declared: u64,
    },
    #[error("cannot read {}: {cause}", path.display())]
    Read { path: PathBuf, cause: io::Error },
}

/// sha256 and length of a file.
pub fn hash_file(path: &Path) -> Result<(String, u64), DigestError> {
    diskless_builder::store::hash_file(path).map_err(|cause| DigestError::Read {
        path: path.to_owned(),
        cause,
    })
}

/// A writer that hashes what passes through it, so bytes are hashed in the same pass that
/// stores them (no second read of a 100 MB layer).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the sha256 (hex) and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The `sha256:<hex>` digest of content whose sha256 is `hex`.
pub fn sha256_digest(hex: &str) -> Digest {
    Digest::from_str(&format!("sha256:{hex}")).expect("a sha256 hex string is a valid digest")
}

/// The sha256 hex of a descriptor; other algorithms are refused because the blob pool and
/// containerd's content store on the node are keyed by sha256.
pub fn descriptor_hex(desc: &Descriptor, what: &str) -> Result<String, DigestError> {
    let digest = desc.digest();
    if *digest.algorithm() != DigestAlgorithm::Sha256 {
        return Err(DigestError::NotSha256 {
            what: what.to_string(),
            digest: digest.to_string(),
        });
    }
    // The hex becomes a path (`blobs/sha256/<hex>`, the blob cache, the pool).
    if !diskless_contract::digest::is_sha256_hex(digest.digest()) {
        return Err(DigestError::NotHex {
            what: what.to_string(),
            digest: digest.to_string(),
        });
    }
    Ok(digest.digest().to_owned())
}

/// Checks that content with sha256 `actual_hex` and length `actual_size` is the blob `desc`
/// names. `what` says which blob it is ("config", "layers[2]") for the message.
pub fn check_blob(
    desc: &Descriptor,
    what: &str,
    actual_hex: &str,
    actual_size: u64,
) -> Result<(), DigestError> {
    let want = descriptor_hex(desc, what)?;
    if actual_hex != want {
        return Err(DigestError::Corrupt {
            what: what.to_string(),
            want,
            actual: actual_hex.to_string(),
        });
    }
    if actual_size != desc.size() {
        return Err(DigestError::Size {
            what: what.to_string(),
            want,
            actual: actual_size,
            declared: desc.size(),
        });
    }
    Ok(())
}

/// Serializes to JSON with object keys sorted. `oci-spec` keeps annotations and labels in
/// `HashMap`s, whose order changes from run to run; going through `serde_json::Value` (a
/// `BTreeMap` here) makes the bytes, and so the digests, depend on content only.
pub fn canonical_json(value: &impl serde::Serialize) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("OCI types serialize to JSON");
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    #[test]
    fn hashing_writer_matches_one_shot_hash() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, hex, n) = w.finish();
        assert_eq!(bytes, b"hello world");
        assert_eq!(hex, sha256_hex(b"hello world"));
        assert_eq!(n, 11);
    }

    #[test]
    fn check_blob_names_the_mismatch() {
        let good = sha256_hex(b"x");
        let desc = Descriptor::new(MediaType::ImageConfig, 1, sha256_digest(&good));
        check_blob(&desc, "config", &good, 1).unwrap();
        let e = check_blob(&desc, "config", &sha256_hex(b"y"), 1).unwrap_err();
        assert!(e.to_string().contains("config blob sha256:"), "{e}");
        let e = check_blob(&desc, "config", &good, 2).unwrap_err();
        assert!(e.to_string().contains("has 2 bytes"), "{e}");
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut m = std::collections::HashMap::new();
        for k in ["b", "a", "d", "c"] {
            m.insert(k.to_string(), 1);
        }
        assert_eq!(canonical_json(&m), br#"{"a":1,"b":1,"c":1,"d":1}"#);
    }
}
