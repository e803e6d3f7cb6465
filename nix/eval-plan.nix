# The module layer's test entry point: evaluates images/<image>.nix with nixpkgs' lib and the
# fake pkgs, and returns the plan. tests/nix_eval.rs runs
#   nix-instantiate --eval --strict --json nix/eval-plan.nix --argstr nixpkgsLib … --argstr image worker …
# and hands the JSON to `diskless build --plan`.
{
  nixpkgsLib,
  fixtures,
  kernelVersion,
  image,
  extraModules ? [ ],
}:
let
  # Accept either a nixpkgs(.lib) checkout or its lib/ directory.
  libDir =
    if builtins.pathExists "${nixpkgsLib}/lib/default.nix" then "${nixpkgsLib}/lib" else nixpkgsLib;
  lib = import libDir;
  pkgs = import ./fake-pkgs.nix { inherit fixtures kernelVersion; };
  evaluated = (import ./lib.nix { inherit lib; }).evalImage {
    inherit pkgs;
    initPackage = pkgs.diskless;
    modules = [
      ../images/${image}.nix
      # The fixture "kubernetes" already holds only bin/kubelet, and slimming needs runCommand.
      { kubelet.slim = false; }
    ]
    ++ extraModules;
  };
in
evaluated.config.build.plan
