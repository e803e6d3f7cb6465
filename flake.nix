{
  description = "diskless: reproducible RAM-only Kubernetes workers, booted over the network";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      imageLib = import ./nix/lib.nix { inherit lib; };

      # mkImage { pkgs; modules; } → a derivation whose $out is `diskless build`'s output:
      # objects/<sha256>, <name>.json (the index) and <name>.ipxe.
      mkImage =
        {
          pkgs,
          modules,
          specialArgs ? { },
          diskless ? pkgs.callPackage ./nix/package.nix { },
        }:
        import ./nix/mk-image.nix {
          inherit pkgs diskless;
          evaluated = imageLib.evalImage {
            inherit pkgs modules specialArgs;
            initPackage = diskless;
          };
        };

      # Boots an image the way a lab machine does (iPXE over QEMU's user network) and checks
      # that the node comes up. TCG: works in any sandbox, no /dev/kvm needed.
      vmCheck =
        pkgs: image:
        pkgs.runCommand "diskless-check-${image.config.name}"
          {
            nativeBuildInputs = [
              self.packages.${pkgs.stdenv.hostPlatform.system}.diskless
              pkgs.qemu
              pkgs.busybox # `nc` for the harness's HTTP boot server (slirp guestfwd)
            ];
            KUBELET = "${pkgs.kubernetes}/bin/kubelet";
          }
          ''
            diskless check ${image} --name ${image.config.name} > $out 2>&1 || { cat $out; exit 1; }
          '';
    in
    {
      lib = {
        inherit mkImage;
        inherit (imageLib) evalImage;
        # The option set `lib.mkImage` evaluates (see docs/options.md), for your own
        # lib.evalModules call. Not NixOS modules: its `services`, `assertions` and paths would
        # clash with a NixOS system's, so it is not offered as `nixosModules`.
        modules = {
          imports = [ ./modules ];
        };
      };

      overlays.default = final: prev: { diskless = final.callPackage ./nix/package.nix { }; };

      packages = forAllSystems (
        pkgs:
        let
          diskless = pkgs.callPackage ./nix/package.nix { };
          image =
            file:
            mkImage {
              inherit pkgs diskless;
              modules = [ file ];
            };
        in
        {
          inherit diskless;
          default = diskless;
          options-doc = pkgs.writeText "options.md" (import ./nix/options-doc.nix { inherit lib; });
        }
        # The preloaded images are pinned for linux/amd64 (images/pinned.nix).
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          worker-image = image ./images/worker.nix;
          containerd-only-image = image ./images/containerd-only.nix;
          control-plane-image = image ./images/control-plane.nix;
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          p = self.packages.${pkgs.stdenv.hostPlatform.system};
        in
        {
          # The test suite in the build sandbox. What needs a Debian host (the boot tests build
          # images from `plan --host`) or a network prints `skipped: <why>` in the log; the
          # vm-* checks below boot the Nix-built images instead.
          cargo-test = p.diskless.overrideAttrs (old: {
            pname = "diskless-cargo-test";
            doCheck = true;
            nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [
              pkgs.qemu
              pkgs.busybox
              pkgs.cpio
              pkgs.zstd
              pkgs.xz
              pkgs.kmod
              pkgs.jq
            ];
            # nixpkgs has a kubelet, so the kubelet scenarios run here instead of skipping.
            KUBELET = "${pkgs.kubernetes}/bin/kubelet";
          });
        }
        // lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") {
          vm-worker = vmCheck pkgs p.worker-image;
          vm-containerd-only = vmCheck pkgs p.containerd-only-image;
        }
      );

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = lib.getExe self.packages.${pkgs.stdenv.hostPlatform.system}.diskless;
          meta.description = "Build, inspect, publish and boot-check diskless worker images";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.diskless ];
          packages = with pkgs; [
            clippy
            rustfmt
            qemu
            cpio
            zstd
            nixfmt
          ];
          # Lets `cargo test` run the kubelet scenarios and the module evaluation test.
          KUBELET = "${pkgs.kubernetes}/bin/kubelet";
          NIXPKGS_LIB = "${nixpkgs}";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
