# The diskless module set. Evaluate it with `lib.evalModules` plus your own modules and a `pkgs`
# (the flake's `lib.mkImage` does this); `config.build.plan` is then the build plan of
# docs/plan.md. Options are documented in docs/options.md.
{
  imports = [
    ./plan.nix
    ./components.nix
    ./base.nix
    ./kernel.nix
    ./compression.nix
    ./network.nix
    ./containerd.nix
    ./kubelet.nix
    ./kube-proxy.nix
    ./control-plane.nix
    ./preload.nix
    ./ssh.nix
    ./ipxe.nix
  ];
}
