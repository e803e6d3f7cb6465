# `containerd`: the container runtime, with runc and the CNI plugins, configured for a node whose
# root is a tmpfs (overlayfs snapshotter, state under /run).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types mkDefault;
  cfg = config.containerd;
  toml = import ../nix/toml.nix { inherit lib; };
  socket = "/run/containerd/containerd.sock";
  certsDir = "/etc/containerd/certs.d";

  # hosts.toml per registry: the configuration format containerd 1.5+ and 2.x both read (the
  # older `registry.mirrors` table is gone in 2.0). containerd tries the `[host."URL"]` tables
  # in file order, and a Nix attribute set would sort them: one table per mirror, in the order
  # given, a URL given twice counted once (as crates/hostplan/src/mirror.rs writes them).
  hostsToml =
    registry: mirrors:
    lib.concatMapStringsSep "\n" toml.toTOML (
      [
        {
          server =
            if registry == "docker.io" then
              "https://registry-1.docker.io"
            else
              "https://${registry}";
        }
      ]
      ++ map (m: {
        host.${m}.capabilities = [
          "pull"
          "resolve"
        ];
      }) (lib.unique mirrors)
    );

  # What crates/contract/src/reference.rs (`check_domain`) and crates/hostplan/src/mirror.rs
  # accept: a host name, IPv4 or [IPv6] address with an optional port; a mirror's path holds
  # letters, digits and / . _ ~ - only. The registry names a directory of the image.
  label = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
  domain = "(${label}(\\.${label})*|\\[[0-9A-Fa-f:.]+])(:[0-9]+)?";
  mirrorUrl = "https?://${domain}(/[A-Za-z0-9/._~-]*)?";
  matches = re: s: builtins.match re s != null;
