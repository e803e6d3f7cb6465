//! The per-node configuration, `/.diskless/node/node.json`, from the node's own last segment
//! (written by `diskless publish`, see docs/boot-server.md): hostname, labels, taints and the
//! kubelet mode of this one machine. The image is shared by many machines, so what differs
//! between them reaches the kubelet as command-line flags, which override its config file.
//!
//! Parsing is strict (unknown fields, bad labels or taints are errors naming the field): a
//! kubelet started with half a configuration registers a wrong node, which is worse than none,
//! so on any error the kubelet is not started at all.

use crate::contract::Service;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const NODE_JSON: &str = "/.diskless/node/node.json";
/// Where `diskless publish` puts the join material (and the Nix kubelet module looks for it).
pub const BOOTSTRAP_KUBECONFIG: &str = "/.diskless/node/kubelet/bootstrap-kubeconfig";
pub const CLIENT_CA: &str = "/.diskless/node/kubelet/ca.crt";
/// Written by the kubelet once its bootstrap CSR is signed; RAM like everything else, so every
/// boot bootstraps again.
const KUBECONFIG: &str = "/var/lib/kubelet/kubeconfig";
const CERT_DIR: &str = "/var/lib/kubelet/pki";

/// The kubelet's own rule (`--node-labels` help of v1.36): labels in the kubernetes.io and
/// k8s.io namespaces are refused at startup unless under these prefixes or in this set.
const KUBELET_LABEL_PREFIXES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];
const KUBELET_LABELS: &[&str] = &[
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Static pods only, no API server.
    Standalone,
    /// Registers with a cluster through the bootstrap kubeconfig.
    Join,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Join => "join",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub hostname: String,
    pub mac: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `key=value:Effect` or `key:Effect`, in the inventory's order.
    #[serde(default)]
    pub taints: Vec<String>,
    pub kubelet_mode: Mode,
}

/// `Ok(None)` when the machine booted a shared entry without a per-node segment.
pub fn load() -> Result<Option<NodeConfig>, String> {
    match std::fs::read_to_string(NODE_JSON) {
        Ok(text) => parse(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {NODE_JSON}: {e}")),
    }
}

pub fn parse(text: &str) -> Result<NodeConfig, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let node: NodeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        // "." or "?" when the error is about the document itself (a missing field, bad JSON).
        let field = match path.as_str() {
            "." | "?" => String::new(),
            p => format!("{p}: "),
        };
        format!("{NODE_JSON}: {field}{}", e.inner())
    })?;
    validate(&node).map_err(|(field, why)| format!("{NODE_JSON}: {field}: {why}"))?;
    Ok(node)
}

fn validate(n: &NodeConfig) -> Result<(), (String, String)> {
    if !valid_hostname(&n.hostname) {
        return Err((
            "hostname".into(),
            format!(
                "{:?} is not a valid node name (lowercase letters, digits, '-' and '.', at most 63)",
                n.hostname
            ),
        ));
    }
    let parts: Vec<&str> = n.mac.split([':', '-']).collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(("mac".into(), format!("{:?} is not a MAC address", n.mac)));
    }
    for (k, v) in &n.labels {
        let field = || format!("labels.{k:?}");
        check_key(k).map_err(|why| (field(), why))?;
        check_value(v).map_err(|why| (field(), why))?;
        if !kubelet_may_set(k) {
            return Err((
                field(),
                format!(
                    "the kubelet refuses to start with this label: in the kubernetes.io/k8s.io \
                     namespaces it may only set {}/…, {}/… and {}; use e.g. \
                     node.kubernetes.io/{} or set the label with kubectl once the node has joined",
                    KUBELET_LABEL_PREFIXES[0],
                    KUBELET_LABEL_PREFIXES[1],
                    KUBELET_LABELS.join(", "),
                    k.rsplit('/').next().unwrap_or(k)
                ),
            ));
        }
    }
    for (i, t) in n.taints.iter().enumerate() {
        check_taint(t).map_err(|why| (format!("taints[{i}]"), format!("{t:?}: {why}")))?;
    }
    Ok(())
}

