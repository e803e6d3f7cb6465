# The node's base: the init (PID 1), a shell, /etc basics, and what the init does at boot
# (sysctls, cgroup controllers, services). See docs/image-contract.md for what the init reads.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  service =
    { name, config, ... }:
    {
      options = {
        order = mkOption {
          type = types.int;
          default = 500;
          description = "Start position (lower first; each waits for the previous to be ready).";
        };
        command = mkOption {
          type = types.nonEmptyListOf types.str;
          description = "argv; the first element is an absolute path inside the image.";
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "Environment variables. `PATH` defaults to `environment.path`.";
        };
        readyPath = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "The service is ready once this path exists (e.g. its socket).";
        };
        conditionPath = mkOption {
          type = types.nullOr types.str;
          default = null;
          description = "Start only when this path exists at boot (e.g. per-node join material).";
        };
        restart = mkOption {
          type = types.bool;
          default = true;
          description = "Restart with backoff when it exits.";
        };
        role = mkOption {
          type = types.nullOr (
            types.enum [
              "container-runtime"
              "kubelet"
              "etcd"
              "api-server"
            ]
          );
          default = null;
          example = "container-runtime";
          description = ''
            What the init does around this service beyond starting it: `container-runtime`
            (preloaded images are imported once it is ready), `kubelet` (gets the node's labels,
            taints, join mode and a serving certificate), `etcd` (its data restored from the node
            segment's snapshot first) or `api-server` (gets the node's advertise address). At
            most one service per role.
          '';
        };
        plan = mkOption {
          type = types.attrs;
          internal = true;
          readOnly = true;
          description = "This service as a plan `node.services[]` entry.";
        };
      };
      config.plan = {
        inherit name;
        inherit (config) command restart;
        env = {
          PATH = path;
        }
        // config.environment;
        ready_path = config.readyPath;
        condition_path = config.conditionPath;
      }
      // lib.optionalAttrs (config.role != null) { inherit (config) role; };
    };

  path = lib.makeBinPath config.environment.path;

  ownedElsewhere =
    p:
    lib.any (c: lib.elem (toString p) (map toString c.packages)) (
      lib.attrValues (removeAttrs config.components [ "base" ])
    );
in
{
  options = {
    init.package = mkOption {
      type = types.package;
      description = ''
        The package providing `bin/diskless-init`, copied to `/init`. `lib.mkImage` sets it to
        this flake's `diskless` package.
      '';
    };

    environment.path = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = ''
        Packages whose `bin` directories form `PATH` for every service (and for the shell).
        Their closures are copied into the image.
      '';
      example = lib.literalExpression "[ pkgs.iproute2 pkgs.util-linux ]";
    };

    environment.shell = mkOption {
      type = types.nullOr types.package;
      default = pkgs.busybox;
      defaultText = lib.literalExpression "pkgs.busybox";
      description = ''
        Package providing `bin/sh`, linked at `/bin/sh` (scripts, debugging, ssh logins), and
        added to `environment.path`. `null` for no shell.
      '';
    };

    sysctls = mkOption {
      type = types.attrsOf types.str;
      default = { };
      description = "Kernel parameters written to `/proc/sys` after modules load.";
      example = {
        "net.ipv4.ip_forward" = "1";
      };
    };

    cgroupControllers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "cgroup v2 controllers enabled in the root `cgroup.subtree_control`.";
      example = [
        "cpu"
        "memory"
        "pids"
      ];
    };

    services = mkOption {
      type = types.attrsOf (types.submodule service);
      default = { };
      description = ''
        Long-running processes the init starts in `order`, each once the previous is ready, and
        stops in reverse. The name `containerd` is special: the init imports the preloaded
        images once it is ready.
      '';
    };
  };

  config = {
    environment.path = lib.optional (config.environment.shell != null) config.environment.shell;

    components.base = {
      order = 0;
      files."/init".source = "${config.init.package}/bin/diskless-init";
      # PATH entries that another component carries (containerd, the kubelet's tools) stay
      # there: listing them here too would make them shared, and unpack them into RAM.
      packages = [ config.init.package ] ++ lib.filter (p: !ownedElsewhere p) config.environment.path;
      directories = {
        "/tmp".mode = "1777";
        "/root".mode = "0700";
        "/run" = { };
        "/var/lib" = { };
        "/var/log" = { };
      };
      symlinks = lib.optionalAttrs (config.environment.shell != null) {
        "/bin/sh" = "${config.environment.shell}/bin/sh";
      };
      generated = {
        "/etc/os-release".text = ''
          NAME="diskless"
          ID=diskless
          PRETTY_NAME="diskless ${config.name}"
        '';
        "/etc/passwd".text = "root:x:0:0:root:/root:/bin/sh\n";
        "/etc/group".text = "root:x:0:\n";
        "/etc/nsswitch.conf".text = "hosts: files dns\n";
        "/etc/hosts".text = "127.0.0.1 localhost\n::1 localhost\n";
        "/etc/profile".text = "export PATH=${path}\n";
      };
    };
  };
}
