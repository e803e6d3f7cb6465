# `ssh`: optional remote shell (dropbear: one small binary, host keys made at first boot).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.ssh;
  keys = import ../nix/authorized-keys.nix { inherit lib; };
in
{
  options.ssh = {
    enable = lib.mkEnableOption "an SSH server for root, key login only";

    package = mkOption {
      type = types.package;
      default = pkgs.dropbear;
      defaultText = lib.literalExpression "pkgs.dropbear";
      description = "The SSH server (dropbear; its flags are used).";
    };

    port = mkOption {
      type = types.port;
      default = 22;
      description = "TCP port to listen on.";
    };

    authorizedKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = ''
        Public keys allowed to log in as root, one per element: `TYPE BASE64 [COMMENT]` with
        a key type dropbear accepts (${lib.concatStringsSep ", " keys.keyTypes}). Options
        before the key (`command=`, `no-pty`, …), line breaks and control characters are
        refused at evaluation, as `diskless publish` refuses them in an inventory's keys file.
      '';
      example = [ "ssh-ed25519 AAAA… admin@lab" ];
    };
  };

  config = lib.mkIf cfg.enable {
    services.sshd = {
      order = 50;
      # -F foreground, -E log to stderr, -R host keys made on first connection (per boot: the
      # node keeps no state), -s no passwords.
      command = [
        "${cfg.package}/bin/dropbear"
        "-F"
        "-E"
        "-R"
        "-s"
        "-p"
        (toString cfg.port)
      ];
    };

    components.ssh = {
      order = 400;
      packages = [ cfg.package ];
      directories = {
        "/root/.ssh".mode = "0700";
        "/etc/dropbear".mode = "0700";
      };
      generated."/root/.ssh/authorized_keys" = {
        text = lib.concatMapStrings (k: k + "\n") cfg.authorizedKeys;
        mode = "0600";
      };
    };

    assertions = [
      {
        assertion = cfg.authorizedKeys != [ ];
        message = "ssh.enable is set but ssh.authorizedKeys is empty: nobody could log in (passwords are off). Add a public key.";
      }
    ]
    ++ lib.imap0 (
      i: key:
      let
        problem = keys.problem key;
      in
      {
        assertion = problem == null;
        message = "ssh.authorizedKeys[${toString i}] ${builtins.toJSON key}: ${toString problem}.";
      }
    ) cfg.authorizedKeys
    ++ [
      {
        assertion = config.environment.shell != null;
        message = "ssh.enable needs a login shell: environment.shell must not be null.";
      }
    ];
  };
}
