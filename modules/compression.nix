# `compression` and `squashfs`: the image-wide defaults for segment compression and for the
# block codec of squashfs-packed segments.
{ lib, ... }:
{
  options.compression = lib.mkOption {
    type = import ./compression-type.nix { inherit lib; };
    default = { };
    description = ''
      Default compression of every segment. zstd unpacks fastest in the guest for its size;
      higher levels cost build time only (see the field notes in the project docs).
    '';
    example = {
      algorithm = "zstd";
      level = 19;
    };
  };

  options.squashfs = lib.mkOption {
    type = import ./squashfs-type.nix { inherit lib; };
    default = { };
    description = ''
      Block codec of every squashfs-packed segment (`components.<name>.packing = "squashfs"`);
      a component's own `squashfs` overrides it.
    '';
    example = {
      algorithm = "zstd";
      level = 19;
    };
  };
}
