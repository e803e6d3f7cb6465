//! The PID 1 of a diskless image, as a library for its two binaries: `diskless-init` (the init
//! itself, `src/main.rs`, whose `main` is the boot sequence) and `diskless-check` (the check
//! hook, added to a boot only by `diskless check`). One module per concern; what the image
//! promises (`/.diskless/image.json`, `node.json`, the console lines) comes from
//! `diskless_contract`. See README.md.

pub mod apiclient;
pub mod cmdline;
pub mod controlplane;
pub mod images;
pub mod integrity;
pub mod kubeletconf;
pub mod leftout;
pub mod log;
pub mod machineid;
pub mod modules;
pub mod mounts;
pub mod network;
pub mod node;
pub mod podroutes;
pub mod prefetch;
pub mod run;
pub mod services;
pub mod servingcert;
pub mod squashfs;
pub mod supervisor;
pub mod switchroot;
pub mod sys;
pub mod sysctl;
