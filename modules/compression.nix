# `compression`: the image-wide default for segment compression.
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
}
