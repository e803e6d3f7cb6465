# `ipxe`: the boot menu entry the builder writes next to the image.
{ config, lib, ... }:
{
  options.ipxe = {
    menuText = lib.mkOption {
      type = lib.types.strMatching "[^\n]*";
      default = "diskless ${config.name}";
      defaultText = lib.literalExpression ''"diskless ''${config.name}"'';
      description = "One line naming the image in iPXE menus and `diskless inspect`.";
      example = "Kubernetes worker (lab A)";
    };
    baseUrl = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        URL the boot server serves the output directory under, for absolute URLs in the iPXE
        entry (`diskless build --base-url`). `null`: URLs relative to the script's own location.
      '';
      example = "http://boot.lab.example/images/worker/";
    };
  };

  config.assertions = [
    {
      assertion = config.ipxe.baseUrl == null || lib.hasSuffix "/" config.ipxe.baseUrl;
      message = "ipxe.baseUrl \"${toString config.ipxe.baseUrl}\" must end with \"/\" (object names are appended to it).";
    }
  ];
}
