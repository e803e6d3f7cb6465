# Builds an evaluated image: the plan with every store path of the closure, then
# `diskless build`. Only this step needs a Nix store; everything before it is pure evaluation.
{
  pkgs,
  diskless,
  evaluated,
}:
let
  inherit (evaluated) config;

  template = pkgs.writeText "${config.name}-plan-roots.json" (builtins.toJSON config.build.plan);

  # Every store path the roots need at run time. Only known once they are built, hence a
  # build step (jq) rather than evaluation (which would need import-from-derivation).
  closure = pkgs.closureInfo { rootPaths = config.build.closureRoots; };

  plan = pkgs.runCommand "${config.name}-plan.json" { nativeBuildInputs = [ pkgs.jq ]; } ''
    jq --sort-keys --rawfile paths ${closure}/store-paths '
      (.components[] | select(.name == "nix-store") | .trees) =
        ($paths | split("\n") | map(select(length > 0)) | sort | map({ source: . }))
    ' ${template} > $out
  '';

  baseUrlArgs = pkgs.lib.optionalString (
    config.ipxe.baseUrl != null
  ) "--base-url ${pkgs.lib.escapeShellArg config.ipxe.baseUrl}";
in
pkgs.runCommand "diskless-image-${config.name}"
  {
    nativeBuildInputs = [ diskless ];
    passthru = {
      inherit config plan;
    };
  }
  ''
    # No segment cache: Nix caches whole outputs. A Nix build has no writable home, so anything
    # the builder still caches goes to the build's own temporary directory.
    export XDG_CACHE_HOME=$TMPDIR/cache
    diskless build --no-cache --plan ${plan} --out $out ${baseUrlArgs}
  ''
