//! What `publish`, `rollback`, `gc`, `verify --to` and the harness's readers return: the
//! errors of the steps they run (each module's own enum), and their own refusals. Messages
//! name the build output, DEST, the image or the inventory field, and what to do.

use crate::dest::DestError;
use crate::entries::EntryError;
use crate::generation::{GenerationError, IndexError};
use crate::inventory::InventoryError;
use crate::node::NodeError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Dest(#[from] DestError),
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Node(#[from] NodeError),

    #[error("{} does not exist: give the output directory of `diskless build`", out.display())]
    NoBuildOutput { out: PathBuf },
    #[error("cannot read build output {}: {cause}", out.display())]
    ReadBuildOutput { out: PathBuf, cause: std::io::Error },
    /// An index of the build output that does not load (the message is the builder's).
    #[error("{0}")]
    BuildIndex(String),
    #[error(
        "{} holds the index of image {name:?}: publish it as {name}.json, as `diskless build` wrote it",
        path.display()
    )]
    RenamedIndex { path: PathBuf, name: String },
    #[error(
        "{} is not a complete build output: {problems}; rebuild it (`diskless verify {}` lists every problem)",
        out.display(),
        out.display()
    )]
    Incomplete { out: PathBuf, problems: String },
    #[error("{} holds no image index (<name>.json): is it the output of `diskless build`?", out.display())]
    NoImages { out: PathBuf },
    /// DEST holds files publish did not write (`listed` names a few).
    #[error(
        "{dest} is not empty and is not a diskless boot server (it has no generations/ record): \
         it holds {listed}, which publish could overwrite. Publish to an empty or new directory, \
         or move those files away first"
    )]
    Foreign { dest: String, listed: String },
    #[error("inventory default_image: {0}")]
    DefaultImage(String),

    #[error("nothing has been published here yet")]
    NothingPublished,
    #[error("image {image:?} is not published in {dest}")]
    NotPublished { image: String, dest: String },
    #[error("no earlier version of {image} is recorded to roll back to")]
    NoEarlierVersion { image: String },
    #[error("cannot roll back {image}: {cause}")]
    RollbackIndex { image: String, cause: IndexError },
    #[error("cannot roll back {image}: object {object} was garbage-collected")]
    Collected { image: String, object: String },
    #[error("--keep must be at least 1: the current generation is always kept")]
    KeepNone,

    /// A local DEST's objects could not be checked (the message is the builder's).
    #[error("{0}")]
    VerifyObjects(String),
    #[error("{} has no generations/: publish to it first", dest.display())]
    NoGenerations { dest: PathBuf },
}

impl PublishError {
    /// Whether this machine lacks something (an ssh client, kubectl, etcdctl), rather than the
    /// input being wrong or a check failing: the CLI gives it its own exit code.
    pub fn is_environment(&self) -> bool {
        match self {
            PublishError::Dest(e) => e.is_environment(),
            PublishError::Generation(e) => e.is_environment(),
            PublishError::Node(e) => e.is_environment(),
            _ => false,
        }
    }
}
