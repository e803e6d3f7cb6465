//! The Nix layer, evaluated for real: `modules/` and `images/*.nix` under nixpkgs' `lib` with the
//! stand-in `pkgs` of `nix/fake-pkgs.nix`, whose packages are directories this test assembles from
//! host files. The plan the modules write must be one `diskless build` accepts, and must say what
//! the modules promise (closure, services, static pod from a preloaded image).
//!
//! The options' checks are in `nix_options.rs`, the flake built with a stub nixpkgs in
//! `nix_flake.rs`; the fixtures all three use in `common/nix.rs`.
//!
//! Needs `nix-instantiate` and `nix` (Debian's nix-bin), and `$NIXPKGS_LIB`: a checkout of nixpkgs
//! or of nix-community/nixpkgs.lib. Without them each test prints `skipped: …` and returns.

#[macro_use]
#[path = "common/nix.rs"]
mod nix_common;

use diskless_builder::plan::Plan;
use nix_common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn every_nix_file_parses() {
    if !have_nix_instantiate() {
        println!("skipped: nix-instantiate not found (Debian: apt-get install nix-bin)");
        return;
    }
    let mut files = vec![repo().join("flake.nix")];
    for dir in ["modules", "images", "nix"] {
        for entry in walkdir::WalkDir::new(repo().join(dir)).sort_by_file_name() {
            let entry = entry.unwrap();
            if entry.path().extension().is_some_and(|e| e == "nix") {
                files.push(entry.into_path());
            }
        }
    }
    assert!(files.len() > 10, "found only {files:?}");
    for file in files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file:?} does not parse:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn worker_plan_is_what_the_modules_promise_and_builds() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    // zstd -1: this test is about what goes in, and level 10 on ~150 MB takes minutes here.
    let (path, plan) = fx.plan(
        &lib,
        "worker",
        "[ ({ lib, ... }: { compression.level = lib.mkForce 1; }) ]",
    );

    assert_eq!(plan.name, "worker");
    assert_eq!(plan.kernel.image, root.join("kernel/bzImage"));
    let names: Vec<&str> = plan.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["base", "kernel-modules", "containerd", "kubelet"],
        "no package is listed by two components, so nothing is shared and there is no nix-store"
    );
    // Each package in the segment of the one component that lists it: containerd and the
    // kubelet (with its tools) in their squashfs segments, not unpacked into RAM.
    for (name, packages) in [
        ("base", &["diskless", "busybox"][..]),
        ("containerd", &["containerd", "runc", "cni-plugins"]),
        (
            "kubelet",
            &["kubernetes", "iptables-legacy", "util-linux", "iproute2"],
        ),
    ] {
        let trees = trees(&plan, name);
        for p in packages {
            assert!(
                trees.contains(&root.join(p)),
                "{p} not in {name}: {trees:?}"
            );
        }
    }
    assert_eq!(
        component(&plan, "containerd").packing,
        diskless_builder::plan::Packing::Squashfs
    );
    let modules = &component(&plan, "kernel-modules").modules;
    for m in ["virtio_pci", "virtio_net", "overlay", "br_netfilter"] {
        assert!(modules.iter().any(|x| x == m), "{m} not in {modules:?}");
    }
    assert_eq!(
        component(&plan, "base").files[0].source,
        root.join("diskless/bin/diskless-init")
    );

    // containerd first and ready before the kubelet, which is standalone (no join material);
    // kube-proxy and pod-routes are there for a node whose segment makes it join.
    let services: Vec<&str> = plan.node.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        services,
        ["containerd", "kubelet", "kube-proxy", "pod-routes"]
    );
    let containerd = &plan.node.services[0];
    assert_eq!(
        containerd.ready_path.as_deref(),
        Some("/run/containerd/containerd.sock")
    );
    let kubelet = &plan.node.services[1];
    assert_eq!(
        Path::new(&kubelet.command[0]),
        root.join("kubernetes/bin/kubelet")
    );
    assert_eq!(kubelet.condition_path, None);
    assert!(kubelet.env["PATH"].contains(&format!("{}/iptables-legacy/bin", root.display())));

    // The static pod's image is preloaded under the same reference, and never pulled.
    let pod: serde_json::Value = serde_json::from_str(generated(
        &plan,
        "kubelet",
        "/etc/kubernetes/manifests/hello.json",
    ))
    .unwrap();
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Never");
    let image = container["image"].as_str().unwrap();
    assert!(
        plan.images
            .iter()
            .any(|i| i.refs.iter().any(|r| r == image)),
        "static pod image {image} is not preloaded"
    );
    let config = generated(&plan, "containerd", "/etc/containerd/config.toml");
    assert!(
        config.contains(&format!("sandbox = \"{image}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!(
            "BinaryName = \"{}/runc/bin/runc\"",
            root.display()
        )),
        "{config}"
    );
    // The pod network: a template containerd fills with the node's range.
    assert!(
        config.contains("conf_template = \"/etc/cni/diskless-bridge.conflist.tmpl\""),
        "{config}"
    );
    let template = generated(&plan, "kubelet", "/etc/cni/diskless-bridge.conflist.tmpl");
    assert!(
        template.contains("{{range $i, $r := .PodCIDRRanges}}"),
        "{template}"
    );
    let kubelet_config: serde_json::Value =
        serde_json::from_str(generated(&plan, "kubelet", "/etc/kubernetes/kubelet.json")).unwrap();
    assert_eq!(kubelet_config["cgroupDriver"], "cgroupfs");
    assert_eq!(kubelet_config["staticPodPath"], "/etc/kubernetes/manifests");
    cluster_member_services(&plan, root);

    assert_closed(&plan, root);
    build(&path, &plan, &root.join("out-worker"));
}

