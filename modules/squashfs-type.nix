# The `{ algorithm, level }` submodule shared by `squashfs` and `components.<name>.squashfs`: the
# block codec of squashfs-packed segments (docs/performance.md has the measurements).
{ lib }:
lib.types.submodule (
  { config, ... }:
  {
    options = {
      algorithm = lib.mkOption {
        type = lib.types.enum [
          "lz4hc"
          "zstd"
        ];
        default = "zstd";
        description = ''
          `zstd` (the default, at level 3): the smaller download and RAM (the images stay
          compressed in RAM) and the faster build, the same boot time as `lz4hc` on real
          hardware at 1 GbE. `lz4hc` decompresses fastest, which shows under emulation (QEMU
          TCG) and on slow CPUs. The kernel needs `CONFIG_SQUASHFS_ZSTD` or
          `CONFIG_SQUASHFS_LZ4` (Debian's and NixOS's kernels have both).
        '';
      };
      level = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = if config.algorithm == "zstd" then 3 else null;
        defaultText = lib.literalExpression ''if algorithm == "zstd" then 3 else null'';
        description = "lz4hc 1–12 or zstd 1–22; `null` lets the builder choose (lz4hc 9, zstd 15).";
      };
    };
  }
)
