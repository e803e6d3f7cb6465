# The reference control plane: etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# from nixpkgs, all in RAM, its secrets and etcd snapshot in the control-plane host's node
# segment (inventory `[control_plane]`, docs/boot-server.md "Diskless control plane").
#
# What it proves: a machine booted over the network runs the cluster's control plane with no
# disk, and a reboot brings back what the last publish snapshotted (`diskless check
# --control-plane` boots the host plan's equivalent).
{ ... }:
{
  name = "control-plane";
  ipxe.menuText = "diskless Kubernetes control plane";

  kernel.params = [
    "console=ttyS0"
    "panic=10"
  ];
  # The NIC's drivers (virtio here: QEMU and most hypervisors); squashfs-packed segments need
  # loop, squashfs and overlay.
  kernel.modules = [
    "virtio_pci"
    "virtio_net"
    "loop"
    "squashfs"
    "overlay"
  ];

  controlPlane.enable = true;
}
