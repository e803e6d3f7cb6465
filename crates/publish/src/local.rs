//! A boot server directory on this machine as the harness reads it: its generation records,
//! and the entries of the newest one rendered afresh with the check hook's additions (what
//! `diskless check --server` serves). Above `generation` and `entries`, which do not know it.

use crate::dest::Dest;
use crate::entries::{self, Additions};
use crate::error::PublishError;
use crate::generation::{read_generations, read_indexes, Generation, Indexes};
use std::path::Path;

/// Every entry of a local boot server directory's newest generation, rendered afresh with
/// `add` (the harness's check hook): what `diskless check --server` serves.
pub fn local_entries(dest: &Path, add: &Additions) -> Result<Vec<(String, String)>, PublishError> {
    let d = Dest::Local(dest.to_owned());
    let snap = d.snapshot()?;
    let g = read_generations(&d, &snap)?
        .pop()
        .ok_or_else(|| PublishError::NoGenerations {
            dest: dest.to_owned(),
        })?;
    let mut indexes = Indexes::new();
    read_indexes(&d, &mut indexes, g.images.values().map(|i| i.index.clone()))?;
    let e = entries::entries(&g, &indexes, add)?;
    Ok(e.images
        .into_iter()
        .chain(e.hosts)
        .chain(e.shared)
        .collect())
}

/// The generation records of a local boot server directory, oldest first.
pub fn generations(dest: &Path) -> Result<Vec<Generation>, PublishError> {
    let dest = Dest::Local(dest.to_owned());
    Ok(read_generations(&dest, &dest.snapshot()?)?)
}
