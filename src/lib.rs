//! diskless: build reproducible, content-addressed initramfs images for diskless Kubernetes
//! workers, and boot them in QEMU the way a lab machine does.
//!
//! The pipeline, one file per step:
//! `plan` (what the user writes) → `resolve` (checked tree per component: `elf`, `kmod`, `host`)
//! → `segment` (one reproducible newc cpio per component) → `compress` → `store`
//! (content-addressed objects, cache) → `index` + `ipxe` (what a boot loader reads).
//! `pipeline` runs these steps; `inspect` and `verify` read their output; `harness` boots it;
//! `oci` ingests container images for preloading; `publish` (with `inventory`) maintains a boot
//! server directory.

pub mod compress;
pub mod contract;
pub mod elf;
pub mod harness;
pub mod host;
pub mod index;
pub mod inspect;
pub mod inventory;
pub mod ipxe;
pub mod kmod;
pub mod oci;
pub mod pipeline;
pub mod plan;
pub mod publish;
pub mod resolve;
pub mod segment;
pub mod squashfs;
pub mod store;
pub mod verify;
