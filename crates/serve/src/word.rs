//! The values that may reach a daemon's configuration file, each checked once by its own rule.
//! Config writers take only these types (and `&'static str` text from this crate), so no user
//! string is ever pasted into dnsmasq.conf or nginx.conf unchecked.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WordError {
    /// A network interface name: 1–15 bytes (Linux IFNAMSIZ) of letters, digits, `.`, `_`, `-`.
    #[error("interface name {0:?} is not valid: use 1–15 letters, digits, '.', '_' or '-'")]
    Interface(String),
    /// A path the daemons read or write.
    #[error("path {0:?} is not usable in a daemon config: it must be absolute, UTF-8, and use only letters, digits and . _ - + @ / (no spaces, quotes, commas, '#', ';', '$' or braces)")]
    Path(String),
    /// An address with a prefix length.
    #[error("{0:?} is not an IPv4 address with a prefix length (e.g. 10.33.0.1/24)")]
    Cidr(String),
    /// An HTTP port.
    #[error("port {0} is not usable: give 1–65535")]
    Port(u16),
}

/// A token that needs no quoting in either format: letters, digits and `. _ - + @ / :`.
/// Everything written into a config file as a value is one of these or static text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word(String);

impl Word {
    fn safe_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || "._-+@/:".contains(c)
    }

    fn checked(s: &str) -> Option<Word> {
        (!s.is_empty() && s.chars().all(Word::safe_char)).then(|| Word(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One argument of a config line: a checked value, or this crate's own text.
#[derive(Debug, Clone)]
pub enum Arg {
    Word(Word),
    Text(&'static str),
}

impl From<Word> for Arg {
    fn from(w: Word) -> Arg {
        Arg::Word(w)
    }
}

impl From<&'static str> for Arg {
    fn from(t: &'static str) -> Arg {
        Arg::Text(t)
    }
}

impl Word {
    /// `http://ADDR:PORT/PATH`, from checked parts.
    pub fn http_url(addr: Ipv4Addr, port: Port, path: &'static str) -> Word {
        let w = Word(format!("http://{addr}:{}/{path}", port.0));
        debug_assert!(w.0.chars().all(Word::safe_char));
        w
    }
}

impl Word {
    /// dnsmasq's `constructor:IFACE` (a range taken from the interface's IPv6 addresses).
    pub fn constructor(i: &Interface) -> Word {
        Word(format!("constructor:{}", i.as_str()))
    }

    /// `ADDR:PORT`.
    pub fn from_addr_port(addr: Ipv4Addr, port: Port) -> Word {
        Word(format!("{addr}:{}", port.0))
    }
}

impl From<Ipv4Addr> for Word {
    fn from(a: Ipv4Addr) -> Word {
        Word(a.to_string())
    }
}

impl From<Port> for Word {
    fn from(p: Port) -> Word {
        Word(p.0.to_string())
    }
}

/// A network interface name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface(Word);

impl Interface {
    pub fn new(s: &str) -> Result<Interface, WordError> {
        let ok = s.len() <= 15
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        Word::checked(s)
            .filter(|_| ok)
            .map(Interface)
            .ok_or_else(|| WordError::Interface(s.to_string()))
    }

    pub fn word(&self) -> Word {
        self.0.clone()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// An absolute path made of safe characters (see `WordError::Path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfPath(Word);

impl ConfPath {
    pub fn new(p: &Path) -> Result<ConfPath, WordError> {
        let text = p.to_str().unwrap_or("");
        Word::checked(text)
            .filter(|_| p.is_absolute() && !text.contains(':'))
            .map(ConfPath)
            .ok_or_else(|| WordError::Path(p.display().to_string()))
    }

    /// `self/rel`; `rel` is this crate's own static text.
    pub fn join(&self, rel: &'static str) -> ConfPath {
        ConfPath::new(&self.path().join(rel)).expect("a safe path joined with static safe text")
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.0.as_str())
    }

    pub fn word(&self) -> Word {
        self.0.clone()
    }
}

/// A TCP port other than 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(u16);

impl Port {
    pub fn new(p: u16) -> Result<Port, WordError> {
        if p == 0 {
            return Err(WordError::Port(p));
        }
        Ok(Port(p))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// An IPv4 address and the prefix length of its network (`10.33.0.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, WordError> {
        let err = || WordError::Cidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err())?;
        let prefix: u8 = p.parse().map_err(|_| err())?;
        if !(1..=30).contains(&prefix) {
            return Err(err());
        }
        Ok(Cidr { addr, prefix })
    }

    fn mask(self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// Whether `a` is a host address of this network (not the network or broadcast address).
    pub fn holds_host(self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        let net = u32::from(self.network());
        a & self.mask() == net && a != net && a != net | !self.mask()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(Interface::new("br0").is_ok());
        assert!(Interface::new("enp3s0.100").is_ok());
        for bad in [
            "",
            "a b",
            "br0\ndhcp-range=x",
            "abcdefghijklmnop",
            "..",
            "br0,x",
            "eth#",
        ] {
            assert!(Interface::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert!(ConfPath::new(Path::new("/srv/tftp/boot-1.0")).is_ok());
        for bad in [
            "relative/dir",
            "/srv/my files",
            "/srv/a\"b",
            "/srv/a,b",
            "/srv/a;b",
            "/srv/a{b}",
            "/srv/$x",
            "/srv/a#b",
            "/srv/a\nb",
            "/srv/a:b",
        ] {
            assert!(ConfPath::new(Path::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn networks() {
        let c = Cidr::parse("10.33.0.1/24").unwrap();
        assert_eq!(c.network(), Ipv4Addr::new(10, 33, 0, 0));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.holds_host(Ipv4Addr::new(10, 33, 0, 200)));
        assert!(!c.holds_host(Ipv4Addr::new(10, 33, 1, 2)));
        assert!(!c.holds_host(Ipv4Addr::new(10, 33, 0, 255)));
        for bad in [
            "10.33.0.1",
            "10.33.0.1/33",
            "10.33.0/24",
            "x/24",
            "10.33.0.1/0",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Port::new(0).is_err());
    }
}
