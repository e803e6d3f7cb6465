//! The `diskless.*` options on the kernel command line (`/proc/cmdline`): per-boot overrides a
//! lab admin adds in the iPXE menu without rebuilding the image.

use diskless_contract::identity;

/// A static address from `diskless.ip=ADDR/PREFIX[,GATEWAY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    /// `10.0.0.5/24`
    pub address: String,
    pub gateway: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub ip: Option<StaticIp>,
    /// `diskless.hostname=`: the node's name for this boot, over `node.json`'s.
    pub hostname: Option<String>,
    /// `diskless.debug`: a shell on the console when a step fails.
    pub debug: bool,
    /// `diskless.check=1` (or `=restart`): run the check hook once booted, then power off.
    pub check: Option<String>,
    /// `diskless.rootsize=MiB`: size of the tmpfs root instead of the computed one.
    pub root_size_mib: Option<u64>,
}

/// A `diskless.*` option the init cannot honour; each names the option as written.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("cannot read /proc/cmdline: {0}")]
    Read(std::io::Error),
    #[error("diskless.hostname={value}: {why}")]
    Hostname {
        value: String,
        why: identity::IdentityError,
    },
    #[error(
        "diskless.ip={0} is not ADDR/PREFIX[,GATEWAY] (e.g. diskless.ip=10.0.0.5/24,10.0.0.1)"
    )]
    Ip(String),
    #[error("diskless.rootsize={0} is not a size in MiB")]
    RootSize(String),
    #[error("unknown option {0} (known: diskless.ip, diskless.hostname, diskless.debug, diskless.check, diskless.rootsize)")]
    Unknown(String),
}

impl Cmdline {
    pub fn read() -> Result<Cmdline, CmdlineError> {
        let text = std::fs::read_to_string("/proc/cmdline").map_err(CmdlineError::Read)?;
        Cmdline::parse(&text)
    }

    /// Parses the whole command line; options not starting with `diskless.` are the kernel's.
    pub fn parse(text: &str) -> Result<Cmdline, CmdlineError> {
        let mut c = Cmdline::default();
        for word in text.split_whitespace() {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            match (key, value) {
                ("diskless.debug", None | Some("1")) => c.debug = true,
                ("diskless.debug", Some(_)) => c.debug = false,
                ("diskless.check", None) => c.check = Some("1".into()),
                ("diskless.check", Some("0")) => c.check = None,
                ("diskless.check", Some(v)) => c.check = Some(v.into()),
                // The node name rule of node.json and the inventory: this overrides them.
                ("diskless.hostname", v) => {
                    let v = v.unwrap_or("");
                    identity::hostname(v).map_err(|why| CmdlineError::Hostname {
                        value: v.to_owned(),
                        why,
                    })?;
                    c.hostname = Some(v.into());
                }
                ("diskless.ip", Some(v)) => c.ip = Some(parse_ip(v)?),
                ("diskless.rootsize", Some(v)) => {
                    c.root_size_mib = Some(
                        v.parse()
                            .map_err(|_| CmdlineError::RootSize(v.to_owned()))?,
                    )
                }
                (k, _) if k.starts_with("diskless.") => {
                    return Err(CmdlineError::Unknown(word.to_owned()))
                }
                _ => {}
            }
        }
        Ok(c)
    }
}

fn parse_ip(v: &str) -> Result<StaticIp, CmdlineError> {
    let bad = || CmdlineError::Ip(v.to_owned());
    let (address, gateway) = match v.split_once(',') {
        Some((a, g)) => (a, Some(g)),
        None => (v, None),
    };
    let (addr, prefix) = address.split_once('/').ok_or_else(bad)?;
    addr.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    match prefix.parse::<u8>() {
        Ok(p) if p <= 32 => {}
        _ => return Err(bad()),
    }
    if let Some(g) = gateway {
        g.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?;
    }
    Ok(StaticIp {
        address: address.into(),
        gateway: gateway.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_options_are_ignored() {
        let c = Cmdline::parse("console=ttyS0 panic=10 quiet\n").unwrap();
        assert_eq!(c, Cmdline::default());
    }

    #[test]
    fn all_options() {
        let c = Cmdline::parse(
            "console=ttyS0 diskless.ip=10.0.0.5/24,10.0.0.1 diskless.hostname=node-7 diskless.debug diskless.check=restart diskless.rootsize=300",
        )
        .unwrap();
        assert_eq!(
            c.ip,
            Some(StaticIp {
                address: "10.0.0.5/24".into(),
                gateway: Some("10.0.0.1".into())
            })
        );
        assert_eq!(c.hostname.as_deref(), Some("node-7"));
        assert!(c.debug);
        assert_eq!(c.check.as_deref(), Some("restart"));
        assert_eq!(c.root_size_mib, Some(300));
    }

    #[test]
    fn ip_without_gateway() {
        let c = Cmdline::parse("diskless.ip=192.168.1.9/16").unwrap();
        assert_eq!(c.ip.unwrap().gateway, None);
    }

    #[test]
    fn bad_values_are_named() {
        for bad in [
            "diskless.ip=10.0.0.5",
            "diskless.ip=10.0.0.5/33",
            "diskless.ip=10.0.0/24",
            "diskless.ip=10.0.0.5/24,gw",
            "diskless.hostname=a_b",
            // The kubelet's node-name rule, as in node.json.
            "diskless.hostname=Node-7",
            "diskless.rootsize=lots",
            "diskless.colour=red",
        ] {
            let e = Cmdline::parse(bad).unwrap_err().to_string();
            assert!(e.contains(bad.split('=').next().unwrap()), "{bad}: {e}");
        }
    }

    #[test]
    fn check_flag_forms() {
        assert_eq!(
            Cmdline::parse("diskless.check").unwrap().check.as_deref(),
            Some("1")
        );
        assert_eq!(Cmdline::parse("diskless.check=0").unwrap().check, None);
    }
}
