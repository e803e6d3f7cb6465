# `preload.images`: container images that are in containerd when the node boots, so pods start
# without a registry (pinned by digest, fetched once at build time by Nix).
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.preload.images = mkOption {
    type = types.attrsOf (
      types.submodule {
        options = {
          archive = mkOption {
            type = types.either types.package types.str;
            description = ''
              docker-archive tar, OCI archive tar or OCI layout directory, typically
              `pkgs.dockerTools.pullImage { … }` with a pinned `imageDigest` and hash.
            '';
          };
          refs = mkOption {
            type = types.nonEmptyListOf types.str;
            description = "References the image gets in containerd's `k8s.io` namespace (what pod specs name).";
            example = [ "registry.k8s.io/pause:3.9" ];
          };
          pinned = mkOption {
            type = types.bool;
            default = true;
            description = ''
              Label the image `io.cri-containerd.pinned=pinned` on import, so the kubelet's image
              garbage collection never removes it: on a diskless node it cannot be pulled again.
              Needs containerd ≥ 1.7 (nixpkgs ships 2.x).
            '';
          };
          deferred = mkOption {
            type = types.bool;
            default = false;
            description = ''
              Import the image after the kubelet has started instead of before, so its import
              does not delay the kubelet. Only for an image neither the pod sandbox nor a static
              pod uses (e.g. the cluster DNS): a pod the API schedules before it is in waits for
              the kubelet's retry.
            '';
          };
          conditionPath = mkOption {
            type = types.nullOr (types.strMatching "/.*");
            default = null;
            description = ''
              Import the image only where this absolute path exists at boot, as a service's
              condition: e.g. the cluster DNS only where the node joins
              (`/.diskless/node/kubelet/bootstrap-kubeconfig`); a node left without it deletes the
              image's blobs instead and keeps its RAM.
            '';
            example = "/.diskless/node/kubelet/bootstrap-kubeconfig";
          };
        };
      }
    );
    default = { };
    description = ''
      Images imported into containerd at boot, each its own segment (`image-<name>`), keyed by a
      name matching `[a-z0-9][a-z0-9._-]*`.
    '';
    example = lib.literalExpression ''
      {
        pause = {
          archive = pkgs.dockerTools.pullImage {
            imageName = "registry.k8s.io/pause";
            imageDigest = "sha256:…";
            hash = "sha256-…";
            finalImageTag = "3.9";
          };
          refs = [ "registry.k8s.io/pause:3.9" ];
        };
      }
    '';
  };

  config.assertions = [
    {
      assertion = config.preload.images == { } || config.containerd.enable;
      message = "preload.images is set but containerd.enable is false: nothing would import the images.";
    }
  ];
}
