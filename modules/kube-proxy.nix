# `kubeProxy`: kube-proxy on a node that joins a cluster, so that pods reach ClusterIP Services
# (the `kubernetes` one included) through iptables rules. As in the host plan
# (crates/hostplan/src/worker/kube_proxy.rs, `KUBE_PROXY_CONFIG`): in its own segment, started
# (and, when squashfs-packed, mounted) only where the node segment holds the bootstrap
# kubeconfig, talking to the API server with the node's own credentials (the kubeconfig the
# kubelet writes once its bootstrap CSR is signed; until then
# kube-proxy exits and the init restarts it with backoff). The cluster grants nodes the
# `system:node-proxier` role (docs/boot-server.md).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types mkDefault;
  cfg = config.kubeProxy;
  kubelet = config.kubelet;

  # Only bin/kube-proxy, for the reason `kubelet.slim` gives.
  kubeProxyOnly = pkgs.runCommand "kube-proxy-${cfg.package.version or "unknown"}" { } ''
    install -D -m 0755 ${cfg.package}/bin/kube-proxy $out/bin/kube-proxy
  '';
  finalPackage = if cfg.slim then kubeProxyOnly else cfg.package;
in
{
  options.kubeProxy = {
    enable = mkOption {
      type = types.bool;
      default = kubelet.enable;
      defaultText = lib.literalExpression "config.kubelet.enable";
      description = ''
        kube-proxy (iptables mode), started only on nodes that join a cluster: its service's
        condition is the bootstrap kubeconfig in the node's segment
        (`kubelet.join.bootstrapKubeconfig` in join mode; in standalone mode the image
        contract's path, where the init finds it when a node's segment makes the node join),
        so a standalone node never runs it. Needs `kubelet.enable`.
      '';
    };

    package = mkOption {
      type = types.package;
      default = kubelet.package;
      defaultText = lib.literalExpression "config.kubelet.package";
      description = "Package providing `bin/kube-proxy` (nixpkgs' `kubernetes` builds it).";
    };

    slim = mkOption {
      type = types.bool;
      default = kubelet.slim;
      defaultText = lib.literalExpression "config.kubelet.slim";
      description = "Copy only `bin/kube-proxy` into the image instead of the whole `package`.";
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = ''
        KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) as a Nix value, merged over
        this module's defaults (each a `mkDefault`: the host plan's configuration), written as
        JSON to /etc/kubernetes/kube-proxy.json. `conntrack.maxPerCore = 0` leaves the
        kernel's conntrack table size alone: the node's RAM is its disk too.
      '';
      example = {
        metricsBindAddress = "0.0.0.0:10249";
      };
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra kube-proxy command-line flags.";
      example = [ "--v=2" ];
    };
  };

  config = lib.mkIf cfg.enable {
    kubeProxy.settings = {
      apiVersion = mkDefault "kubeproxy.config.k8s.io/v1alpha1";
      kind = mkDefault "KubeProxyConfiguration";
      clientConnection.kubeconfig = mkDefault "/var/lib/kubelet/kubeconfig";
      # Legacy iptables: the kernel modules the kubelet group of kernel-modules.json loads
      # (nat, mangle, statistic, conntrack, ...) and `kubelet.path`'s iptables-legacy.
      mode = mkDefault "iptables";
      conntrack.maxPerCore = mkDefault 0;
    };

    services.kube-proxy = {
      order = 250;
      command = [
        "${finalPackage}/bin/kube-proxy"
        "--config=/etc/kubernetes/kube-proxy.json"
      ]
      ++ cfg.extraArgs;
      conditionPath = kubelet.joinCondition;
      # As containerd's (modules/containerd.nix).
      environment.GOGC = lib.mkDefault "50";
    };

    # With `slim`, its own segment, packed as the kubelet's, as in the host plan: squashfs-packed,
    # it is mounted only where its service's condition holds, so a standalone node's init
    # deletes it unmounted and keeps its RAM. Without `slim` the package is the kubelet's own and
    # stays in its segment. iptables comes with `kubelet.path`; nixpkgs' iptables extensions
    # (libxt_statistic.so needs libm) find glibc through their closure, which the Debian host
    # plan has to add by hand.
    components.kube-proxy = lib.mkIf cfg.slim {
      order = 310;
      packing = mkDefault config.components.kubelet.packing;
      packages = [ finalPackage ];
      conditionPath = mkDefault (
        if config.components.kube-proxy.packing == "squashfs" then kubelet.joinCondition else null
      );
    };
    components.kubelet = {
      packages = lib.mkIf (!cfg.slim) [ finalPackage ];
      generated."/etc/kubernetes/kube-proxy.json".text = builtins.toJSON cfg.settings;
    };

    assertions = [
      {
        assertion = kubelet.enable;
        message = "kubeProxy.enable needs the kubelet (its node credentials and kernel modules): set kubelet.enable = true, or kubeProxy.enable = false.";
      }
    ];
  };
}