/// RFC 1123 subdomain, as Kubernetes node names need (the inventory checks the same).
fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A label name or value: at most 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends. Also keeps
/// ',' and '=' out, which would split the kubelet's `--node-labels` flag elsewhere.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn check_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.len() > 253 || !valid_subdomain(p) {
            return Err(format!(
                "prefix {p:?} is not a DNS subdomain (lowercase letters, digits, '-', '.')"
            ));
        }
    }
    if !valid_name(name) {
        return Err(format!(
            "name {name:?} must be 1–63 of letters, digits, '-', '_', '.', starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// A DNS subdomain: label prefixes may be up to 253 long, where a hostname stops at 63.
fn valid_subdomain(p: &str) -> bool {
    p.split('.').all(|l| valid_hostname(l) && l.len() <= 63)
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || valid_name(v) {
        Ok(())
    } else {
        Err(format!(
            "value {v:?} must be empty or 1–63 of letters, digits, '-', '_', '.', starting and ending alphanumeric"
        ))
    }
}

fn kubelet_may_set(key: &str) -> bool {
    let Some((ns, _)) = key.split_once('/') else {
        return true;
    };
    let in_ns = |suffix: &str| ns == suffix || ns.ends_with(&format!(".{suffix}"));
    if !in_ns("kubernetes.io") && !in_ns("k8s.io") {
        return true;
    }
    KUBELET_LABEL_PREFIXES.iter().any(|p| in_ns(p)) || KUBELET_LABELS.contains(&key)
}

fn check_taint(t: &str) -> Result<(), String> {
    let (kv, effect) = t
        .rsplit_once(':')
        .ok_or("expected key=value:Effect or key:Effect")?;
    if !TAINT_EFFECTS.contains(&effect) {
        return Err(format!(
            "effect {effect:?} is not one of {}",
            TAINT_EFFECTS.join(", ")
        ));
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    check_key(k)?;
    check_value(v)
}

/// What the init does to the image's kubelet service for this node.
#[derive(Debug, Clone)]
pub struct Kubelet {
    pub service: Service,
    /// The mode the image's kubelet was built for (join when its command line has
    /// `--bootstrap-kubeconfig`, as the Nix module writes it).
    pub image_mode: Mode,
    /// Files the kubelet needs from the node segment; missing ones keep it from starting.
    pub needs: Vec<String>,
}

/// The kubelet service for this node: the image's, with the node's labels and taints, and the
/// node's kubelet mode where it differs from the image's (the per-machine configuration wins).
/// Pure, so every combination is unit-tested.
pub fn kubelet_for(image: &Service, node: &NodeConfig) -> Kubelet {
    let mut svc = image.clone();
    let cmd = &mut svc.command;
    let image_bootstrap = flag_value(cmd, "--bootstrap-kubeconfig");
    let image_mode = if image_bootstrap.is_some() {
        Mode::Join
    } else {
        Mode::Standalone
    };
    let mut needs = Vec::new();
    match (image_mode, node.kubelet_mode) {
        (Mode::Join, Mode::Join) => {
            // The image's own flags and config (client CA, webhook authn/authz) already join.
            needs.extend(image_bootstrap);
        }
        (Mode::Standalone, Mode::Join) => {
            // A standalone config trusts every caller (AlwaysAllow, no client CA): on a cluster
            // node the kubelet API must check callers against the cluster, like kubeadm's nodes.
            cmd.extend([
                format!("--bootstrap-kubeconfig={BOOTSTRAP_KUBECONFIG}"),
                format!("--kubeconfig={KUBECONFIG}"),
                format!("--cert-dir={CERT_DIR}"),
                format!("--client-ca-file={CLIENT_CA}"),
                "--anonymous-auth=false".into(),
                "--authentication-token-webhook=true".into(),
                "--authorization-mode=Webhook".into(),
                // The bootstrap certificate expires; the node may stay up longer than that.
                "--rotate-certificates=true".into(),
            ]);
            svc.condition_path = Some(BOOTSTRAP_KUBECONFIG.into());
            needs.extend([BOOTSTRAP_KUBECONFIG.to_string(), CLIENT_CA.to_string()]);
        }
        (Mode::Join, Mode::Standalone) => {
            for flag in ["--bootstrap-kubeconfig", "--kubeconfig", "--cert-dir"] {
                remove_flag(cmd, flag);
            }
            // The join config points at a client CA and webhooks that need an API server.
            cmd.extend(
                [
                    "--client-ca-file=",
                    "--authentication-token-webhook=false",
                    "--authorization-mode=AlwaysAllow",
                ]
                .map(String::from),
            );
            svc.condition_path = None;
        }
        (Mode::Standalone, Mode::Standalone) => {}
    }
    if !node.labels.is_empty() {
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        cmd.push(format!("--node-labels={}", labels.join(",")));
    }
    if !node.taints.is_empty() {
        cmd.push(format!("--register-with-taints={}", node.taints.join(",")));
    }
    Kubelet {
        service: svc,
        image_mode,
        needs,
    }
}

/// The kubelet service to run on this machine given the node configuration `load` returned, or
/// why it must not run (a `FAILED` line, not a kubelet registering a wrong node).
pub fn kubelet_service(
    image: &Service,
    node: &Result<Option<NodeConfig>, String>,
) -> Result<Service, String> {
    match node {
        Err(_) => Err(format!(
            "not started: {NODE_JSON} is invalid (see the node line)"
        )),
        Ok(None) => Ok(image.clone()),
        Ok(Some(n)) => {
            let k = kubelet_for(image, n);
            match k.needs.iter().find(|p| !std::path::Path::new(p).exists()) {
                Some(missing) => Err(format!(
                    "not started: the node is in join mode but {missing} is missing \
                     (publish the host with the inventory's [join] section)"
                )),
                None => Ok(k.service),
            }
        }
    }
}

/// `--flag=value` or `--flag value`.
pub fn flag_value(cmd: &[String], flag: &str) -> Option<String> {
    cmd.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            cmd.get(i + 1).cloned()
        } else {
            a.strip_prefix(flag)?.strip_prefix('=').map(String::from)
        }
    })
}

fn remove_flag(cmd: &mut Vec<String>, flag: &str) {
    let mut i = 0;
    while i < cmd.len() {
        if cmd[i] == flag {
            cmd.drain(i..(i + 2).min(cmd.len()));
        } else if cmd[i]
            .strip_prefix(flag)
            .is_some_and(|r| r.starts_with('='))
        {
            cmd.remove(i);
        } else {
            i += 1;
        }
    }
}

/// The one-line summary of the node stage and the check hook: `hostname=s2 mode=join labels=2 taints=1`.
pub fn summary(node: &NodeConfig) -> String {
    format!(
        "hostname={} mode={} labels={} taints={}",
        node.hostname,
        node.kubelet_mode.as_str(),
        node.labels.len(),
        node.taints.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S2: &str = r#"{
  "hostname": "s2",
  "mac": "52-54-00-aa-bb-01",
  "labels": { "zone": "lab-a", "node.kubernetes.io/pool": "ci" },
  "taints": ["dedicated=ci:NoSchedule"],
  "kubelet_mode": "join"
}"#;

    fn service(command: &[&str], condition: Option<&str>) -> Service {
        Service {
            name: "kubelet".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            ready_path: None,
            condition_path: condition.map(String::from),
            restart: true,
        }
    }

    fn standalone_image() -> Service {
        service(
            &[
                "/usr/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.yaml",
                "--v=1",
            ],
            None,
        )
    }

    /// As modules/kubelet.nix writes it for `mode = "join"`.
    fn join_image() -> Service {
        service(
            &[
                "/nix/store/x-kubelet/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.json",
                "--bootstrap-kubeconfig=/.diskless/node/kubelet/bootstrap-kubeconfig",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--cert-dir=/var/lib/kubelet/pki",
                "--v=2",
            ],
            Some(BOOTSTRAP_KUBECONFIG),
        )
    }

    fn node(mode: Mode) -> NodeConfig {
        NodeConfig {
            kubelet_mode: mode,
            ..parse(S2).unwrap()
        }
    }

    #[test]
    fn publish_output_parses() {
        let n = parse(S2).unwrap();
        assert_eq!(n.hostname, "s2");
        assert_eq!(n.kubelet_mode, Mode::Join);
        assert_eq!(summary(&n), "hostname=s2 mode=join labels=2 taints=1");
        // Labels and taints are optional; the rest is not.
        let n = parse(r#"{"hostname":"a","mac":"52:54:00:00:00:01","kubelet_mode":"standalone"}"#)
            .unwrap();
        assert!(n.labels.is_empty() && n.taints.is_empty());
    }

    #[test]
    fn malformed_files_name_the_field() {
        let cases = [
            (
                S2.replace("\"join\"", "\"joined\""),
                "kubelet_mode: unknown variant",
            ),
            (S2.replace("\"mac\"", "\"macc\""), "unknown field `macc`"),
            (S2.replace("\"s2\"", "\"S_2\""), "hostname: \"S_2\""),
            (S2.replace("52-54-00-aa-bb-01", "52-54-00"), "mac: "),
            (
                S2.replace("\"zone\"", "\"zo ne\""),
                "labels.\"zo ne\": name",
            ),
            (
                S2.replace("lab-a", "a,b=c"),
                "labels.\"zone\": value \"a,b=c\"",
            ),
            (
                S2.replace("ci:NoSchedule", "ci:NoSchedul"),
                "taints[0]: \"dedicated=ci:NoSchedul\": effect",
            ),
            (
                S2.replace("dedicated=ci:NoSchedule", "dedicated"),
                "taints[0]",
            ),
            (
                S2.replace("[\"dedicated", "[1, \"dedicated"),
                "taints[0]: invalid type",
            ),
            (
                S2.replace(
                    "\"node.kubernetes.io/pool\"",
                    "\"node-role.kubernetes.io/worker\"",
                ),
                "labels.\"node-role.kubernetes.io/worker\": the kubelet refuses",
            ),
            (
                S2.replace("\"hostname\": \"s2\",", ""),
                "missing field `hostname`",
            ),
            ("{".to_string(), "EOF"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.starts_with(NODE_JSON), "{e}");
            assert!(e.contains(want), "want {want:?} in {e}");
        }
    }

    #[test]
    fn kubelet_label_namespaces_follow_the_kubelet() {
        for ok in [
            "zone",
            "example.com/rack",
            "node.kubernetes.io/pool",
            "x.kubelet.kubernetes.io/a",
            "topology.kubernetes.io/zone",
        ] {
            assert!(kubelet_may_set(ok), "{ok}");
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "kubernetes.io/role",
            "foo.k8s.io/x",
        ] {
            assert!(!kubelet_may_set(refused), "{refused}");
        }
    }

    #[test]
    fn standalone_image_joins_when_the_node_says_join() {
        let k = kubelet_for(&standalone_image(), &node(Mode::Join));
        assert_eq!(k.image_mode, Mode::Standalone);
        assert_eq!(
            k.service.command,
            [
                "/usr/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.yaml",
                "--v=1",
                "--bootstrap-kubeconfig=/.diskless/node/kubelet/bootstrap-kubeconfig",
                "--kubeconfig=/var/lib/kubelet/kubeconfig",
                "--cert-dir=/var/lib/kubelet/pki",
                "--client-ca-file=/.diskless/node/kubelet/ca.crt",
                "--anonymous-auth=false",
                "--authentication-token-webhook=true",
                "--authorization-mode=Webhook",
                "--rotate-certificates=true",
                // Sorted by key.
                "--node-labels=node.kubernetes.io/pool=ci,zone=lab-a",
                "--register-with-taints=dedicated=ci:NoSchedule",
            ]
        );
        assert_eq!(
            k.service.condition_path.as_deref(),
            Some(BOOTSTRAP_KUBECONFIG)
        );
        assert_eq!(k.needs, [BOOTSTRAP_KUBECONFIG, CLIENT_CA]);
    }

    #[test]
    fn join_image_keeps_its_own_join_flags() {
        let image = join_image();
        let k = kubelet_for(&image, &node(Mode::Join));
        assert_eq!(k.image_mode, Mode::Join);
        assert_eq!(k.service.command[..image.command.len()], image.command[..]);
        assert_eq!(
            k.service.command[image.command.len()..],
            [
                "--node-labels=node.kubernetes.io/pool=ci,zone=lab-a",
                "--register-with-taints=dedicated=ci:NoSchedule"
            ]
        );
        assert_eq!(k.service.condition_path, image.condition_path);
        assert_eq!(k.needs, [BOOTSTRAP_KUBECONFIG]);
    }

    #[test]
    fn join_image_runs_standalone_when_the_node_says_standalone() {
        let mut image = join_image();
        // The separate-argument form is removed too.
        image.command.push("--kubeconfig".into());
        image.command.push("/other".into());
        let n = NodeConfig {
            labels: BTreeMap::new(),
            taints: vec![],
            ..node(Mode::Standalone)
        };
        let k = kubelet_for(&image, &n);
        assert_eq!(k.image_mode, Mode::Join);
        assert_eq!(
            k.service.command,
            [
                "/nix/store/x-kubelet/bin/kubelet",
                "--config=/etc/kubernetes/kubelet.json",
                "--v=2",
                "--client-ca-file=",
                "--authentication-token-webhook=false",
                "--authorization-mode=AlwaysAllow",
            ]
        );
        assert_eq!(k.service.condition_path, None);
        assert!(k.needs.is_empty());
    }

    #[test]
    fn standalone_everywhere_only_adds_labels_and_taints() {
        let k = kubelet_for(&standalone_image(), &node(Mode::Standalone));
        assert_eq!(
            k.service.command.len(),
            standalone_image().command.len() + 2
        );
        assert_eq!(k.service.condition_path, None);
    }
}
