//! Image references, by the grammar of the distribution spec (github.com/distribution/reference),
//! which containerd and the kubelet parse with:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*   (≤ 255 bytes)
//! domain           := host [':' port]   host := domain-component ['.' domain-component]* | '[' IPv6 ']'
//! domain-component := /[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]/
//! path-component   := /[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := algorithm ":" hex   (sha256: 64, sha384: 96, sha512: 128 lowercase hex)
//! ```
//!
//! The first component is the domain when it has a `.` or `:`, is `localhost`, or has an
//! uppercase letter (as in the reference implementation). A preloaded image must also be
//! [`Reference::qualified`]: the kubelet asks containerd for `docker.io/library/busybox:latest`,
//! never `busybox`. The builder checks plans, docker-archive tags and `oci build --ref` with this
//! type, and the init checks the contract with it.

use std::fmt;

/// Why a string is not an image reference, or not one containerd can find a preloaded image by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("a reference cannot be empty")]
    Empty,
    #[error("a reference cannot contain whitespace or control characters (found {0:?})")]
    Whitespace(char),
    #[error("the name is {0} bytes; a reference's name (domain and path) has at most {NAME_MAX}")]
    NameTooLong(usize),
    #[error(
        "tag {0:?} is not a valid tag: 1-{TAG_MAX} of A-Z a-z 0-9 _ . -, not starting with . or -"
    )]
    Tag(String),
    #[error("digest {0:?} is not algorithm:hex, e.g. sha256:<64 hex>")]
    DigestForm(String),
    #[error("digest {digest:?}: algorithm {algorithm:?} is not sha256, sha384 or sha512")]
    DigestAlgorithm { digest: String, algorithm: String },
    #[error("digest {digest:?}: a {algorithm} digest is {want} lowercase hex digits")]
    DigestHex {
        digest: String,
        algorithm: String,
        want: usize,
    },
    #[error(
        "registry domain {0:?} is not a host name, IPv4 or [IPv6] address with an optional :port"
    )]
    Domain(String),
    #[error("repository path component {0:?} must be lowercase (write {lower:?})", lower = .0.to_ascii_lowercase())]
    Uppercase(String),
    #[error("repository path component {0:?} is not valid: lowercase letters and digits, separated by one '.', '_' or '__' or by dashes")]
    PathComponent(String),
    /// `suggestion` is the full form, itself valid, when there is one.
    #[error("{}", match suggestion {
        Some(full) => format!("not fully qualified: write {full} (containerd and kubelet know images by their full name)"),
        None => "not fully qualified: give the registry domain, e.g. docker.io/library/NAME:TAG".into(),
    })]
    NotQualified { suggestion: Option<String> },
    #[error("{}", match suggestion {
        Some(full) => format!("no tag: write {full} or the tag you mean"),
        None => "no tag: add :TAG or @sha256:DIGEST".into(),
    })]
    NoTag { suggestion: Option<String> },
}

/// For callers whose own errors are still sentences.
impl From<ReferenceError> for String {
    fn from(e: ReferenceError) -> String {
        e.to_string()
    }
}

/// A reference that follows the grammar. Its parts are kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub domain: Option<String>,
    /// Path components joined by `/`.
    pub path: String,
    pub tag: Option<String>,
    /// `algorithm:hex`.
    pub digest: Option<String>,
}

/// Longest name (domain and path) the reference implementation accepts.
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

impl Reference {
    /// Parses `s` by the grammar only (short names like `busybox:1` are valid).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::Whitespace(c));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                check_tag(tag)?;
                (&rest[..last_slash + i], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        if name.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong(name.len()));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, path)) if is_domain(first) => (Some(first), path),
            _ => (None, name),
        };
        if let Some(d) = domain {
            check_domain(d)?;
        }
        for component in path.split('/') {
            check_path_component(component)?;
        }
        Ok(Reference {
            domain: domain.map(str::to_owned),
            path: path.to_owned(),
            tag,
            digest: digest.map(str::to_owned),
        })
    }

    /// Parses `s` and requires what containerd and the kubelet need to find a preloaded image:
    /// a domain and a tag or digest. The error suggests the full form, itself valid.
    pub fn qualified(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse(s)?;
        if r.domain.is_none() {
            let mut full = r.clone();
            full.domain = Some("docker.io".into());
            if !r.path.contains('/') {
                full.path = format!("library/{}", r.path);
            }
            if full.tag.is_none() && full.digest.is_none() {
                full.tag = Some("latest".into());
            }
            return Err(ReferenceError::NotQualified {
                suggestion: suggest(&full),
            });
        }
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
            return Err(ReferenceError::NoTag {
                suggestion: suggest(&r),
            });
        }
        Ok(r)
    }

    /// The name without tag or digest.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

/// `r` written out, if it parses back (a suggestion must itself be valid).
fn suggest(r: &Reference) -> Option<String> {
    let s = r.to_string();
    Reference::parse(&s).ok().map(|_| s)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= TAG_MAX
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::Tag(tag.to_owned()))
    }
}

