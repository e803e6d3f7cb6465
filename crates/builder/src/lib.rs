//! diskless-builder: reproducible, content-addressed initramfs images for diskless Kubernetes
//! workers. The modules below are listed in the order a build runs them; `pipeline` runs them,
//! and the last group reads what they wrote. The builder → init contract's types live in the
//! `diskless-contract` crate, which the init shares. README.md tells the whole story.

// 1. What the user writes.
/// The plan (format v1) as the Nix modules and `diskless plan --host` write it, with its defaults.
pub mod plan;
/// Checked words: the only strings a kernel command line or an iPXE script is written from,
/// checked where they enter (plan, index, inventory), so every later step takes them as they are.
pub mod words;

// 2. Plan → checked trees.
/// Container images enter as trees through a trait the `oci` crate implements.
pub mod preload;
/// Every component becomes a checked [`tree::Tree`]: ELF closures (`resolve::elf`), kernel
/// modules (`resolve::kmod`, `resolve::modfile`) and the kernel image (`resolve::bzimage`).
pub mod resolve;
/// The tree a component becomes: the one type every later step reads.
pub mod tree;

// 3. Trees → segments.
/// One reproducible newc cpio archive per tree: everything host-specific is fixed there.
pub mod segment;
/// The read-only part of a squashfs-packed component as one squashfs image inside its segment.
pub mod squashfs;

// 4. Segments → compressed bytes.
/// zstd, gzip or none, per segment; `--jobs` never changes the bytes.
pub mod compress;

// 5. Compressed bytes → stored objects.
/// `objects/<sha256>` in the output directory, the segment cache, atomic writes.
pub mod store;

// 6. Objects → what a boot loader reads.
/// The image index: the one document that names the kernel and the segments in boot order.
pub mod index;
/// The iPXE entry for the index; every string in it is a checked word.
pub mod ipxe;

// Runs 2 to 6 and writes the output atomically.
/// `diskless build`.
pub mod pipeline;

// Read what a build wrote.
/// `diskless cache gc`: least recently used entries of the caches go first.
pub mod cachegc;
/// `diskless inspect`: what an image contains, from its stored objects.
pub mod inspect;
/// `diskless verify`: every object hashes to its name, every reference resolves.
pub mod verify;
