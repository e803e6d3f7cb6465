//! diskless-hostplan: the front end that makes a build plan from this machine's own packages
//! (`diskless plan --host`), the way the Nix modules make one from store paths. `host` is the
//! reference worker, `control_plane` the reference control plane, `mirror` containerd's registry
//! mirrors. The plan format itself is the builder's (`diskless_builder::plan`).

pub mod control_plane;
pub mod host;
pub mod mirror;
