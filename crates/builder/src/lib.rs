//! diskless-builder: reproducible, content-addressed initramfs images for diskless Kubernetes
//! workers.
//!
//! The pipeline, one file per step:
//! `plan` (what the user writes; `host` makes one from this machine's packages) → `resolve`
//! (checked [`tree::Tree`] per component: `elf`, `kmod`) → `segment` (one reproducible newc
//! cpio per component; `squashfs` for packed ones) → `compress` → `store` (content-addressed
//! objects, cache) → `index` + `ipxe` (what a boot loader reads). `pipeline` runs these steps;
//! `inspect` and `verify` read their output. The builder → init contract's types live in the
//! `diskless-contract` crate, which the init shares.

pub mod bzimage;
pub mod cachegc;
pub mod compress;
pub mod elf;
pub mod index;
pub mod inspect;
pub mod ipxe;
pub mod kmod;
pub mod modfile;
pub mod pipeline;
pub mod plan;
pub mod preload;
pub mod resolve;
pub mod segment;
pub mod squashfs;
pub mod store;
pub mod tree;
pub mod verify;
