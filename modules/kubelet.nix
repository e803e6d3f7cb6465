# `kubelet`: the Kubernetes node agent, either standalone (static pods only, no API server) or
# joining a cluster with a bootstrap token delivered per node.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types mkDefault;
  cfg = config.kubelet;
  manifests = "/etc/kubernetes/manifests";
  # Outside /etc/cni/net.d, which CNI reads: containerd writes the filled-in copy there.
  cniTemplate = "/etc/cni/diskless-bridge.conflist.tmpl";
  nodeDir = "/.diskless/node/kubelet";

  # Only bin/kubelet: the kubernetes package also holds the control plane (hundreds of MB) that
  # a worker never runs, and every byte of the image is RAM on the node.
  kubeletOnly = pkgs.runCommand "kubelet-${cfg.package.version or "unknown"}" { } ''
    install -D -m 0755 ${cfg.package}/bin/kubelet $out/bin/kubelet
  '';
  finalPackage = if cfg.slim then kubeletOnly else cfg.package;

  # The file whose presence at boot says the node joins a cluster. A standalone image can join
  # too: when its node segment says so (`kubelet_mode`), the init switches the kubelet to join
  # with the bootstrap kubeconfig at the image contract's path, the default of
  # `join.bootstrapKubeconfig` (crates/contract/src/node.rs, `BOOTSTRAP_KUBECONFIG`).
  contractBootstrap = "${nodeDir}/bootstrap-kubeconfig";
  joinCondition = if cfg.mode == "join" then cfg.join.bootstrapKubeconfig else contractBootstrap;

  args =
    [
      "${finalPackage}/bin/kubelet"
      "--config=/etc/kubernetes/kubelet.json"
    ]
    ++ lib.optionals (cfg.mode == "join") [
      "--bootstrap-kubeconfig=${cfg.join.bootstrapKubeconfig}"
      "--kubeconfig=/var/lib/kubelet/kubeconfig"
      "--cert-dir=/var/lib/kubelet/pki"
    ]
    ++ cfg.extraArgs;
