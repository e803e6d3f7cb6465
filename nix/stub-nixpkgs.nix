# A stand-in for `nixpkgs.legacyPackages.<system>`, so that the flake itself (flake.nix,
# nix/mk-image.nix, nix/package.nix) can be evaluated, checked and partly built on a machine with
# Nix but without nixpkgs or a binary cache (tests/nix_flake.rs, with --override-input).
#
# Every derivation here is real (builtins.derivation, built by Nix with /bin/sh and host tools,
# sandbox off) but nothing is compiled: packages are copies of the fixture directories the test
# assembled from host files, and the Rust package is the binaries cargo already built. Only the
# parts of nixpkgs that the flake uses exist, so a new use fails loudly here.
{
  lib,
  system,
  fixtures,
  kernelVersion,
  # The pinned nixpkgs' rustc (docs/nix.md); a test lowers it to see package.nix refuse.
  rustcVersion ? "1.95.0",
}:
let
  hostPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

  # passthru and meta stay Nix values (not environment variables), as in stdenv.
  mkDerivation =
    args:
    let
      drv = derivation (
        removeAttrs args [
          "passthru"
          "meta"
          "script"
          "nativeBuildInputs"
        ]
        // {
          inherit system;
          builder = "/bin/sh";
          args = [
            "-c"
            ''
              set -eu
              export PATH=${lib.makeBinPath (args.nativeBuildInputs or [ ])}:${hostPath}
              ${args.script}
            ''
          ];
        }
      );
    in
    drv
    // (args.passthru or { })
    // {
      meta = args.meta or { };
      overrideAttrs = f: mkDerivation (args // f args);
    };

  # Stands in for the C library every real package refers to: it is in no image's roots, so
  # finding it in a plan shows the closure (not just the roots) went in.
  libc = mkDerivation {
    name = "libc-stub";
    script = "mkdir -p $out/lib && echo 'stand-in for glibc' > $out/lib/README";
  };

  fromFixture =
    name: extra:
    mkDerivation (
      {
        inherit name;
        version = "stub";
        script = ''
          cp -a ${fixtures}/${name} $out
          chmod u+w $out
          mkdir -p $out/nix-support
          echo ${libc} > $out/nix-support/libc
        '';
      }
      // extra
    );

  # A program from the host under $out/bin, or an empty package when the host lacks it.
  hostTool =
    name:
    mkDerivation {
      inherit name;
      script = ''
        mkdir -p $out/bin
        if command -v ${name} >/dev/null; then ln -s "$(command -v ${name})" $out/bin/${name}; fi
      '';
      meta.mainProgram = name;
    };

  pkgs = {
    inherit lib;
    stdenv.hostPlatform = {
      inherit system;
      linux-kernel.target = "bzImage";
    };

    callPackage =
      f: args:
      let
        fn = if builtins.isFunction f then f else import f;
      in
      fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // args);

    runCommand =
      name: env: script:
      mkDerivation (env // { inherit name script; });

    writeText =
      name: text:
      mkDerivation {
        inherit name text;
        passAsFile = [ "text" ];
        script = "cp \"$textPath\" $out";
      };

    # As nixpkgs' closureInfo: $out/store-paths lists the closure of rootPaths. The reference
    # graph files hold each path, its deriver and its references, one per line.
    closureInfo =
      { rootPaths }:
      mkDerivation {
        name = "closure-info";
        exportReferencesGraph = lib.concatMap (p: [
          "closure-${baseNameOf p}"
          p
        ]) rootPaths;
        script = ''
          mkdir $out
          cat closure-* | grep '^/nix/store/' | grep -v '\.drv$' | sort -u > $out/store-paths
        '';
      };

    mkShell =
      args:
      mkDerivation (
        args
        // {
          name = "stub-shell";
          script = "echo stub shell > $out";
        }
      );

    rustc = {
      version = rustcVersion;
    };

    rustPlatform.buildRustPackage =
      args:
      mkDerivation {
        name = "${args.pname}-${args.version}";
        inherit (args) pname version;
        meta = args.meta or { };
        script = ''
          mkdir -p $out/bin
          cp ${fixtures}/diskless/bin/diskless ${fixtures}/diskless/bin/diskless-init $out/bin/
        '';
      };

    # As nixpkgs' kernels (pkgs/os-specific/linux/kernel/build.nix, common-config.nix): the
    # image in `out`, the modules in a `modules` output, xz-compressed (`.ko.xz`) and indexed
    # by depmod under lib/modules/<modDirVersion>. The fixture holds the few modules the
    # images load, compressed from the host's.
    linuxPackages.kernel =
      let
        drv = mkDerivation {
          name = "linux-stub-${kernelVersion}";
          version = kernelVersion;
          outputs = [
            "out"
            "modules"
          ];
          script = ''
            mkdir -p $out $modules/lib/modules
            cp ${fixtures}/kernel/bzImage $out/bzImage
            cp -r ${fixtures}/kernel-modules/lib/modules/${kernelVersion} $modules/lib/modules/
          '';
        };
      in
      drv
      // {
        modDirVersion = kernelVersion;
      };

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
      mkDerivation {
        name = "docker-image-${file}.tar";
        script = "cp ${fixtures}/images/${file}.tar $out";
      };

    diskless = pkgs.callPackage ./package.nix { };
    busybox = fromFixture "busybox" { };
    containerd = fromFixture "containerd" { };
    runc = fromFixture "runc" { };
    cni-plugins = fromFixture "cni-plugins" { };
    kubernetes = fromFixture "kubernetes" { };
    iptables-legacy = fromFixture "iptables-legacy" { };
    util-linuxMinimal = fromFixture "util-linux" { };
    iproute2 = fromFixture "iproute2" { };
    dropbear = fromFixture "dropbear" { };
    etcd = fromFixture "etcd" { };

    jq = hostTool "jq";
    qemu = hostTool "qemu-system-x86_64";
    cpio = hostTool "cpio";
    zstd = hostTool "zstd";
    xz = hostTool "xz";
    kmod = hostTool "depmod";
    clippy = hostTool "cargo-clippy";
    rustfmt = hostTool "rustfmt";
    nixfmt = hostTool "nixfmt";
  };
in
pkgs