in
{
  options.containerd = {
    enable = lib.mkEnableOption "containerd (with runc and the CNI plugins)";

    package = mkOption {
      type = types.package;
      default = pkgs.containerd;
      defaultText = lib.literalExpression "pkgs.containerd";
      description = "containerd; its `bin` holds containerd, ctr and containerd-shim-runc-v2.";
    };

    runc = mkOption {
      type = types.package;
      default = pkgs.runc;
      defaultText = lib.literalExpression "pkgs.runc";
      description = "The OCI runtime containerd starts containers with.";
    };

    cniPlugins = mkOption {
      type = types.package;
      default = pkgs.cni-plugins;
      defaultText = lib.literalExpression "pkgs.cni-plugins";
      description = "CNI plugins (bridge, host-local, loopback, portmap, …); their `bin` is the CNI `bin_dir`.";
    };

    sandboxImage = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = ''
        The pod sandbox ("pause") image reference. Make it a preloaded image's ref, or every
        pod start tries a registry; `null` leaves containerd's default.
      '';
      example = "registry.k8s.io/pause:3.10";
    };

    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = ''
        containerd's `config.toml` as a Nix value, merged over the defaults this module sets
        (each a `mkDefault`, so a plain definition replaces it).
      '';
      example = lib.literalExpression ''
        {
          plugins."io.containerd.cri.v1.runtime".enable_selinux = false;
        }
      '';
    };

    registryMirrors = mkOption {
      type = types.attrsOf (types.nonEmptyListOf types.str);
      default = { };
      description = ''
        Pull-through mirrors per registry host, tried in the order given before the registry
        itself; written as `${certsDir}/<registry>/hosts.toml`. A registry is a host name, IPv4
        or [IPv6] address with an optional `:port`; a mirror is an `http://` or `https://` URL
        of such a host with an optional path (letters, digits and `/ . _ ~ -`).
      '';
      example = {
        "docker.io" = [ "https://mirror.lab.example" ];
      };
    };
  };

  config = lib.mkIf cfg.enable {
    # Version 3, containerd 2.x's layout (nixpkgs 26.05 ships 2.x; docs/nix.md): the CRI
    # plugin is split into images and runtime, and 2.x reads it without migrating at boot.
    containerd.settings = {
      version = mkDefault 3;
      root = mkDefault "/var/lib/containerd";
      state = mkDefault "/run/containerd";
      grpc.address = mkDefault socket;
      plugins."io.containerd.cri.v1.images" = {
        snapshotter = mkDefault "overlayfs";
        registry.config_path = mkDefault certsDir;
      }
      // lib.optionalAttrs (cfg.sandboxImage != null) {
        pinned_images.sandbox = mkDefault cfg.sandboxImage;
      };
      plugins."io.containerd.cri.v1.runtime" = {
        cni = {
          bin_dirs = mkDefault [ "${cfg.cniPlugins}/bin" ];
          conf_dir = mkDefault "/etc/cni/net.d";
        };
        containerd = {
          default_runtime_name = mkDefault "runc";
          runtimes.runc = {
            runtime_type = mkDefault "io.containerd.runc.v2";
            options = {
              BinaryName = mkDefault "${cfg.runc}/bin/runc";
              # No systemd in the image: cgroups are managed directly.
              SystemdCgroup = mkDefault false;
            };
          };
        };
      };
    };

    # overlay for the snapshotter; loop and squashfs mount this segment (packing below). One
    # list with the host plan's, and the reasons: crates/hostplan/data/kernel-modules.json.
    kernel.modules = (lib.importJSON ../crates/hostplan/data/kernel-modules.json).container-runtime.modules;
    cgroupControllers = [
      "cpu"
      "memory"
      "pids"
      "io"
      "cpuset"
    ];

    services.containerd = {
      order = 100;
      role = "container-runtime";
      command = [
        "${cfg.package}/bin/containerd"
        "--config"
        "/etc/containerd/config.toml"
      ];
      readyPath = socket;
      # The Go heap grows to 1.5x the live data instead of 2x: 5 MB less RAM for containerd
      # and the kubelet together, 0.07 s later to the pod (docs/performance.md).
      environment.GOGC = lib.mkDefault "50";
    };

    # The shim is found on PATH; runc by BinaryName, but ctr and tools look on PATH too.
    environment.path = [
      cfg.package
      cfg.runc
    ];

    components.containerd = {
      order = 200;
      # ≈ 100 MB of binaries: mounted read-only from squashfs instead of unpacked into RAM.
      packing = lib.mkDefault "squashfs";
      # Their closures, less what other components share, go into this squashfs segment.
      packages = [
        cfg.package
        cfg.runc
        cfg.cniPlugins
      ];
      generated = {
        "/etc/containerd/config.toml".text = toml.toTOML cfg.settings;
      }
      // lib.mapAttrs' (
        registry: mirrors:
        lib.nameValuePair "${certsDir}/${registry}/hosts.toml" { text = hostsToml registry mirrors; }
      ) cfg.registryMirrors;
      directories = {
        "/var/lib/containerd".mode = "0711";
        "/etc/cni/net.d" = { };
      };
      # Fixed paths for tools (and the init's image import) that do not read PATH.
      symlinks = {
        "/usr/bin/ctr" = "${cfg.package}/bin/ctr";
        "/usr/bin/containerd" = "${cfg.package}/bin/containerd";
        "/usr/sbin/runc" = "${cfg.runc}/bin/runc";
      };
    };

    assertions = lib.concatLists (
      lib.mapAttrsToList (
        registry: mirrors:
        [
          {
            assertion = matches domain registry;
            message = "containerd.registryMirrors: registry ${builtins.toJSON registry} is not a host name, IPv4 or [IPv6] address with an optional :port (e.g. \"docker.io\", \"10.0.0.5:5000\").";
          }
        ]
        ++ lib.imap0 (i: url: {
          assertion = matches mirrorUrl url;
          message = "containerd.registryMirrors.${builtins.toJSON registry}[${toString i}]: ${builtins.toJSON url} is not an http:// or https:// URL of a registry host with an optional path of letters, digits and / . _ ~ - (e.g. \"http://10.0.0.5:5000\").";
        }) mirrors
      ) cfg.registryMirrors
    );
  };
}
