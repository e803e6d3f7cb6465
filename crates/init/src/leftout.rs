//! What a node leaves out of its image at boot (an image or a segment whose `condition_path`
//! is absent): its files are deleted, so the RAM they hold on the initramfs or the tmpfs root is
//! returned, and one line says what and how much.

/// Deletes `files` and describes it: `<kind> left out: <name> (<path> absent), …; N MB <freed>`.
/// `left` pairs each name with its condition path. Files already gone count as 0 bytes.
pub fn remove<P: AsRef<std::path::Path>>(
    kind: &str,
    left: &[(&str, Option<&str>)],
    files: impl IntoIterator<Item = P>,
    freed: &str,
) -> String {
    let mut bytes = 0u64;
    for file in files {
        bytes += std::fs::metadata(&file).map_or(0, |m| m.len());
        let _ = std::fs::remove_file(file);
    }
    let what: Vec<String> = left
        .iter()
        .map(|(name, path)| format!("{name} ({} absent)", path.unwrap_or_default()))
        .collect();
    format!(
        "{kind} left out: {}; {:.1} MB {freed}",
        what.join(", "),
        bytes as f64 / 1e6
    )
}
