//! What the iPXE fuzz targets check a script against: a reader that splits a script the way
//! iPXE does (lines; `#` comments and `:labels`; words at whitespace; commands at `||` and
//! `&&`), and the expected lines, built from the validated inputs without the writers' code.

/// One line of a script as iPXE reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `#…`: the text after the `#`.
    Comment(String),
    /// `:name`.
    Label(String),
    /// Commands joined by `||` or `&&` (kept as words of their own), each a list of words.
    Command(Vec<String>),
}

/// Characters iPXE gives a meaning to inside a line (`${…}` expansion, quoting, escapes,
/// comments). A word taken from an input must hold none of them.
const SYNTAX: &[char] = &['$', '"', '\'', '\\', '#', '|', '&', ';', '`'];

/// Splits `script` into lines; panics (the fuzz failure) on anything iPXE would read
/// differently from a plain line-per-command script: no final newline, a control or
/// non-ASCII character (`\r`, `\t`, NUL…), a line starting with a space.
pub fn read(script: &str) -> Vec<Line> {
    assert!(
        script.ends_with('\n'),
        "script without final newline: {script:?}"
    );
    script[..script.len() - 1]
        .split('\n')
        .map(|line| {
            assert!(
                line.chars().all(|c| c == ' ' || c.is_ascii_graphic()),
                "line with a control or non-ASCII character: {line:?}"
            );
            if let Some(text) = line.strip_prefix('#') {
                Line::Comment(text.to_string())
            } else if let Some(name) = line.strip_prefix(':') {
                Line::Label(name.to_string())
            } else {
                // iPXE splits at runs of whitespace; a line that starts with one would not be
                // a comment or label even if a `#` or `:` followed.
                assert!(!line.starts_with(' '), "line starts with a space: {line:?}");
                Line::Command(
                    line.split(' ')
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
        })
        .collect()
}

/// An expected word: either fixed by the writer (may be iPXE syntax: `${target}`, `||`) or
/// taken from an input (must be a plain word: no syntax, not an option).
#[derive(Debug, Clone)]
pub enum W {
    Fixed(&'static str),
    Input(String),
    /// An input in a position where iPXE's option parser would take `-x` as an option.
    Positional(String),
}

/// An expected line.
#[derive(Debug, Clone)]
pub enum Expect {
    /// A comment whose text is made of input words (so it holds no syntax either).
    Comment(String),
    Label(&'static str),
    Command(Vec<W>),
}

/// Words of a `Words` value (single spaces, possibly none).
pub fn words(s: &str) -> Vec<W> {
    s.split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| W::Input(w.to_string()))
        .collect()
}

/// Checks `script` against `expected`: the same lines, words equal to the inputs, no input
/// word carrying iPXE syntax or passing for an option. Panics with both on a difference.
pub fn check(what: &str, script: &str, expected: &[Expect]) {
    let lines = read(script);
    assert_eq!(
        lines.len(),
        expected.len(),
        "{what}: {} lines, expected {}:\n{script}\nexpected: {expected:?}",
        lines.len(),
        expected.len()
    );
    for (line, exp) in lines.iter().zip(expected) {
        match (line, exp) {
            (Line::Comment(got), Expect::Comment(want)) => {
                assert_eq!(got, want, "{what}: comment differs:\n{script}");
                assert!(
                    !got.contains(SYNTAX),
                    "{what}: comment carries iPXE syntax: {got:?}"
                );
            }
            (Line::Label(got), Expect::Label(want)) => assert_eq!(got, want, "{what}"),
            (Line::Command(got), Expect::Command(want)) => {
                let want_str: Vec<&str> = want
                    .iter()
                    .map(|w| match w {
                        W::Fixed(s) => *s,
                        W::Input(s) | W::Positional(s) => s.as_str(),
                    })
                    .collect();
                assert_eq!(got, &want_str, "{what}: command differs:\n{script}");
                for w in want {
                    if let W::Input(s) | W::Positional(s) = w {
                        assert!(
                            !s.contains(SYNTAX),
                            "{what}: input word {s:?} carries iPXE syntax:\n{script}"
                        );
                    }
                    if let W::Positional(s) = w {
                        assert!(
                            !s.starts_with('-'),
                            "{what}: input word {s:?} would be read as an option:\n{script}"
                        );
                    }
                }
            }
            _ => panic!("{what}: line {line:?}, expected {exp:?}:\n{script}"),
        }
    }
}

/// Fixed words of a writer's template line.
pub fn fixed(line: &'static str) -> Vec<W> {
    line.split(' ').map(W::Fixed).collect()
}

/// A path an entry is written to: relative, inside the boot server's directory.
pub fn check_path(path: &str) {
    assert!(
        !path.starts_with('/')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."),
        "entry path {path:?} leaves the boot server's directory"
    );
}

/// The expected lines of `diskless_builder::ipxe::script`.
pub struct Script<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub comment: Option<&'a str>,
    pub index_sha256: &'a str,
    pub base: &'a str,
    pub kernel_sha256: &'a str,
    pub cmdline: Vec<&'a str>,
    pub segments: Vec<&'a str>,
    pub initrds: Vec<String>,
}

impl Script<'_> {
    pub fn expect(&self) -> Vec<Expect> {
        let mut e = vec![Expect::Comment("!ipxe".into())];
        let title = if self.description.is_empty() {
            format!(" {}", self.name)
        } else {
            format!(" {} {}", self.name, self.description)
        };
        e.push(Expect::Comment(title));
        if let Some(c) = self.comment {
            e.push(Expect::Comment(format!(" {c}")));
        }
        e.push(Expect::Comment(format!(" index {}", self.index_sha256)));
        let mut kernel = vec![
            W::Fixed("kernel"),
            W::Positional(format!("{}objects/{}", self.base, self.kernel_sha256)),
        ];
        for c in &self.cmdline {
            kernel.extend(words(c));
        }
        e.push(Expect::Command(kernel));
        for s in &self.segments {
            e.push(Expect::Command(vec![
                W::Fixed("initrd"),
                W::Positional(format!("{}objects/{s}", self.base)),
            ]));
        }
        for i in &self.initrds {
            e.push(Expect::Command(vec![
                W::Fixed("initrd"),
                W::Positional(i.clone()),
            ]));
        }
        e.push(Expect::Command(fixed("boot")));
        e
    }
}
