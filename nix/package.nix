# The workspace's binaries, built from this repository with Cargo.lock's pins: `diskless` (the
# builder), `diskless-init` (the PID 1 of every image) and `diskless-check` (the check hook that
# `diskless check` adds to the images it boots).
{
  lib,
  rustPlatform,
  rustc,
}:
let
  inherit ((lib.importTOML ../Cargo.toml).workspace) package;
in
# A nixpkgs whose rustc is older than the workspace's `rust-version` (the real minimum of the
# locked crates, scripts/check-msrv) fails here with that reason, not deep in a crate's build.
assert lib.assertMsg (lib.versionAtLeast rustc.version package.rust-version)
  "diskless needs rustc >= ${package.rust-version} (Cargo.toml rust-version), but this nixpkgs has ${rustc.version}: use a nixpkgs as new as flake.lock's (docs/nix.md)";
rustPlatform.buildRustPackage {
  pname = "diskless";
  inherit (package) version;

  # Only what cargo reads, so that editing docs or Nix files does not rebuild the binaries.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../crates
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
