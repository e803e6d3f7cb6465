//! Registry mirrors (`plan --host --registry-mirror HOST=URL`): containerd's `hosts.toml`, one
//! file per registry under [`CERTS_DIR`], which containerd 1.5+ and 2.x both read through the
//! CRI plugin's registry `config_path` (the host plan sets it). Images that are not preloaded
//! are pulled from the mirrors first, in the order given, then from the registry itself.
//! The same file as the Nix option `containerd.registryMirrors` writes (`modules/containerd.nix`).

use diskless_contract::reference::check_domain;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::fmt;

/// containerd's registry `config_path`: `<CERTS_DIR>/<registry host>/hosts.toml`.
pub const CERTS_DIR: &str = "/etc/containerd/certs.d";

/// A registry as containerd names it: `docker.io`, `registry.k8s.io`, `10.0.0.5:5000`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RegistryHost(String);

impl RegistryHost {
    pub fn new(s: &str) -> Result<RegistryHost, String> {
        check_domain(s)?;
        Ok(RegistryHost(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The registry's own endpoint, tried after the mirrors. Docker Hub's API does not live
    /// at its name.
    fn server(&self) -> String {
        match self.0.as_str() {
            "docker.io" => "https://registry-1.docker.io".into(),
            h => format!("https://{h}"),
        }
    }
}

/// A mirror's base URL: `http://` or `https://`, a registry domain, an optional path; nothing
/// that could end a TOML key or a path early (checked per byte, no query or fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorUrl(String);

impl MirrorUrl {
    pub fn new(s: &str) -> Result<MirrorUrl, String> {
        let rest = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .ok_or_else(|| format!("mirror URL {s:?} must start with http:// or https://"))?;
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_domain(domain).map_err(|e| format!("mirror URL {s:?}: {e}"))?;
        if let Some(b) = path
            .bytes()
            .find(|b| !(b.is_ascii_alphanumeric() || b"/._~-".contains(b)))
        {
            return Err(format!(
                "mirror URL {s:?}: its path may hold letters, digits and / . _ ~ - only (found {:?})",
                b as char
            ));
        }
        Ok(MirrorUrl(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `HOST=URL`, as `--registry-mirror` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryMirror {
    pub host: RegistryHost,
    pub url: MirrorUrl,
}

impl std::str::FromStr for RegistryMirror {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (host, url) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: expected REGISTRY=URL, e.g. docker.io=http://10.0.0.5:5000")
        })?;
        Ok(RegistryMirror {
            host: RegistryHost::new(host)?,
            url: MirrorUrl::new(url)?,
        })
    }
}

impl fmt::Display for RegistryMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.host.0, self.url.0)
    }
}

/// One registry's `hosts.toml`.
#[derive(serde::Serialize)]
struct HostsToml {
    server: String,
    host: Mirrors,
}

/// `[host."URL"]` tables in the order given: containerd tries them in file order.
struct Mirrors(Vec<String>);

#[derive(serde::Serialize)]
struct Capabilities {
    capabilities: [&'static str; 2],
}

impl Serialize for Mirrors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for url in &self.0 {
            m.serialize_entry(
                url,
                &Capabilities {
                    capabilities: ["pull", "resolve"],
                },
            )?;
        }
        m.end()
    }
}

/// `(path, contents)` of each registry's `hosts.toml`, registries sorted, mirrors in the
/// order given (a URL given twice for one registry counts once).
pub fn hosts_files(mirrors: &[RegistryMirror]) -> Vec<(String, String)> {
    let mut by_host: std::collections::BTreeMap<&RegistryHost, Vec<String>> = Default::default();
    for m in mirrors {
        let urls = by_host.entry(&m.host).or_default();
        if !urls.contains(&m.url.0) {
            urls.push(m.url.0.clone());
        }
    }
    by_host
        .into_iter()
        .map(|(host, urls)| {
            let doc = HostsToml {
                server: host.server(),
                host: Mirrors(urls),
            };
            (
                format!("{CERTS_DIR}/{}/hosts.toml", host.0),
                toml::to_string(&doc).expect("hosts.toml always serializes"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_toml_per_registry_mirrors_in_order() {
        let m: Vec<RegistryMirror> = [
            "docker.io=http://10.33.0.1:5000",
            "docker.io=https://mirror.lab.example/v2-cache",
            "10.0.0.5:5000=http://10.0.0.6:5000",
            "docker.io=http://10.33.0.1:5000",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let files = hosts_files(&m);
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0].0,
            "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml"
        );
        assert_eq!(files[1].0, "/etc/containerd/certs.d/docker.io/hosts.toml");
        let doc: toml::Table = toml::from_str(&files[1].1).unwrap();
        assert_eq!(doc["server"].as_str(), Some("https://registry-1.docker.io"));
        let hosts = doc["host"].as_table().unwrap();
        let keys: Vec<&String> = hosts.keys().collect();
        assert_eq!(keys.len(), 2);
        // File order is try order: the first one given comes first.
        assert!(
            files[1].1.find("10.33.0.1").unwrap() < files[1].1.find("mirror.lab").unwrap(),
            "{}",
            files[1].1
        );
        assert_eq!(
            hosts["http://10.33.0.1:5000"]["capabilities"],
            toml::Value::Array(vec!["pull".into(), "resolve".into()])
        );
        let other: toml::Table = toml::from_str(&files[0].1).unwrap();
        assert_eq!(other["server"].as_str(), Some("https://10.0.0.5:5000"));
    }

    #[test]
    fn bad_hosts_and_urls_are_refused_with_what_to_write() {
        for (arg, why) in [
            ("docker.io", "expected REGISTRY=URL"),
            ("docker io=http://m", "not a host name"),
            ("docker.io/x=http://m", "not a host name"),
            ("docker.io=ftp://m", "must start with http:// or https://"),
            ("docker.io=http://m\"]\nx=1", "not a host name"),
            ("docker.io=http://m/a\"b", "its path may hold"),
            ("docker.io=http://m/?q", "its path may hold"),
            ("docker.io=http://", "not a host name"),
            ("=http://m", "not a host name"),
        ] {
            let e = arg.parse::<RegistryMirror>().unwrap_err();
            assert!(e.contains(why), "{arg:?}: {e}");
        }
        let ok: RegistryMirror = "[fd00::1]:5000=http://[fd00::2]:5000/mirror"
            .parse()
            .unwrap();
        assert_eq!(
            ok.to_string(),
            "[fd00::1]:5000=http://[fd00::2]:5000/mirror"
        );
    }
}
