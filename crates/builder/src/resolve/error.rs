//! What can go wrong while resolving a plan; every message names the plan field or the entry's
//! origin (`components[2] (base).files[0]`) and the path at fault.

use super::elf::ElfError;
use super::kmod::KmodError;
use crate::compress::CompressError;
use crate::squashfs::codec::CodecError;
use std::path::PathBuf;

/// The ceiling on a symlink chain, as the kernel's (`MAXSYMLINKS` = 40).
pub(super) const MAX_HOPS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{origin}: cannot read {path}: {cause}")]
    Read {
        origin: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{origin}: {path} is a {kind}; only regular files, directories and symlinks go into an image")]
    FileType {
        origin: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{path} is written by {first} and by {second} with different {what}; remove one or make them identical")]
    Conflict {
        path: String,
        first: String,
        second: String,
        what: &'static str,
    },
    #[error("{origin}: symlink loop at {path} (more than {MAX_HOPS} links followed)")]
    Loop { origin: String, path: String },
    #[error("{origin}: {path} is {size} bytes; a cpio (newc) file holds at most 4 GiB - 1")]
    TooLarge {
        origin: String,
        path: String,
        size: u64,
    },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error(transparent)]
    Kmod(#[from] KmodError),
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(transparent)]
    SquashfsCodec(#[from] CodecError),
}

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> ResolveError {
    ResolveError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}
