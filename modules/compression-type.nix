# The `{ algorithm, level }` submodule shared by `compression` and `components.<name>.compression`.
{ lib }:
lib.types.submodule {
  options = {
    algorithm = lib.mkOption {
      type = lib.types.enum [
        "zstd"
        "gzip"
        "none"
      ];
      default = "zstd";
      description = "Segment compression; `none` writes plain cpio (for content that is already compressed).";
    };
    level = lib.mkOption {
      type = lib.types.nullOr lib.types.int;
      default = null;
      description = "zstd 1–19 or gzip 0–9; `null` lets the builder choose (zstd 7, gzip 6).";
    };
    windowLog = lib.mkOption {
      type = lib.types.nullOr (lib.types.ints.between 0 27);
      default = null;
      description = ''
        zstd only: long-distance matching over a 2^N-byte window (10–27), `0` for off; `null`
        lets the builder choose (24). The node allocates the window while unpacking.
      '';
    };
  };
}
