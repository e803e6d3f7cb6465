# Container images pinned by digest, shared by the reference images. Digests and archive hashes
# are the ones a public k0s airgap bundle (Nix) pins; the hash covers skopeo's docker-archive for
# linux/amd64 with exactly this name and tag, so changing either (or `arch`) changes the hash.
{ pkgs }:
{
  pause = {
    archive = pkgs.dockerTools.pullImage {
      imageName = "registry.k8s.io/pause";
      imageDigest = "sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097";
      sha256 = "1qpdlccx3hsc58z7a76xpczdfd301jxfkd95m58hi0r6imsvq8wa";
      finalImageName = "registry.k8s.io/pause";
      finalImageTag = "3.9";
      os = "linux";
      arch = "amd64";
    };
    refs = [ "registry.k8s.io/pause:3.9" ];
  };

  # kube-router: pod networking (CNI), service proxy and network policy in one DaemonSet image.
  kube-router = {
    archive = pkgs.dockerTools.pullImage {
      imageName = "quay.io/k0sproject/kube-router";
      imageDigest = "sha256:7d123cda213edf7e0f02795d58dcdb75f4ebee0122c62b2f50b4f7d2cef85450";
      sha256 = "0ikh4vfghwz7626dlqlh9lc4kfzkpnvmppy04xzcxv3viryjlpfr";
      finalImageName = "quay.io/k0sproject/kube-router";
      finalImageTag = "v2.2.1-iptables1.8.9-1";
      os = "linux";
      arch = "amd64";
    };
    refs = [ "quay.io/k0sproject/kube-router:v2.2.1-iptables1.8.9-1" ];
  };
}
