# A stand-in for nixpkgs' `pkgs`, for evaluating the modules where no Nix store or nixpkgs
# exists (tests/nix_eval.rs). Every package is a directory the test assembled under `fixtures`
# from host files; its "store path" is that directory. Only what the modules and images/ use
# is here, so a module that starts using something new fails this evaluation loudly.
{ fixtures, kernelVersion }:
let
  package = name: {
    type = "derivation";
    inherit name;
    version = "fixture";
    outPath = "${fixtures}/${name}";
  };
in
{
  stdenv.hostPlatform.linux-kernel.target = "bzImage";
  # The modules in their own output, as nixpkgs' kernels have them.
  linuxPackages.kernel = package "kernel" // {
    modDirVersion = kernelVersion;
    modules = package "kernel-modules";
  };
  diskless = package "diskless";
  busybox = package "busybox";
  containerd = package "containerd";
  runc = package "runc";
  cni-plugins = package "cni-plugins";
  kubernetes = package "kubernetes";
  iptables-legacy = package "iptables-legacy";
  util-linuxMinimal = package "util-linux";
  iproute2 = package "iproute2";
  dropbear = package "dropbear";
  etcd = package "etcd";

  # Same arguments as nixpkgs' pullImage; the archive is a fixture named after the image.
  dockerTools.pullImage =
    {
      imageName,
      imageDigest,
      finalImageName ? imageName,
      finalImageTag ? "latest",
      ...
    }@args:
    assert args ? hash || args ? sha256;
    let
      file = builtins.replaceStrings [ "/" ":" ] [ "-" "-" ] "${finalImageName}:${finalImageTag}";
    in
    {
      type = "derivation";
      name = "docker-image";
      outPath = "${fixtures}/images/${file}.tar";
    };
}
