# `components.<name>`: what goes into each initramfs segment. The other modules fill these in;
# users add their own files the same way. Entries are keyed by their path inside the image so
# that two modules writing the same path merge (identical values) or conflict loudly, and so
# that a user can override one entry with `lib.mkForce`.
{ lib, ... }:
let
  inherit (lib) mkOption types;

  # Octal strings, as in the plan ("0644"): JSON has no octal numbers.
  mode = types.nullOr (types.strMatching "0?[0-7]{3,4}");

  # An absolute path inside the image, in the form the plan accepts.
  imagePath = types.strMatching "/([^/]+(/[^/]+)*)?";

  compression = import ./compression-type.nix { inherit lib; };
  squashfsCodec = import ./squashfs-type.nix { inherit lib; };

  component =
    { name, ... }:
    {
      options = {
        order = mkOption {
          type = types.int;
          default = 500;
          description = ''
            Position of this segment in the image (lower first; ties broken by name). Segments
            are content-addressed one by one, so order only matters for overlapping paths,
            which the builder rejects anyway.
          '';
        };
        packing = mkOption {
          type = types.enum [
            "cpio"
            "squashfs"
          ];
          default = "cpio";
          description = ''
            `squashfs`: the segment's files under `/usr` and `/nix/store` travel as one squashfs
            image that the init loop-mounts read-only, instead of cpio entries the kernel unpacks
            into RAM (faster boot; the decompressed pages stay reclaimable). Needs the `loop`,
            `squashfs` and `overlay` modules in `kernel.modules` (the builder refuses the plan
            otherwise); the containerd and kubelet modules add them along with their default.
          '';
        };
        squashfs = mkOption {
          type = types.nullOr squashfsCodec;
          default = null;
          description = ''
            Overrides the image-wide `squashfs` block codec for this segment; only with
            `packing = "squashfs"` (the builder refuses it otherwise).
          '';
          example = {
            algorithm = "zstd";
          };
        };
        conditionPath = mkOption {
          type = types.nullOr imagePath;
          default = null;
          description = ''
            Mount this segment's squashfs image only where this absolute path exists at boot, as
            a service's condition: elsewhere the init deletes the image unmounted and its RAM is
            free (kube-proxy, with the kubelet's join condition, on nodes that never join). Only
            with `packing = "squashfs"` (the builder refuses it otherwise).
          '';
          example = "/.diskless/node/kubelet/bootstrap-kubeconfig";
        };
        compression = mkOption {
          type = types.nullOr compression;
          default = null;
          description = "Overrides the image-wide `compression` for this segment.";
          example = {
            algorithm = "none";
          };
        };
        files = mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                source = mkOption {
                  type = types.str;
                  description = "File on the build machine (usually inside a store path) to copy.";
                };
                mode = mkOption {
                  type = mode;
                  default = null;
                  description = "Octal mode; default `0755` if the source is executable, else `0644`.";
                };
              };
            }
          );
          default = { };
          description = "Single files to copy, keyed by their destination in the image.";
          example = lib.literalExpression ''{ "/init".source = "''${pkgs.diskless}/bin/diskless-init"; }'';
        };
        directories = mkOption {
          type = types.attrsOf (
            types.submodule {
              options.mode = mkOption {
                type = mode;
                default = null;
                description = "Octal mode; default `0755`.";
              };
            }
          );
          default = { };
          description = "Empty directories, keyed by path.";
          example = {
            "/tmp".mode = "1777";
          };
        };
        symlinks = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "Symbolic links: path in the image → target, stored as written.";
          example = {
            "/bin/sh" = "busybox";
          };
        };
        generated = mkOption {
          type = types.attrsOf (
            types.submodule {
              options = {
                text = mkOption {
                  type = types.lines;
                  description = "File contents. Several definitions are joined with newlines.";
                };
                mode = mkOption {
                  type = mode;
                  default = null;
                  description = "Octal mode; default `0644`.";
                };
              };
            }
          );
          default = { };
          description = "Files with inline contents (configuration), keyed by path.";
          example = {
            "/etc/motd".text = "diskless worker\n";
          };
        };
        packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = ''
            Packages whose whole Nix closure is copied into the image at its store paths.
            The store paths only this component's packages need go into this segment (so a
            squashfs-packed component carries its programs); those several components need,
            such as the C library, go into the shared `nix-store` segment. Commands refer to
            them as `''${pkg}/bin/…`.
          '';
          example = lib.literalExpression "[ pkgs.iproute2 ]";
        };
        trees = mkOption {
          type = types.listOf (
            types.submodule {
              options = {
                source = mkOption {
                  type = types.str;
                  description = "Directory on the build machine.";
                };
                dest = mkOption {
                  type = types.nullOr imagePath;
                  default = null;
                  description = "Where it lands; default: the same path as `source`.";
                };
              };
            }
          );
          default = [ ];
          description = ''
            Directory trees copied as they are (no closure). Prefer `packages` for store paths,
            which also brings their dependencies.
          '';
        };
        binaries = mkOption {
          type = types.listOf (
            types.submodule {
              options = {
                source = mkOption {
                  type = types.str;
                  description = "ELF executable on the build machine.";
                };
                dest = mkOption {
                  type = types.nullOr imagePath;
                  default = null;
                  description = "Where it lands; default: the same path as `source`.";
                };
              };
            }
          );
          default = [ ];
          description = ''
            Executables copied with their ELF shared-library closure. This is for non-Nix
            binaries; Nix packages go in `packages`.
          '';
        };
        kernelModules = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Kernel modules (names or aliases) whose `.ko` files, with dependencies, go in this segment.";
        };
      };
      config._module.args.name = lib.mkDefault name;
    };
in
{
  options.components = mkOption {
    type = types.attrsOf (types.submodule component);
    default = { };
    description = ''
      The image's segments by name (`[a-z0-9][a-z0-9._-]*`). Each becomes one compressed cpio
      segment; a change to one segment leaves the others' bytes, and so their digests, as they were.
    '';
    example = lib.literalExpression ''
      {
        site.generated."/etc/motd".text = "Property of the lab\n";
        site.packages = [ pkgs.htop ];
      }
    '';
  };
}
