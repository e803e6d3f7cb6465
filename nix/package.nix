# The `diskless` builder and `diskless-init`, built from this repository with Cargo.lock's pins.
{ lib, rustPlatform }:
rustPlatform.buildRustPackage {
  pname = "diskless";
  version = (lib.importTOML ../Cargo.toml).package.version;

  # Only what cargo reads, so that editing docs or Nix files does not rebuild the binaries.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      (lib.fileset.maybeMissing ../tests)
      (lib.fileset.maybeMissing ../benches)
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The test suite boots QEMU; it runs as its own flake check (`cargo-test`) instead.
  doCheck = false;

  meta = {
    description = "Reproducible, content-addressed initramfs images for diskless Kubernetes workers";
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "diskless";
    platforms = lib.platforms.linux;
  };
}
