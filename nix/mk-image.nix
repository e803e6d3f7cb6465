# Builds an evaluated image: the plan with every store path of the closure, then
# `diskless build`. Only this step needs a Nix store; everything before it is pure evaluation.
{
  pkgs,
  diskless,
  evaluated,
}:
let
  inherit (evaluated) config;
  inherit (pkgs) lib;

  template = pkgs.writeText "${config.name}-plan-template.json" (
    builtins.toJSON config.build.planTemplate
  );

  # One closure per component (closureInfo: every store path its packages need at run time,
  # only known once they are built, hence a build step rather than evaluation).
  closures = lib.mapAttrs (
    _: roots: pkgs.closureInfo { rootPaths = roots; }
  ) config.build.componentRoots;

  # A store path that one component's closure alone holds goes into that component; one that
  # several hold goes into `nix-store` (the rule of modules/plan.nix, on whole closures). So
  # containerd, runc, the CNI plugins and the kubelet travel in their squashfs segments and
  # `nix-store` keeps the C library and what else they share.
  plan = pkgs.runCommand "${config.name}-plan.json" { nativeBuildInputs = [ pkgs.jq ]; } ''
    # {"<component>": [store paths of its closure], …}
    for args in ${
      lib.concatMapStringsSep " " lib.escapeShellArg (
        lib.mapAttrsToList (name: c: "${name}=${c}/store-paths") closures
      )
    }; do
      jq -n --arg c "''${args%%=*}" --rawfile p "''${args#*=}" \
        '{ ($c): ($p | split("\n") | map(select(length > 0))) }'
    done | jq -s add > closures.json
    jq --sort-keys --slurpfile closures closures.json '
      ($closures[0] // {}) as $cl
      | ([ $cl | to_entries[] | .key as $c | .value[] | { path: ., c: $c } ]
         | group_by(.path)
         | map({ key: .[0].path, value: (if length == 1 then .[0].c else "nix-store" end) })
         | from_entries) as $owner
      | ($owner | to_entries | group_by(.value)
         | map({ key: .[0].value, value: (map({ source: .key }) | sort_by(.source)) })
         | from_entries) as $placed
      | .components |= map(
          . as $comp
          | if ($placed[$comp.name] // []) == [] then $comp
            else $comp | .trees = (((.trees // []) + $placed[$comp.name]) | sort_by(.source)) end)
      | .components |= map(select(.name != "nix-store" or ((.trees // []) != [])))
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
