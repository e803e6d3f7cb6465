//! diskless-hostplan: the front end that makes a build plan from this machine's own packages
//! (`diskless plan --host`), the way the Nix modules make one from store paths. `host` is the
//! entry; `worker` the reference worker, one module per component; `control_plane` the
//! reference control plane; `mirror` containerd's registry mirrors. The plan format itself is
//! the builder's (`diskless_builder::plan`). See README.md.

pub mod base;
pub mod control_plane;
pub mod entries;
pub mod error;
pub mod host;
pub mod kernel_modules;
pub mod machine;
pub mod mirror;
pub mod options;
pub mod worker;

pub use error::HostPlanError;
pub use host::host_plan;