fn check_digest(digest: &str) -> Result<&str, ReferenceError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| ReferenceError::DigestForm(digest.to_owned()))?;
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(ReferenceError::DigestAlgorithm {
                digest: digest.to_owned(),
                algorithm: algorithm.to_owned(),
            })
        }
    };
    let hex_ok = hex.len() == want
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex_ok {
        return Err(ReferenceError::DigestHex {
            digest: digest.to_owned(),
            algorithm: algorithm.to_owned(),
            want,
        });
    }
    Ok(digest)
}

/// A registry domain by the grammar above (`host[:port]`, `[IPv6][:port]`): also how
/// containerd names a registry's `certs.d` directory.
pub fn check_domain(domain: &str) -> Result<(), ReferenceError> {
    let err = || ReferenceError::Domain(domain.to_owned());
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(err)?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(err)?),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(err());
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if host.is_some_and(|h| !h.split('.').all(component_ok)) {
        return Err(err());
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), ReferenceError> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
    let mut i = 0;
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or any number of `-`.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
    }
    if ok {
        Ok(())
    } else if c.bytes().any(|b| b.is_ascii_uppercase()) {
        Err(ReferenceError::Uppercase(c.to_owned()))
    } else {
        Err(ReferenceError::PathComponent(c.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_references() {
        for s in [
            "registry.k8s.io/pause:3.6",
            "localhost:5000/a/b:1",
            "localhost/a:latest",
            "docker.io/library/busybox:1.36.1-musl",
            "docker.io/library/busybox:_x",
            "ghcr.io/a-b/c__d/e.f/g--h:TAG_1.x-y",
            "[::1]:5000/x:1",
            "[fe80::1]/x:1",
            "10.0.0.1:5000/x/y:z",
            &format!("docker.io/library/busybox@sha256:{HEX}"),
            &format!("docker.io/library/busybox:1@sha256:{HEX}"),
            &format!("docker.io/x:{}", "a".repeat(128)),
        ] {
            let r = Reference::qualified(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn invalid_references_say_why() {
        for (s, why) in [
            ("docker.io/library/busybox@sha256:bad", "64 lowercase hex"),
            (
                &format!("docker.io/x@sha256:{}", HEX.to_uppercase()),
                "lowercase hex",
            ),
            (&format!("docker.io/x@sha256:{HEX}0"), "64 lowercase hex"),
            (&format!("docker.io/x@md5:{HEX}"), "not sha256"),
            ("docker.io/x@", "algorithm:hex"),
            ("docker.io/library/busybox:t#x", "not a valid tag"),
            ("docker.io/library/busybox:-x", "not a valid tag"),
            ("docker.io/library/busybox:.x", "not a valid tag"),
            ("docker.io/library/busybox:", "not a valid tag"),
            (
                &format!("docker.io/x:{}", "a".repeat(200)),
                "not a valid tag",
            ),
            ("docker.io/Library/busybox:1", "must be lowercase"),
            ("docker.io/library/BusyBox:1", "must be lowercase"),
            ("docker.io/a..b:1", "not valid"),
            ("docker.io/a___b:1", "not valid"),
            ("docker.io/-a:1", "not valid"),
            ("docker.io/a-:1", "not valid"),
            ("docker.io//a:1", "not valid"),
            ("docker.io/a/:1", "not valid"),
            ("docker.io/a b:1", "whitespace"),
            ("docker.io/a\n:1", "whitespace"),
            ("docker.io/a\u{7}:1", "control"),
            ("", "empty"),
            ("-bad.io/x:1", "registry domain"),
            ("bad_domain.io/x:1", "registry domain"),
            ("host.io:port/x:1", "registry domain"),
            ("[zz::1]:5000/x:1", "registry domain"),
            (&format!("docker.io/{}:1", "a".repeat(250)), "at most 255"),
        ] {
            let e = Reference::qualified(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn suggestions_are_valid_references() {
        for (s, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1", "docker.io/library/busybox:1"),
            ("a/b:1", "docker.io/a/b:1"),
            (
                &format!("busybox@sha256:{HEX}"),
                &format!("docker.io/library/busybox@sha256:{HEX}"),
            ),
            (
                "docker.io/library/busybox",
                "docker.io/library/busybox:latest",
            ),
        ] {
            let e = Reference::qualified(s).unwrap_err().to_string();
            assert!(e.contains(want), "{s:?}: {e}");
            Reference::qualified(want).unwrap();
        }
        // A name so long that adding docker.io/library/ breaks the limit gets no suggestion.
        let long = "a".repeat(250);
        let e = Reference::qualified(&format!("{long}:1"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&long), "{e}");
        // Bad refs are refused for their fault, not offered a "fix" that is still bad.
        for bad in ["busybox:t#x", "Busybox:1", "busybox@sha256:bad"] {
            let e = Reference::qualified(bad).unwrap_err().to_string();
            assert!(!e.contains("write docker.io"), "{bad:?}: {e}");
        }
    }
}
