# `kernel`: which kernel boots, its modules, and its command line.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.kernel;
in
{
  options.kernel = {
    package = mkOption {
      type = types.package;
      default = pkgs.linuxPackages.kernel;
      defaultText = lib.literalExpression "pkgs.linuxPackages.kernel";
      description = "The kernel. Its modules must match it, so both defaults below derive from it.";
      example = lib.literalExpression "pkgs.linuxPackages_6_12.kernel";
    };

    image = mkOption {
      type = types.str;
      default = "${cfg.package}/${pkgs.stdenv.hostPlatform.linux-kernel.target}";
      defaultText = lib.literalExpression ''"''${config.kernel.package}/''${pkgs.stdenv.hostPlatform.linux-kernel.target}"'';
      description = "The kernel image file the boot loader loads (bzImage on x86_64, Image on aarch64).";
    };

    modulesDir = mkOption {
      type = types.nullOr types.str;
      # nixpkgs' kernels install their modules into a `modules` output (since 25.11,
      # pkgs/os-specific/linux/kernel/build.nix: INSTALL_MOD_PATH=$modules); getOutput falls
      # back to `out` for a kernel package without one.
      default = "${lib.getOutput "modules" cfg.package}/lib/modules/${cfg.package.modDirVersion}";
      defaultText = lib.literalExpression ''"''${lib.getOutput "modules" config.kernel.package}/lib/modules/''${config.kernel.package.modDirVersion}"'';
      description = "The kernel's module tree (`.ko`, `.ko.xz`, `.ko.zst` or `.ko.gz`, indexed by depmod); needed when `kernel.modules` is not empty.";
    };

    modules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Kernel modules (names or aliases) loaded at boot, in this order, after their
        dependencies. Drivers for the boot NIC must be here: the kernel loads nothing by itself
        from an initramfs without udev.
      '';
      example = [
        "virtio_pci"
        "virtio_net"
      ];
    };

    params = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Kernel command line, joined with spaces into the iPXE entry. `diskless.ip=` and
        `diskless.hostname=` here override `network` per node.
      '';
      example = [
        "console=ttyS0"
        "panic=10"
      ];
    };
  };

  config = {
    components.kernel-modules = lib.mkIf (cfg.modules != [ ]) {
      order = 50;
      kernelModules = cfg.modules;
    };

    assertions = [
      {
        assertion = cfg.modules == [ ] || cfg.modulesDir != null;
        message = "kernel.modules lists ${toString cfg.modules} but kernel.modulesDir is null: set it to the kernel's /lib/modules/<version> tree.";
      }
    ];
  };
}
