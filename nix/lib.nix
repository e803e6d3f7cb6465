# Evaluating an image description: shared by the flake (`lib.mkImage`) and the module test
# (nix/eval-plan.nix), so both run the same code path.
{ lib }:
{
  # evalImage { pkgs; modules; initPackage; specialArgs } → the lib.evalModules result; the
  # plan is `.config.build.plan`. `specialArgs` reach every module, as with nixosSystem (e.g.
  # flake inputs, usable in `imports`).
  evalImage =
    {
      pkgs,
      modules,
      initPackage ? null,
      specialArgs ? { },
    }:
    lib.evalModules {
      inherit specialArgs;
      modules = [
        ../modules
        { _module.args.pkgs = pkgs; }
      ]
      ++ lib.optional (initPackage != null) { init.package = lib.mkDefault initPackage; }
      ++ modules;
    };
}
