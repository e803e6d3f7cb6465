//! The generation record: one JSON file per publish in `DEST/generations/`, from which every
//! entry is rendered; reading records and the image indexes they name; what they reference.

use crate::dest::{Dest, DestError, Snapshot};
use diskless_builder::index::{sha256_hex, Artifact, Index};
use diskless_builder::words::{Word, Words};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const GENERATION_VERSION: u32 = 1;

/// One publish: what the boot server serves, all of it derived from this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    pub version: u32,
    pub number: u64,
    /// Seconds since 1970 (publishing is an event; its time is not part of any image).
    pub published_at: u64,
    /// Image names, descriptions and kernel arguments are iPXE-safe by type (`Word`, `Words`):
    /// a record edited by hand cannot put commands into the entries rendered from it.
    pub images: BTreeMap<Word, PublishedImage>,
    pub default_image: Option<Word>,
    pub menu_timeout: u32,
    /// By normalized MAC (`52-54-00-12-34-56`).
    pub hosts: BTreeMap<String, PublishedHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedImage {
    /// sha256 of the image index.
    #[serde(deserialize_with = "sha256_hex")]
    pub index: String,
    pub description: Words,
    /// When this index was first published.
    pub published_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedHost {
    pub hostname: String,
    pub image: Word,
    pub kernel_args: Words,
    /// The per-node segment (identity and secrets), served only through this host's entry.
    pub node_segment: Artifact,
    /// sha256 of what went into the node segment, to reuse it when nothing changed.
    pub inputs: String,
}

/// `2026-11-24 23:05 UTC` from seconds since 1970 (civil-from-days, Howard Hinnant).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// A generation record that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(
        "{dest}/{name} is not a generation record (damaged, edited, or written by a version of \
         diskless that allowed iPXE syntax in names and descriptions): restore it, or move it \
         away (it is needed only to roll back to it): {cause}"
    )]
    Damaged {
        dest: String,
        name: String,
        cause: serde_json::Error,
    },
    #[error("cannot record generation {number} in {dest}: {cause}")]
    Record {
        number: u64,
        dest: String,
        cause: DestError,
    },
    #[error(transparent)]
    Dest(#[from] DestError),
}

impl GenerationError {
    /// Whether the machine running publish lacks something (see [`DestError::is_environment`]).
    pub fn is_environment(&self) -> bool {
        match self {
            GenerationError::Record { cause, .. } | GenerationError::Dest(cause) => {
                cause.is_environment()
            }
            GenerationError::Damaged { .. } => false,
        }
    }
}

/// An image index a generation names that is not there to render or count it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    /// Present but not an index (the message says which object and why).
    #[error("{0}")]
    Unreadable(String),
    #[error("image index objects/{sha} is missing")]
    Missing { sha: String },
}

/// Every record in `snap`, oldest first.
pub(crate) fn read_generations(
    dest: &Dest,
    snap: &Snapshot,
) -> Result<Vec<Generation>, GenerationError> {
    let mut gens = Vec::new();
    for (name, bytes) in &snap.texts {
        if !name.starts_with("generations/") {
            continue;
        }
        gens.push(
            serde_json::from_slice::<Generation>(bytes).map_err(|cause| {
                GenerationError::Damaged {
                    dest: dest.name(),
                    name: name.clone(),
                    cause,
                }
            })?,
        );
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

/// Image indexes by digest, as read from DEST (an unreadable one keeps its error for later).
pub type Indexes = BTreeMap<String, Result<Index, String>>;

/// Reads the indexes `shas` from DEST's objects in one batch, adding them to `indexes`.
pub(crate) fn read_indexes(
    dest: &Dest,
    indexes: &mut Indexes,
    shas: impl IntoIterator<Item = String>,
) -> Result<(), DestError> {
    let wanted: Vec<String> = shas
        .into_iter()
        .filter(|s| !indexes.contains_key(s))
        .map(|s| diskless_builder::store::object_path(&s))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for (rel, bytes) in dest.read(&wanted)? {
        let sha = rel.trim_start_matches("objects/").to_string();
        let index = serde_json::from_slice::<Index>(&bytes).map_err(|e| {
            format!(
                "{rel} is not an image index of version {}: {e}",
                diskless_builder::index::INDEX_VERSION
            )
        });
        indexes.insert(sha, index);
    }
    Ok(())
}

pub(crate) fn index_of<'a>(indexes: &'a Indexes, sha: &str) -> Result<&'a Index, IndexError> {
    match indexes.get(sha) {
        Some(Ok(index)) => Ok(index),
        Some(Err(e)) => Err(IndexError::Unreadable(e.clone())),
        None => Err(IndexError::Missing {
            sha: sha.to_string(),
        }),
    }
}

/// Every object a generation needs.
pub(crate) fn referenced(
    indexes: &Indexes,
    g: &Generation,
) -> Result<BTreeSet<String>, IndexError> {
    let mut set = BTreeSet::new();
    for img in g.images.values() {
        set.insert(img.index.clone());
        let index = index_of(indexes, &img.index)?;
        set.extend(index.objects().into_iter().map(|o| o.sha256.to_string()));
    }
    set.extend(g.hosts.values().map(|h| h.node_segment.sha256.clone()));
    Ok(set)
}

/// Writes `g`'s record atomically; entries rendered from it may only follow.
pub(crate) fn record(dest: &Dest, g: &Generation) -> Result<(), GenerationError> {
    let mut json = serde_json::to_vec_pretty(g).expect("a generation record always serializes");
    json.push(b'\n');
    dest.write(&format!("generations/{}.json", g.number), &json)
        .map_err(|cause| GenerationError::Record {
            number: g.number,
            dest: dest.name(),
            cause,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::format_utc(1_795_999_500), "2026-11-30 00:45 UTC");
    }
}
