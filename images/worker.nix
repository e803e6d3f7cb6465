# The reference worker: kubelet, containerd, runc and the CNI plugins from nixpkgs, with the pause
# image and a CNI image (kube-router) preloaded from pinned digests.
#
# What it proves: a RAM-only node booted over the network runs a static pod from a preloaded
# image with no registry and no API server (flake check `vm-worker`). Set `kubelet.mode = "join"`
# (or the node's `kubelet_mode` in the inventory) and the same image joins a cluster using the
# bootstrap kubeconfig in each node's own segment, with kube-proxy and the init's pod-routes
# (modules/kube-proxy.nix, `kubelet.podRoutes`), which start only where that file is.
{ pkgs, ... }:
let
  pinned = import ./pinned.nix { inherit pkgs; };
in
{
  name = "worker";
  ipxe.menuText = "diskless Kubernetes worker";

  kernel.params = [
    "console=ttyS0"
    "panic=10"
  ];
  # The NIC's drivers (virtio here: QEMU and most hypervisors); virtio_pci is not a dependency
  # of virtio_net, but without it there is no NIC. The kubelet's modules come with kubelet.enable.
  kernel.modules = [
    "virtio_pci"
    "virtio_net"
  ];

  containerd.enable = true;
  # The sandbox image must be the preloaded one, or every pod start tries a registry.
  containerd.sandboxImage = builtins.head pinned.pause.refs;

  kubelet.enable = true;
  kubelet.staticPods.hello = {
    metadata.name = "hello";
    spec.containers = [
      {
        name = "pause";
        image = builtins.head pinned.pause.refs;
        imagePullPolicy = "Never";
      }
    ];
  };

  preload.images = {
    inherit (pinned) pause kube-router;
  };
}
