# The `{ algorithm, level }` submodule shared by `squashfs` and `components.<name>.squashfs`: the
# block codec of squashfs-packed segments (docs/performance.md has the measurements). The defaults
# are the builder's own, read from its data file so the plan, the CLI and this option say the same.
{ lib }:
let
  defaults = lib.importJSON ../crates/builder/data/defaults.json;
in
lib.types.submodule (
  { config, ... }:
  {
    options = {
      algorithm = lib.mkOption {
        type = lib.types.enum [
          "lz4hc"
          "zstd"
        ];
        default = defaults.squashfs.algorithm;
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
        # The default level goes with the default algorithm only: `algorithm = "lz4hc"` alone means
        # lz4hc at its own default.
        default = if config.algorithm == defaults.squashfs.algorithm then defaults.squashfs.level else null;
        defaultText = lib.literalExpression ''if algorithm == "zstd" then 3 else null'';
        description = "lz4hc 1–12 or zstd 1–22; `null` lets the builder choose (lz4hc 9, zstd 15).";
      };
    };
  }
)