in
{
  options.kubelet = {
    enable = lib.mkEnableOption "the kubelet (needs `containerd.enable`)";

    package = mkOption {
      type = types.package;
      default = pkgs.kubernetes;
      defaultText = lib.literalExpression "pkgs.kubernetes";
      description = "Package providing `bin/kubelet`.";
    };

    slim = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Copy only `bin/kubelet` (with its own closure) into the image instead of the whole
        `package`, which in nixpkgs also carries the control-plane binaries.
      '';
    };

    mode = mkOption {
      type = types.enum [
        "standalone"
        "join"
      ];
      default = "standalone";
      description = ''
        `standalone`: no API server; the kubelet runs the static pods in `staticPods`.
        `join`: register with a cluster using the bootstrap kubeconfig that the node's own
        segment puts at `join.bootstrapKubeconfig`; the kubelet does not start without it.
      '';
    };

    join.bootstrapKubeconfig = mkOption {
      type = types.str;
      default = contractBootstrap;
      description = "Path of the per-node bootstrap kubeconfig (delivered in the node's segment, not the image).";
    };

    join.clientCAFile = mkOption {
      type = types.str;
      default = "${nodeDir}/ca.crt";
      description = "Cluster CA the kubelet checks API clients against (`authentication.x509.clientCAFile`).";
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = ''
        KubeletConfiguration (kubelet.config.k8s.io/v1beta1) as a Nix value, merged over this
        module's defaults (each a `mkDefault`), written as JSON to /etc/kubernetes/kubelet.json.
      '';
      example = {
        maxPods = 50;
        clusterDNS = [ "10.96.0.10" ];
        clusterDomain = "cluster.local";
      };
    };

    staticPods = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      default = { };
      description = ''
        Pods the kubelet runs from ${manifests}/<name>.json without an API server.
        `apiVersion` and `kind` default to `v1`/`Pod`. Use `imagePullPolicy = "Never"` with
        preloaded images so a node without registry access still starts them.
      '';
      example = lib.literalExpression ''
        {
          hello.metadata.name = "hello";
          hello.spec.containers = [{
            name = "pause";
            image = "registry.k8s.io/pause:3.9";
            imagePullPolicy = "Never";
          }];
        }
      '';
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra kubelet command-line flags.";
      example = [ "--v=2" ];
    };

    path = mkOption {
      type = types.listOf types.package;
      default = [
        pkgs.iptables-legacy
        pkgs.util-linuxMinimal
        pkgs.iproute2
      ];
      defaultText = lib.literalExpression "[ pkgs.iptables-legacy pkgs.util-linuxMinimal pkgs.iproute2 ]";
      description = ''
        Tools the kubelet and CNI plugins call (iptables for service and masquerade rules,
        mount/nsenter, ip). Legacy iptables, because the kernel modules it needs are the
        ones listed by this module.
      '';
    };

    cniBridge = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Give pods a bridge + host-local network without a cluster CNI: a template containerd
        fills with the node's pod range (the Node's `spec.podCIDR` when joined, `pod_cidr`
        from the inventory, or 10.88.0.0/16 standalone), so the node is Ready without a CNI
        DaemonSet and nodes never share a range. Turn it off when a cluster CNI (a DaemonSet)
        writes its own configuration.
      '';
    };

    podRoutes = mkOption {
      type = types.bool;
      default = cfg.cniBridge;
      defaultText = lib.literalExpression "config.kubelet.cniBridge";
      description = ''
        Run the init's `pod-routes` service on nodes that join a cluster (its condition is the
        bootstrap kubeconfig of the node's segment, as kube-proxy's): it routes the other
        nodes' pod ranges via their InternalIPs (host-gw; the nodes must share an L2 segment)
        and keeps the nat chain `DISKLESS-POD-ROUTES` that exempts pod-to-pod traffic between
        nodes from the bridge's masquerading (crates/init/src/podroutes.rs). Needs `ip` and
        `iptables-restore` on `PATH` (`path`), and `join.bootstrapKubeconfig` at its default:
        it reads the API server's address and CA there. Off with a cluster CNI, which routes
        itself.
      '';
    };

    finalPackage = mkOption {
      type = types.package;
      readOnly = true;
      internal = true;
      description = "The package whose `bin/kubelet` the image runs (see `slim`).";
    };

    joinCondition = mkOption {
      type = types.str;
      default = joinCondition;
      readOnly = true;
      internal = true;
      description = "The path whose presence at boot means the node joins a cluster (services that only a cluster member runs wait for it).";
    };
  };

  config = lib.mkIf cfg.enable {
    kubelet.finalPackage = finalPackage;

    kubelet.settings = {
      apiVersion = mkDefault "kubelet.config.k8s.io/v1beta1";
      kind = mkDefault "KubeletConfiguration";
      # No systemd on the node: cgroupfs, said explicitly (containerd 2.x reports its driver
      # through the CRI, but another runtime may not).
      cgroupDriver = mkDefault "cgroupfs";
      containerRuntimeEndpoint = mkDefault "unix:///run/containerd/containerd.sock";
      staticPodPath = mkDefault manifests;
      failSwapOn = mkDefault false;
      healthzBindAddress = mkDefault "127.0.0.1";
      healthzPort = mkDefault 10248;
      resolvConf = mkDefault "/etc/resolv.conf";
      # The node's /usr is read-only (the init binds it from the initramfs): FlexVolume plugins go under /var.
      volumePluginDir = mkDefault "/var/lib/kubelet/volumeplugins";
      # The root filesystem is RAM and also the image filesystem. Preloaded images are pinned
      # (preload.nix), so image GC and disk-pressure eviction keep the kubelet's defaults and
      # still cannot delete them (`diskless check --image-pressure` proves it); only the memory
      # threshold is lower, as a small machine has no RAM to spare.
      evictionHard = mkDefault {
        "memory.available" = "50Mi";
        "nodefs.available" = "10%";
        "imagefs.available" = "15%";
      };
      imageGCHighThresholdPercent = mkDefault 85;
      imageGCLowThresholdPercent = mkDefault 80;
      authentication = {
        anonymous.enabled = mkDefault false;
        webhook.enabled = mkDefault (cfg.mode == "join");
      }
      // lib.optionalAttrs (cfg.mode == "join") {
        x509.clientCAFile = mkDefault cfg.join.clientCAFile;
      };
      authorization.mode = mkDefault (if cfg.mode == "join" then "Webhook" else "AlwaysAllow");
    };

    # The bridge CNI, the iptables rules of the kubelet, CNI and kube-proxy, vxlan: one list
    # with the host plan's, and the reasons, in crates/hostplan/data/kernel-modules.json.
    kernel.modules = (lib.importJSON ../crates/hostplan/data/kernel-modules.json).kubelet.modules;

    sysctls = {
      "net.ipv4.ip_forward" = "1";
      "net.bridge.bridge-nf-call-iptables" = "1";
      "net.bridge.bridge-nf-call-ip6tables" = "1";
    };

    environment.path = cfg.path;

    containerd.settings.plugins."io.containerd.cri.v1.runtime".cni.conf_template =
      lib.mkIf cfg.cniBridge cniTemplate;

    services.kubelet = {
      order = 200;
      role = "kubelet";
      command = args;
      conditionPath = if cfg.mode == "join" then cfg.join.bootstrapKubeconfig else null;
      # As containerd's (modules/containerd.nix).
      environment.GOGC = lib.mkDefault "50";
    };

    # Routes to the other nodes' pod ranges, only where the node joins: a standalone node has
    # no other nodes. The init's own subcommand, as in the host plan.
    services.pod-routes = lib.mkIf cfg.podRoutes {
      order = 260;
      command = [
        "/init"
        "pod-routes"
      ];
      conditionPath = joinCondition;
    };

    components.kubelet = {
      order = 300;
      packing = lib.mkDefault "squashfs";
      packages = [ finalPackage ] ++ cfg.path;
      generated = {
        "/etc/kubernetes/kubelet.json".text = builtins.toJSON cfg.settings;
        # Same for every node booted from this image; the init may replace it per node.
        "/etc/machine-id".text = builtins.hashString "md5" "diskless-${config.name}" + "\n";
      }
      // lib.mapAttrs' (
        name: pod:
        lib.nameValuePair "${manifests}/${name}.json" {
          text = builtins.toJSON (
            {
              apiVersion = "v1";
              kind = "Pod";
            }
            // pod
          );
        }
      ) cfg.staticPods
      // lib.optionalAttrs cfg.cniBridge {
        # A template containerd fills with the node's pod range (its `conf_template`): the
        # range the controller-manager allocated to the Node when joined, the init's standalone
        # default otherwise. So the nodes of a cluster never share a range.
        # One file with the host plans' (crates/hostplan/src/worker/containerd.rs).
        ${cniTemplate}.text = builtins.readFile ../crates/hostplan/data/cni-bridge.conflist.tmpl;
      };
      directories = {
        "/var/lib/kubelet" = { };
        ${manifests} = { };
      };
    };

    assertions = [
      {
        assertion = config.containerd.enable;
        message = "kubelet.enable needs a container runtime: set containerd.enable = true.";
      }
      {
        assertion = cfg.mode == "join" || cfg.staticPods != { };
        message = "kubelet.mode is \"standalone\" but kubelet.staticPods is empty: a standalone kubelet would run nothing. Add a static pod or use mode = \"join\".";
      }
      {
        # `/init pod-routes` finds the API server and its CA at the contract's path.
        assertion = !cfg.podRoutes || joinCondition == contractBootstrap;
        message = "kubelet.podRoutes reads the API server's address and CA from ${contractBootstrap}, where diskless publish puts the bootstrap kubeconfig, but kubelet.join.bootstrapKubeconfig is ${builtins.toJSON cfg.join.bootstrapKubeconfig}: keep its default, or set kubelet.podRoutes = false.";
      }
    ];
  };
}
