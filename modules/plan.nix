# Turns the evaluated configuration into the build plan (docs/plan.md, crates/builder/src/plan.rs): the one
# document the Rust builder reads. Field names here must match crates/builder/src/plan.rs exactly, since the
# builder rejects unknown fields.
{ config, lib, ... }:
let
  inherit (lib)
    mkOption
    types
    mapAttrsToList
    filterAttrs
    optionalAttrs
    ;

  # `mode` only when set: the builder then picks the documented default.
  withMode = m: optionalAttrs (m != null) { mode = m; };
  withDest = d: optionalAttrs (d != null) { dest = d; };
  nonEmpty = filterAttrs (_: v: v != [ ]);

  compression =
    c:
    { inherit (c) algorithm; }
    // optionalAttrs (c.level != null) { inherit (c) level; }
    // optionalAttrs (c.windowLog != null) { window_log = c.windowLog; };

  squashfs = c: { inherit (c) algorithm; } // optionalAttrs (c.level != null) { inherit (c) level; };
  # The builder's defaults (crates/builder/data/defaults.json, held equal to its Rust types by a
  # unit test): the default codec is left out of the plan, as the builder leaves it out of the
  # plan's digest; the level ranges are the builder's, so the assertion below says what it would.
  builderDefaults = lib.importJSON ../crates/builder/data/defaults.json;
  isDefaultSquashfs =
    c: c.algorithm == builderDefaults.squashfs.algorithm && c.level == builderDefaults.squashfs.level;

  # A package's store path as an attribute name (names may not carry string context).
  storeKey = p: builtins.unsafeDiscardStringContext "${p}";

  # Which component carries each package: the one component that lists it, or `nix-store` when
  # several do. The same rule, applied to whole closures, is how `lib.mkImage` places every store
  # path (nix/mk-image.nix): what one component alone needs travels in that component's segment
  # (squashfs-packed for containerd and kubelet), what several share stays in `nix-store`.
  packageOwners = lib.foldl' (
    acc: c:
    lib.foldl' (
      acc: p:
      let
        key = storeKey p;
      in
      acc // { ${key} = if acc ? ${key} && acc.${key} != c.name then "nix-store" else c.name; }
    ) acc c.value.packages
  ) { } (mapAttrsToList lib.nameValuePair config.components);

  # The packages each component owns (as roots: their closures are placed at build time).
  ownedRoots = name: lib.filter (p: packageOwners.${storeKey p} == name) closureRoots;

  # `standIns`: the evaluation-time plan lists each component's package roots as trees; the
  # template `lib.mkImage` fills at build time lists only what the user wrote.
  component =
    standIns: name: c:
    {
      inherit name;
    }
    // optionalAttrs (c.compression != null) { compression = compression c.compression; }
    // optionalAttrs (c.packing != "cpio") { inherit (c) packing; }
    // optionalAttrs (c.squashfs != null) { squashfs = squashfs c.squashfs; }
    // optionalAttrs (c.conditionPath != null) { condition_path = c.conditionPath; }
    // nonEmpty {
      files = mapAttrsToList (
        dest: f:
        {
          inherit (f) source;
          inherit dest;
        }
        // withMode f.mode
      ) c.files;
      directories = mapAttrsToList (path: d: { inherit path; } // withMode d.mode) c.directories;
      symlinks = mapAttrsToList (path: target: { inherit path target; }) c.symlinks;
      generated = mapAttrsToList (
        dest: g:
        {
          inherit dest;
          contents = g.text;
        }
        // withMode g.mode
      ) c.generated;
      binaries = map (b: { inherit (b) source; } // withDest b.dest) c.binaries;
      trees =
        map (t: { inherit (t) source; } // withDest t.dest) c.trees
        ++ lib.optionals standIns (map (p: { source = "${p}"; }) (ownedRoots name));
      modules = c.kernelModules;
    };

  # Every package named by any component, deduplicated by store path.
  closureRoots = lib.unique (lib.concatMap (c: c.packages) (lib.attrValues config.components));

  # Each component's packages, for one closure per component (empty lists left out).
  componentRoots = lib.filterAttrs (_: roots: roots != [ ]) (
    lib.mapAttrs (_: c: lib.unique c.packages) config.components
  );

  ordered = lib.sort (
    a: b: if a.value.order != b.value.order then a.value.order < b.value.order else a.name < b.name
  ) (mapAttrsToList lib.nameValuePair config.components);

  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  checked =
    plan:
    if failed != [ ] then
      throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
    else
      plan;

  planWith = standIns: {
    version = 1;
    inherit (config) name;
    description = config.ipxe.menuText;
    kernel = {
      inherit (config.kernel) image;
      cmdline = lib.concatStringsSep " " config.kernel.params;
    }
    // optionalAttrs (config.kernel.modulesDir != null) { modules_dir = config.kernel.modulesDir; };
    compression = compression config.compression;
  }
  // optionalAttrs (!isDefaultSquashfs config.squashfs) { squashfs = squashfs config.squashfs; }
  // {
    # At evaluation, `nix-store` only when a package is shared; the template keeps it for
    # `lib.mkImage`, which drops it if the closures share nothing.
    components = lib.filter (c: !standIns || c.name != "nix-store" || c ? trees) (
      map (c: component standIns c.name c.value) ordered
    );
    images = mapAttrsToList (name: i: {
      inherit name;
      archive = "${i.archive}";
      inherit (i) refs;
    }
    // optionalAttrs i.pinned { labels."io.cri-containerd.pinned" = "pinned"; }
    // optionalAttrs i.deferred { deferred = true; }
    // optionalAttrs (i.conditionPath != null) { condition_path = i.conditionPath; }
    ) config.preload.images;
    node = {
      inherit (config) sysctls;
      cgroup_controllers = config.cgroupControllers;
      network = config.network.plan;
      services = map (s: s.plan) (
        lib.sort (a: b: if a.order != b.order then a.order < b.order else a.name < b.name) (
          lib.attrValues config.services
        )
      );
    };
  };
in
{
  options = {
    name = mkOption {
      type = types.strMatching "[a-z0-9][a-z0-9._-]*";
      description = "Image name: the output holds `<name>.json`, `<name>.ipxe` and the segments.";
      example = "worker";
    };

    assertions = mkOption {
      type = types.listOf (
        types.submodule {
          options = {
            assertion = mkOption {
              type = types.bool;
              description = "Must hold for the image to build.";
            };
            message = mkOption {
              type = types.str;
              description = "What is wrong and what to do about it.";
            };
          };
        }
      );
      default = [ ];
      internal = true;
      description = "Checks across options; a failing one stops evaluation with its message.";
    };

    build.plan = mkOption {
      type = types.attrs;
      readOnly = true;
      description = ''
        The build plan (docs/plan.md) as a Nix value; `builtins.toJSON` of it is what
        `diskless build --plan` reads. Its `nix-store` component lists the closure roots as
        trees; `lib.mkImage` replaces them with the full closure at build time.
      '';
    };

    build.closureRoots = mkOption {
      type = types.listOf types.package;
      readOnly = true;
      description = "The packages whose closures the image carries (all `components.*.packages`).";
    };

    build.componentRoots = mkOption {
      type = types.attrsOf (types.listOf types.package);
      readOnly = true;
      description = ''
        Each component's `packages`. `lib.mkImage` takes one closure per component: a store
        path that only one component's closure holds goes into that component's segment, one
        that several share into `nix-store`.
      '';
    };

    build.planTemplate = mkOption {
      type = types.attrs;
      readOnly = true;
      internal = true;
      description = "`build.plan` without the package roots, which `lib.mkImage` replaces by closures.";
    };
  };

  config = {
    build.closureRoots = closureRoots;
    build.componentRoots = componentRoots;
    build.plan = checked (planWith true);
    build.planTemplate = checked (planWith false);

    # What several components share. Its trees are filled in by `lib.mkImage`; in the
    # evaluation-time plan it lists the package roots that more than one component names.
    components.nix-store.order = 100;

    assertions = [
      {
        assertion =
          let
            c = config.compression;
          in
          c.level == null
          || (c.algorithm == "zstd" && c.level >= 1 && c.level <= 19)
          || (c.algorithm == "gzip" && c.level >= 0 && c.level <= 9)
          || c.algorithm == "none";
        message = "compression.level ${toString config.compression.level} is out of range for ${config.compression.algorithm} (zstd 1–19, gzip 0–9).";
      }
      {
        assertion =
          let
            c = config.squashfs;
          in
          c.level == null || c.level <= builderDefaults.squashfs_levels.${c.algorithm}.max;
        message =
          let
            inherit (config.squashfs) algorithm;
            levels = builderDefaults.squashfs_levels.${algorithm};
          in
          "squashfs.level ${toString config.squashfs.level} is out of range for ${algorithm} (${toString levels.min}–${toString levels.max}).";
      }
      {
        assertion = config.compression.windowLog == null || config.compression.algorithm == "zstd";
        message = "compression.windowLog is set but compression.algorithm is \"${config.compression.algorithm}\": the window is a zstd setting.";
      }
    ];
  };
}
