//! The init's own copy of the builder → init contract, `/.diskless/image.json` (reference:
//! `docs/image-contract.md`). Kept separate from the builder's `src/contract.rs` on purpose:
//! the two binaries share no code, so the document, not a Rust type, is the interface.
//! Unknown fields are refused, like the builder does, so a newer builder's additions are not
//! silently ignored by an older init.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const CONTRACT_PATH: &str = "/.diskless/image.json";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// Checked on the raw JSON before typed parsing (see `parse`).
    #[allow(dead_code)]
    pub version: u32,
    pub name: String,
    pub unpacked_bytes: u64,
    pub segments: Vec<Segment>,
    pub modules: Vec<Module>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub cgroup_controllers: Vec<String>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub images: Vec<Image>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: String,
    pub sentinel: String,
    pub content: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub optional: bool,
    /// Modules that must be loaded before this one (dependencies, softdep targets).
    #[serde(default)]
    pub after: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase", tag = "mode")]
pub enum Network {
    Dhcp {
        #[serde(default)]
        interface: Option<String>,
    },
    Static {
        #[serde(default)]
        interface: Option<String>,
        address: String,
        #[serde(default)]
        gateway: Option<String>,
        #[serde(default)]
        dns: Vec<String>,
    },
    None,
}

impl Default for Network {
    fn default() -> Self {
        Network::Dhcp { interface: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ready_path: Option<String>,
    #[serde(default)]
    pub condition_path: Option<String>,
    #[serde(default = "yes")]
    pub restart: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub index: String,
    pub blobs: Vec<String>,
    pub refs: Vec<String>,
}

impl Contract {
    pub fn load() -> Result<Contract, String> {
        let text = std::fs::read_to_string(CONTRACT_PATH).map_err(|e| {
            format!(
                "cannot read {CONTRACT_PATH}: {e}; the manifest segment (the first `initrd` line of the iPXE entry) is missing"
            )
        })?;
        Contract::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Contract, String> {
        // Version first, so a v2 document gets "unknown version", not an unknown-field error.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{CONTRACT_PATH}: {e}"))?;
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            other => {
                return Err(format!(
                    "{CONTRACT_PATH} has version {other:?}; this init reads version {VERSION}: rebuild the image with a matching builder"
                ))
            }
        }
        let c: Contract =
            serde_json::from_str(text).map_err(|e| format!("{CONTRACT_PATH}: {e}"))?;
        for s in &c.services {
            if s.command.is_empty() || !s.command[0].starts_with('/') {
                return Err(format!(
                    "{CONTRACT_PATH}: service {:?} needs a command whose first word is an absolute path",
                    s.name
                ));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "version": 1, "name": "worker", "unpacked_bytes": 1000,
      "segments": [{"name": "base", "sentinel": "/.diskless/segments/base", "content": "ab"}],
      "modules": [{"name": "virtio_net", "path": "/lib/modules/x/virtio_net.ko", "optional": false}],
      "sysctls": {"net.ipv4.ip_forward": "1"},
      "cgroup_controllers": ["cpu", "memory"],
      "network": {"mode": "static", "address": "10.0.0.5/24", "dns": ["10.0.0.1"]},
      "services": [{"name": "containerd", "command": ["/usr/bin/containerd"], "env": {},
                    "ready_path": "/run/containerd/containerd.sock", "condition_path": null, "restart": true}],
      "images": [{"name": "pause", "index": "/var/lib/diskless/oci/pause.index.json",
                  "blobs": ["sha256:00"], "refs": ["registry.k8s.io/pause:3.6"]}]
    }"#;

    #[test]
    fn parses_the_documented_example() {
        let c = Contract::parse(DOC).unwrap();
        assert_eq!(c.segments[0].name, "base");
        assert_eq!(
            c.network,
            Network::Static {
                interface: None,
                address: "10.0.0.5/24".into(),
                gateway: None,
                dns: vec!["10.0.0.1".into()]
            }
        );
        assert!(c.services[0].restart);
        assert_eq!(c.images[0].refs, ["registry.k8s.io/pause:3.6"]);
    }

    #[test]
    fn other_versions_are_refused() {
        let e = Contract::parse(r#"{"version": 2, "new": 1}"#).unwrap_err();
        assert!(e.contains("version Some(2)"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let doc = DOC.replacen("\"name\": \"worker\"", "\"name\": \"worker\", \"x\": 1", 1);
        assert!(Contract::parse(&doc)
            .unwrap_err()
            .contains("unknown field `x`"));
    }

    #[test]
    fn relative_service_command_is_refused() {
        let doc = DOC.replace("[\"/usr/bin/containerd\"]", "[\"containerd\"]");
        assert!(Contract::parse(&doc).unwrap_err().contains("absolute path"));
    }
}
