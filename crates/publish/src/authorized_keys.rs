//! `authorized_keys` for a node's root login (the inventory's `ssh_authorized_keys_file`),
//! checked line by line and written back from the checked parts: a key type, its base64 blob
//! (which must decode to a key of that type) and an optional comment. Options before the key
//! (`command=`, `from=`, `no-pty`, …) are refused rather than passed on: dropbear and OpenSSH
//! read them differently, and a key that logs in as root on every node should not carry
//! surprises. Blank lines and `#` lines are dropped.

use base64::Engine;

/// The key types dropbear 2022.83 (Debian 12's `dropbear-bin`) accepts for user keys.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One checked key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    pub key_type: &'static str,
    /// The base64 text as given (it decodes to a key of `key_type`).
    pub blob: String,
    /// Printable text without control characters; may hold spaces.
    pub comment: Option<String>,
}

/// Every key of one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKeys(pub Vec<AuthorizedKey>);

impl AuthorizedKeys {
    /// Parses a whole file; an error names the 1-based line and what is wrong with it.
    pub fn parse(text: &str) -> Result<AuthorizedKeys, String> {
        let mut keys = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            // CRLF files: the `\r` is the line's end, not part of a comment.
            let line = raw.strip_suffix('\r').unwrap_or(raw).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(AuthorizedKey::parse(line).map_err(|why| format!("line {}: {why}", i + 1))?);
        }
        if keys.is_empty() {
            return Err("holds no key: nobody could log in (passwords are off)".into());
        }
        Ok(AuthorizedKeys(keys))
    }

    /// The file as written into the node: one checked key per line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for k in &self.0 {
            out.push_str(k.key_type);
            out.push(' ');
            out.push_str(&k.blob);
            if let Some(c) = &k.comment {
                out.push(' ');
                out.push_str(c);
            }
            out.push('\n');
        }
        out.into_bytes()
    }
}

impl AuthorizedKey {
    fn parse(line: &str) -> Result<AuthorizedKey, String> {
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!("control character {c:?} in the line"));
        }
        let (first, rest) = word(line);
        let Some(key_type) = KEY_TYPES.iter().copied().find(|t| *t == first) else {
            return Err(
                if first.contains('=') || first.contains(',') || is_option(first) {
                    format!(
                        "options before the key ({first:?}) are not accepted: give only \
                     `TYPE BASE64 [COMMENT]`"
                    )
                } else {
                    format!(
                        "{first:?} is not a key type (expected one of {})",
                        KEY_TYPES.join(", ")
                    )
                },
            );
        };
        let (blob, comment) = word(rest);
        if blob.is_empty() {
            return Err(format!("{key_type} without its base64 key"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|e| format!("the {key_type} key is not valid base64 ({e})"))?;
        // The wire format starts with the key type as an SSH string: length, then the name.
        let named = bytes
            .get(..4)
            .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
            .and_then(|n| bytes.get(4..4 + n));
        if named != Some(key_type.as_bytes()) {
            return Err(format!(
                "the base64 key is not a {key_type} key (its data names {})",
                named
                    .map(|n| format!("{:?}", String::from_utf8_lossy(n)))
                    .unwrap_or_else(|| "no type".into())
            ));
        }
        let comment = Some(comment.trim_end())
            .filter(|c| !c.is_empty())
            .map(String::from);
        Ok(AuthorizedKey {
            key_type,
            blob: blob.to_string(),
            comment,
        })
    }
}

/// The first word of `s` and the rest after the blanks that follow it.
fn word(s: &str) -> (&str, &str) {
    match s.split_once([' ', '\t']) {
        Some((w, rest)) => (w, rest.trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// authorized_keys options that take no value (the others have `=`).
fn is_option(word: &str) -> bool {
    [
        "agent-forwarding",
        "cert-authority",
        "no-agent-forwarding",
        "no-port-forwarding",
        "no-pty",
        "no-user-rc",
        "no-X11-forwarding",
        "no-touch-required",
        "port-forwarding",
        "pty",
        "restrict",
        "user-rc",
        "verify-required",
        "X11-forwarding",
    ]
    .contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed blob of `key_type` (the type string, then key bytes).
    fn blob(key_type: &str) -> String {
        let mut b = (key_type.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(key_type.as_bytes());
        b.extend_from_slice(&[0, 0, 0, 32]);
        b.extend_from_slice(&[7; 32]);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn keys_are_written_back_from_their_checked_parts() {
        let ed = blob("ssh-ed25519");
        let rsa = blob("ssh-rsa");
        let text = format!(
            "# lab admins\n\nssh-ed25519 {ed} admin@lab\r\n  ssh-rsa\t{rsa}  \nssh-ed25519 {ed} two words\n"
        );
        let keys = AuthorizedKeys::parse(&text).unwrap();
        assert_eq!(keys.0.len(), 3);
        assert_eq!(keys.0[1].comment, None);
        assert_eq!(
            String::from_utf8(keys.to_bytes()).unwrap(),
            format!("ssh-ed25519 {ed} admin@lab\nssh-rsa {rsa}\nssh-ed25519 {ed} two words\n")
        );
    }

    #[test]
    fn options_wrong_types_bad_base64_and_control_characters_are_refused() {
        let ed = blob("ssh-ed25519");
        for (text, why) in [
            (
                format!("command=\"/bin/sh\" ssh-ed25519 {ed}"),
                "line 1: options before the key",
            ),
            (format!("no-pty ssh-ed25519 {ed}"), "options before the key"),
            (
                format!("\nssh-dss {ed}"),
                "line 2: \"ssh-dss\" is not a key type",
            ),
            ("ssh-ed25519".into(), "without its base64 key"),
            ("ssh-ed25519 AAAA!!".into(), "not valid base64"),
            (
                format!("ssh-rsa {ed} x"),
                "not a ssh-rsa key (its data names \"ssh-ed25519\")",
            ),
            ("ssh-ed25519 AAAA".into(), "its data names no type"),
            (format!("ssh-ed25519 {ed} a\rb"), "control character '\\r'"),
            (format!("ssh-ed25519 {ed} a\u{1b}[2Jb"), "control character"),
            ("# only a comment\n\n".into(), "holds no key"),
        ] {
            let e = AuthorizedKeys::parse(&text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
