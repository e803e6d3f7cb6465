# `network`: how the node gets its address at boot (the init does it; no DHCP client needed).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.network;
  iface = lib.optionalAttrs (cfg.interface != null) { inherit (cfg) interface; };
in
{
  options.network = {
    mode = mkOption {
      type = types.enum [
        "dhcp"
        "static"
        "none"
      ];
      default = "dhcp";
      description = ''
        `dhcp`: ask on the first interface with link (or `interface`). `static`: use `address`.
        `none`: loopback only. Per node, `diskless.ip=ADDR/PREFIX[,GATEWAY]` on the kernel
        command line overrides this.
      '';
    };
    interface = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Interface to configure; default: the first one with link.";
      example = "eth0";
    };
    address = mkOption {
      type = types.nullOr (types.strMatching "[0-9a-fA-F.:]+/[0-9]+");
      default = null;
      description = "Address with prefix length, for `mode = \"static\"`.";
      example = "10.0.0.5/24";
    };
    gateway = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Default gateway, for `mode = \"static\"`.";
    };
    dns = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "DNS servers, for `mode = \"static\"`.";
    };
    plan = mkOption {
      type = types.attrs;
      internal = true;
      readOnly = true;
      description = "The plan's `node.network`.";
    };
  };

  config = {
    network.plan =
      if cfg.mode == "static" then
        {
          mode = "static";
          inherit (cfg) address dns;
        }
        // iface
        // lib.optionalAttrs (cfg.gateway != null) { inherit (cfg) gateway; }
      else
        { inherit (cfg) mode; } // lib.optionalAttrs (cfg.mode == "dhcp") iface;

    assertions = [
      {
        assertion = cfg.mode != "static" || cfg.address != null;
        message = "network.mode is \"static\" but network.address is not set: give one like \"10.0.0.5/24\" (or use diskless.ip= per node and mode \"dhcp\").";
      }
      {
        assertion =
          cfg.mode == "static" || (cfg.address == null && cfg.gateway == null && cfg.dns == [ ]);
        message = "network.address/gateway/dns are set but network.mode is \"${cfg.mode}\": set network.mode = \"static\".";
      }
    ];
  };
}
