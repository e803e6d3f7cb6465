# Evaluating an image description: shared by the flake (`lib.mkImage`) and the module test
# (nix/eval-plan.nix), so both run the same code path.
{ lib }:
{
  # evalImage { pkgs; modules; initPackage } → the lib.evalModules result; the plan is
  # `.config.build.plan`.
  evalImage =
    {
      pkgs,
      modules,
      initPackage ? null,
    }:
    lib.evalModules {
      modules = [
        ../modules
        { _module.args.pkgs = pkgs; }
      ]
      ++ lib.optional (initPackage != null) { init.package = lib.mkDefault initPackage; }
      ++ modules;
    };
}
