//! `diskless cache …`: argument parsing and printing only; the work is in `build::cachegc`.

use clap::{ArgGroup, Args, Subcommand};
use diskless_builder::cachegc::{gc, Policy};
use diskless_builder::store::Cache;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove least recently used cache entries (image blobs, compressed segments, reference
    /// images); never the Kubernetes stack.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("policy").required(true).args(["max_age", "keep_bytes"])))]
pub struct GcArgs {
    /// Cache directory (default: $XDG_CACHE_HOME/diskless or ~/.cache/diskless).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Remove entries not used for this many days.
    #[arg(long, value_name = "DAYS")]
    max_age: Option<u32>,
    /// Remove least recently used entries until at most N bytes remain.
    #[arg(long, value_name = "N")]
    keep_bytes: Option<u64>,
}

pub fn main(cmd: &CacheCommand) -> anyhow::Result<()> {
    match cmd {
        CacheCommand::Gc(a) => {
            let root = match &a.cache_dir {
                Some(d) => d.clone(),
                None => Cache::default_dir().ok_or_else(|| {
                    anyhow::anyhow!("neither XDG_CACHE_HOME nor HOME is set: give --cache-dir")
                })?,
            };
            let policy = match (a.max_age, a.keep_bytes) {
                (Some(days), _) => Policy::MaxAge(Duration::from_secs(u64::from(days) * 86_400)),
                (None, Some(n)) => Policy::KeepBytes(n),
                (None, None) => unreachable!("clap requires one policy"),
            };
            let now = SystemTime::now();
            let r = gc(&root, policy, now)?;
            for e in &r.removed {
                let days = now.duration_since(e.used).unwrap_or_default().as_secs() / 86_400;
                println!(
                    "removed {} ({} bytes, last used {days} days ago)",
                    e.path.display(),
                    e.bytes
                );
            }
            let sum = |v: &[diskless_builder::cachegc::CacheEntry]| {
                v.iter().map(|e| e.bytes).sum::<u64>()
            };
            println!(
                "{}: removed {} entries ({} bytes), kept {} entries ({} bytes)",
                root.display(),
                r.removed.len(),
                sum(&r.removed),
                r.kept.len(),
                sum(&r.kept)
            );
            Ok(())
        }
    }
}