/// What makes a worker a cluster member, as the host plan has it (crates/hostplan/src/worker/):
/// kube-proxy from the kubelet's package, in its segment, with the host plan's configuration
/// (as JSON), and the init's `pod-routes`; both only where the node segment holds the
/// bootstrap kubeconfig, and with iptables and `ip` on their PATH.
fn cluster_member_services(plan: &Plan, root: &Path) {
    let service = |name: &str| {
        plan.node
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} service"))
    };
    let proxy = service("kube-proxy");
    assert_eq!(
        proxy.command,
        [
            root.join("kubernetes/bin/kube-proxy").display().to_string(),
            "--config=/etc/kubernetes/kube-proxy.json".to_string()
        ]
    );
    let routes = service("pod-routes");
    assert_eq!(routes.command, ["/init", "pod-routes"]);
    for s in [proxy, routes] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG),
            "{}",
            s.name
        );
        assert!(s.restart && s.role.is_none(), "{}", s.name);
        for tool in ["iptables-legacy", "iproute2"] {
            assert!(
                s.env["PATH"].contains(&format!("{}/{tool}/bin", root.display())),
                "{}: {tool} not on PATH {}",
                s.name,
                s.env["PATH"]
            );
        }
    }
    assert!(trees(plan, "kubelet").contains(&root.join("kubernetes")));
    let config: serde_json::Value = serde_json::from_str(generated(
        plan,
        "kubelet",
        "/etc/kubernetes/kube-proxy.json",
    ))
    .unwrap();
    assert_eq!(
        config,
        serde_json::json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": { "kubeconfig": "/var/lib/kubelet/kubeconfig" },
            "mode": "iptables",
            "conntrack": { "maxPerCore": 0 },
        })
    );
    // The same settings as the host plan's YAML, line for line.
    for line in [
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
        "kind: KubeProxyConfiguration",
        "  kubeconfig: /var/lib/kubelet/kubeconfig",
        "mode: iptables",
        "  maxPerCore: 0",
    ] {
        assert!(
            diskless_hostplan::host::KUBE_PROXY_CONFIG.contains(line),
            "the host plan's kube-proxy configuration no longer has {line:?}: update modules/kube-proxy.nix"
        );
    }
    let modules = &component(plan, "kernel-modules").modules;
    for m in [
        "br_netfilter",
        "iptable_nat",
        "iptable_mangle",
        "xt_statistic",
        "xt_mark",
    ] {
        assert!(modules.iter().any(|x| x == m), "{m} not in {modules:?}");
    }
}

