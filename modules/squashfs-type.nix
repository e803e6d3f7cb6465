# The `{ algorithm, level }` submodule shared by `squashfs` and `components.<name>.squashfs`: the
# block codec of squashfs-packed segments (docs/performance.md has the measurements).
{ lib }:
lib.types.submodule {
  options = {
    algorithm = lib.mkOption {
      type = lib.types.enum [
        "lz4hc"
        "zstd"
      ];
      default = "lz4hc";
      description = ''
        `lz4hc` decompresses fastest (what a node does on the first read of every page);
        `zstd` is 25 % smaller for about twice the decompression work, which pays on a link
        slower than about 0.75 GbE. The kernel needs `CONFIG_SQUASHFS_LZ4` or
        `CONFIG_SQUASHFS_ZSTD` (Debian's and NixOS's kernels have both).
      '';
    };
    level = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.positive;
      default = null;
      description = "lz4hc 1–12 or zstd 1–22; `null` lets the builder choose (lz4hc 9, zstd 15).";
    };
  };
}
