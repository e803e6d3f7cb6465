//! sha256 digests as 64 lowercase hex digits: the one rule for every digest that becomes a
//! path (`objects/<hex>`, the blob pool, the blob cache) or a word of an iPXE script, so a
//! document read from disk cannot smuggle `../` or a command through one. The builder, publish
//! and the init all check with this function.

use serde::{Deserialize, Deserializer};

/// Whether `s` is a sha256 digest in hex: exactly 64 of `0-9a-f` (lowercase, as every tool
/// writes them and as the OCI spec requires).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex of a `sha256:<hex>` digest string, if it is one.
pub fn sha256_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| is_sha256_hex(h))
}

/// `#[serde(deserialize_with = "sha256_hex")]`: a digest field that must be [`is_sha256_hex`].
pub fn sha256_hex<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if is_sha256_hex(&s) {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "{s:?} is not a sha256 digest (64 lowercase hex digits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_64_lowercase_hex() {
        let good = "0123456789abcdef".repeat(4);
        assert!(is_sha256_hex(&good));
        assert_eq!(sha256_of(&format!("sha256:{good}")), Some(good.as_str()));
        for bad in [
            "".to_owned(),
            "abc".to_owned(),
            good.to_uppercase(),
            format!("{good}0"),
            good[..63].to_owned(),
            format!("../../../../etc/passwd{}", &good[22..]),
            format!("{}g", &good[..63]),
            format!("{} ", &good[..63]),
        ] {
            assert!(!is_sha256_hex(&bad), "{bad:?}");
        }
        assert_eq!(sha256_of(&format!("sha512:{good}")), None);
        assert_eq!(sha256_of("sha256:bad"), None);
    }
}