#[test]
fn join_mode_and_the_cluster_member_options() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    let names = |plan: &Plan| -> Vec<String> {
        plan.node.services.iter().map(|s| s.name.clone()).collect()
    };

    // A join image: the kubelet waits for the same file as kube-proxy and pod-routes, and
    // the plan still passes the builder's validation (Plan::load).
    let (_, plan) = fx.plan(&lib, "worker", r#"[ { kubelet.mode = "join"; } ]"#);
    assert_eq!(
        names(&plan),
        ["containerd", "kubelet", "kube-proxy", "pod-routes"]
    );
    for s in &plan.node.services[1..] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some(diskless_contract::node::BOOTSTRAP_KUBECONFIG),
            "{}",
            s.name
        );
    }
    cluster_member_services(&plan, root);

    // A join path of the user's own: kube-proxy follows it; pod-routes reads the contract's
    // path, so it is refused there, by name.
    let custom =
        r#"{ kubelet.mode = "join"; kubelet.join.bootstrapKubeconfig = "/.diskless/node/k/bk"; }"#;
    let out = fx.eval(&lib, "worker", &format!("[ {custom} ]"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("kubelet.podRoutes reads the API server's address"),
        "{stderr}"
    );
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        &format!("[ {custom} {{ kubelet.podRoutes = false; }} ]"),
    );
    assert_eq!(names(&plan), ["containerd", "kubelet", "kube-proxy"]);
    for s in &plan.node.services[1..] {
        assert_eq!(
            s.condition_path.as_deref(),
            Some("/.diskless/node/k/bk"),
            "{}",
            s.name
        );
    }

    // Settings merge over the defaults; a cluster CNI routes itself, so no pod-routes.
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        r#"[ { kubelet.cniBridge = false; kubeProxy.settings.mode = "nftables"; kubeProxy.extraArgs = [ "--v=2" ]; } ]"#,
    );
    assert_eq!(names(&plan), ["containerd", "kubelet", "kube-proxy"]);
    assert_eq!(plan.node.services[2].command.last().unwrap(), "--v=2");
    let config: serde_json::Value = serde_json::from_str(generated(
        &plan,
        "kubelet",
        "/etc/kubernetes/kube-proxy.json",
    ))
    .unwrap();
    assert_eq!(config["mode"], "nftables");
    assert_eq!(config["conntrack"]["maxPerCore"], 0);

    // Off: neither the service nor its configuration.
    let (_, plan) = fx.plan(
        &lib,
        "worker",
        "[ { kubeProxy.enable = false; kubelet.podRoutes = false; } ]",
    );
    assert_eq!(names(&plan), ["containerd", "kubelet"]);
    assert!(!component(&plan, "kubelet")
        .generated
        .iter()
        .any(|g| g.dest == "/etc/kubernetes/kube-proxy.json"));

    // No kubelet, no kube-proxy: containerd-only images have neither; forcing it is named.
    let (_, plan) = fx.plan(&lib, "containerd-only", "[ ]");
    assert_eq!(names(&plan), ["containerd"]);
    let out = fx.eval(&lib, "containerd-only", "[ { kubeProxy.enable = true; } ]");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("kubeProxy.enable needs the kubelet"),
        "{stderr}"
    );
}

#[test]
fn containerd_only_image_composes_without_the_kubelet() {
    let lib = or_skip!(nix_env());
    let fx = or_skip!(Fixtures::new());
    let root = fx.path();
    // zstd squashfs blocks here (the worker keeps the default): the codec travels from the
    // option through the plan into the built segment.
    let (path, plan) = fx.plan(
        &lib,
        "containerd-only",
        r#"[ { squashfs = { algorithm = "zstd"; level = 19; }; } ]"#,
    );

    let names: Vec<&str> = plan.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["base", "kernel-modules", "containerd"]);
    for c in &plan.components {
        let trees = trees(&plan, &c.name);
        assert!(!trees.contains(&root.join("kubernetes")), "{trees:?}");
    }
    assert_eq!(plan.node.services.len(), 1);
    assert_eq!(plan.compression.level, Some(3));
    assert_eq!(
        plan.squashfs,
        diskless_builder::plan::SquashfsCompression {
            algorithm: diskless_builder::plan::SquashfsAlgorithm::Zstd,
            level: Some(19)
        }
    );
    let network = serde_json::to_value(&plan.node.network).unwrap();
    assert_eq!(network["mode"], "static");
    assert_eq!(network["address"], "10.0.2.15/24");
    assert_eq!(plan.images.len(), 1);

    assert_closed(&plan, root);
    build(&path, &plan, &root.join("out-containerd-only"));
}
