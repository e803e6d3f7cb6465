# `controlPlane`: a diskless Kubernetes control plane. etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler run as services the init supervises, with the
# arguments of the host plan (one file: crates/hostplan/data/control-plane-args.json, generated
# from crates/kube/src/controlplane.rs and checked by its tests). Everything is in RAM: etcd's
# data in /var/lib/etcd on the tmpfs root, restored by the init from the snapshot `diskless
# publish` puts in the node segment. The PKI, kubeconfigs and snapshot come only in that
# segment (inventory `[control_plane]`, docs/boot-server.md); without it nothing starts.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.controlPlane;
  args = lib.importJSON ../crates/hostplan/data/control-plane-args.json;
  # Every service waits for the node segment's cluster CA.
  caCert = "/.diskless/node/control-plane/pki/ca.crt";
  # Only the four programs and etcdutl: the kubernetes package also holds the kubelet,
  # kube-proxy and kubectl, which a control plane does not run.
  binaries = pkgs.runCommand "diskless-control-plane" { } ''
    for b in kube-apiserver kube-controller-manager kube-scheduler; do
      install -D -m 0755 ${cfg.kubernetes}/bin/$b $out/bin/$b
    done
    install -D -m 0755 ${cfg.etcd}/bin/etcd $out/bin/etcd
    install -D -m 0755 ${cfg.etcd}/bin/etcdutl $out/bin/etcdutl
  '';
  service = name: order: role: {
    inherit order role;
    # The init restores etcd with the etcdutl beside etcd (role `etcd`).
    command = [ "${binaries}/bin/${name}" ] ++ args.${name};
    conditionPath = caCert;
  };
in
{
  options.controlPlane = {
    enable = lib.mkEnableOption "a diskless control plane (etcd and the Kubernetes control plane)";

    kubernetes = mkOption {
      type = types.package;
      default = pkgs.kubernetes;
      defaultText = lib.literalExpression "pkgs.kubernetes";
      description = "Package providing `bin/kube-apiserver`, `kube-controller-manager` and `kube-scheduler`.";
    };

    etcd = mkOption {
      type = types.package;
      default = pkgs.etcd;
      defaultText = lib.literalExpression "pkgs.etcd";
      description = "Package providing `bin/etcd` and `bin/etcdutl` (the init restores snapshots with it).";
    };
  };

  config = lib.mkIf cfg.enable {
    services.etcd = service "etcd" 100 "etcd";
    services.kube-apiserver = service "kube-apiserver" 110 "api-server";
    services.kube-controller-manager = service "kube-controller-manager" 120 null;
    services.kube-scheduler = service "kube-scheduler" 130 null;

    components.control-plane = {
      order = 300;
      packing = lib.mkDefault "squashfs";
      packages = [ binaries ];
      directories."/var/lib" = { };
    };
  };
}
