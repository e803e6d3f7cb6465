# Renders docs/options.md from the modules' option declarations, with nixpkgs' lib only (no
# store, no pkgs), so it runs anywhere nix-instantiate does:
#   nix-instantiate --eval --strict --json nix/options-doc.nix --argstr nixpkgsLib PATH | jq -r . > docs/options.md
# The flake exposes the same text as `packages.<system>.options-doc`; tests/nix_options.rs fails
# when the committed file is stale.
{
  nixpkgsLib ? null,
  lib ? import (
    if builtins.pathExists "${nixpkgsLib}/lib/default.nix" then "${nixpkgsLib}/lib" else nixpkgsLib
  ),
}:
let
  inherit (lib) concatStringsSep concatMapStringsSep hasPrefix removePrefix;

  # Option defaults that use pkgs carry a defaultText, so pkgs is never needed; if one forgets,
  # this says which.
  pkgs = throw "an option default uses pkgs without a defaultText (see the trace above)";

  eval = lib.evalModules {
    modules = [
      ../modules
      { _module.args.pkgs = pkgs; }
    ];
  };

  root = toString ../. + "/";
  relative = f: if hasPrefix root (toString f) then removePrefix root (toString f) else toString f;
  link = f: "[${relative f}](../${relative f})";

  # Sub-options of internal options (assertions.*) are not marked internal themselves.
  options = lib.filter (
    o: o.visible && !o.internal && o.name != "_module.args" && !hasPrefix "assertions." o.name
  ) (lib.optionAttrSetToDocList eval.options);

  # Values arrive as { _type = "literalExpression" | "literalMD"; text; }.
  value =
    v:
    if v._type == "literalMD" then
      v.text
    else if lib.hasInfix "\n" v.text then
      let
        lines = lib.splitString "\n" (lib.removeSuffix "\n" v.text);
      in
      "\n\n  ```nix\n${concatMapStringsSep "\n" (l: "  ${l}") lines}\n  ```"
    else
      " `${v.text}`";

  option =
    o:
    concatStringsSep "\n" (
      [
        "## `${o.name}`"
        ""
        (lib.removeSuffix "\n" (o.description or "(no description)"))
        ""
        "- type: ${o.type}"
      ]
      ++ lib.optional (o ? default && !o.readOnly) "- default:${value o.default}"
      ++ lib.optional (o ? example) "- example:${value o.example}"
      ++ lib.optional o.readOnly "- read-only"
      ++ [ "- declared in: ${concatMapStringsSep ", " link o.declarations}" ]
    );
in
''
  # diskless module options

  Generated from `modules/` by `nix/options-doc.nix`; do not edit (regenerate as described in
  [nix.md](nix.md#option-reference)). Options are set in an image module, e.g. `images/worker.nix`.

''
+ concatMapStringsSep "\n\n" option options
+ "\n"
