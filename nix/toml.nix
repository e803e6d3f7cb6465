# A TOML writer for the subset containerd's configuration uses: nested tables, strings, integers,
# booleans and lists of those.
#
# Why not `pkgs.formats.toml`: it renders at build time (a derivation), but the plan carries
# configuration inline (`generated[].contents`) so that the module layer can be evaluated, and its
# output checked, without building anything. This stays small because TOML's subset here is small.
{ lib }:
let
  inherit (lib)
    concatStringsSep
    filterAttrs
    isAttrs
    isBool
    isInt
    isList
    isString
    mapAttrsToList
    ;

  # TOML basic strings use JSON's escapes; toJSON also quotes keys that need it.
  quote = builtins.toJSON;
  key = k: if builtins.match "[A-Za-z0-9_-]+" k != null then k else quote k;

  value =
    path: v:
    if isBool v then
      lib.boolToString v
    else if isInt v then
      toString v
    else if isString v then
      quote v
    else if isList v then
      "[" + concatStringsSep ", " (map (value path) v) + "]"
    else
      throw "diskless: cannot write ${builtins.typeOf v} at `${concatStringsSep "." path}` as TOML (strings, integers, booleans, lists and tables only)";

  isTable = v: isAttrs v && !(v ? outPath);

  # Scalars first, then sub-tables under their dotted header, as TOML requires.
  table =
    path: attrs:
    let
      scalars = filterAttrs (_: v: !isTable v) attrs;
      tables = filterAttrs (_: isTable) attrs;
      header = lib.optionalString (
        path != [ ] && scalars != { }
      ) "[${concatStringsSep "." (map key path)}]\n";
      # Packages (attrsets with outPath) are written as their store path.
      line = k: v: "${key k} = ${value (path ++ [ k ]) (if v ? outPath then "${v}" else v)}\n";
      body = concatStringsSep "" (mapAttrsToList line scalars);
      subs = mapAttrsToList (k: v: table (path ++ [ k ]) v) tables;
    in
    concatStringsSep "\n" (lib.filter (s: s != "") ([ (header + body) ] ++ subs));
in
{
  # toTOML { version = 2; plugins."io.containerd.grpc.v1.cri".sandbox_image = "…"; }
  toTOML = attrs: table [ ] attrs;
}
