# containerd alone, no Kubernetes: the worker's containerd module composed into a smaller image.
#
# What it proves: the modules compose (this file only enables what it needs; nothing of the
# kubelet is evaluated or copied), and a node runs containers from a preloaded image with just
# containerd and runc (flake check `vm-containerd-only`). Static addressing shows the `network`
# module: the same image boots anywhere with `diskless.ip=` on the kernel command line.
{ pkgs, ... }:
let
  pinned = import ./pinned.nix { inherit pkgs; };
in
{
  name = "containerd-only";
  ipxe.menuText = "diskless containerd node";

  kernel.params = [
    "console=ttyS0"
    "panic=10"
  ];
  kernel.modules = [
    "virtio_pci"
    "virtio_net"
  ];

  network = {
    mode = "static";
    address = "10.0.2.15/24";
    gateway = "10.0.2.2";
    dns = [ "10.0.2.3" ];
  };

  containerd.enable = true;
  preload.images.pause = pinned.pause;

  # zstd -3 builds many times faster than the default level for a few per cent more bytes.
  compression.level = 3;
}
