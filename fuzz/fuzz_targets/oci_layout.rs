//! The OCI layout readers (`index.json` → nested indexes → manifest → config → layers) and the
//! docker-archive reader (`manifest.json` → config → layers). A byte-level mutator cannot keep
//! the sha256 references between these documents intact, so the input is a list of files and
//! this target fixes the references up before it packs them into a tar archive:
//!
//! input = `name\0content\0name\0content…`; in each content, `@D<n>` becomes `sha256:<hex>`
//! of file n (0-based) and `@H<n>` its bare hex, `@S<n>` its size, for files after it (so
//! documents refer to the ones listed later: `index.json`, then the manifest, config, layers);
//! a name may also name its own file (`@H1.json`). Layers must be tar archives, which hold NUL
//! bytes: a content starting `@tar\n` becomes one, a line per entry: `path contents` a file,
//! `path -> target` a symlink, `path => target` a hard link, `path/` a directory.
//! A name `-` puts the file at `blobs/sha256/<its hex>`. `oci-layout` is added when missing.
#![no_main]

use diskless_builder::plan::PreloadImage;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

/// Replaces `@D<n>`, `@H<n>` and `@S<n>` by file n's digest, hex and size, for n in `later`.
fn fix_up(content: &[u8], later: &[(String, Vec<u8>)], offset: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut i = 0;
    while i < content.len() {
        if content[i] == b'@' && i + 2 < content.len() && b"DHS".contains(&content[i + 1]) {
            let digit = content[i + 2];
            if digit.is_ascii_digit() {
                let n = usize::from(digit - b'0');
                if let Some((hex, bytes)) = n.checked_sub(offset).and_then(|k| later.get(k)) {
                    match content[i + 1] {
                        b'D' => out.extend_from_slice(format!("sha256:{hex}").as_bytes()),
                        b'H' => out.extend_from_slice(hex.as_bytes()),
                        _ => out.extend_from_slice(bytes.len().to_string().as_bytes()),
                    }
                    i += 3;
                    continue;
                }
            }
        }
        out.push(content[i]);
        i += 1;
    }
    out
}

/// A layer from its `@tar` lines (see above). Names go into the header as they are (up to
/// ustar's 100 bytes): `tar::Builder` would refuse `..` and absolute names, which are exactly
/// what a hostile layer holds.
fn layer(lines: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = String::from_utf8_lossy(line);
        let (path, kind, data) = if let Some((p, t)) = line.split_once(" -> ") {
            (p, tar::EntryType::Symlink, t)
        } else if let Some((p, t)) = line.split_once(" => ") {
            (p, tar::EntryType::Link, t)
        } else if line.ends_with('/') {
            (&*line, tar::EntryType::Directory, "")
        } else {
            let (p, c) = line.split_once(' ').unwrap_or((&line, ""));
            (p, tar::EntryType::Regular, c)
        };
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o755);
        header.set_entry_type(kind);
        let raw = header.as_old_mut();
        let copy = |to: &mut [u8], from: &str| {
            let n = from.len().min(to.len());
            to[..n].copy_from_slice(&from.as_bytes()[..n]);
        };
        copy(&mut raw.name, path);
        let contents = if kind == tar::EntryType::Regular {
            data.as_bytes()
        } else {
            copy(&mut raw.linkname, data);
            &[]
        };
        header.set_size(contents.len() as u64);
        header.set_cksum();
        tar.append(&header, contents).expect("writing to memory");
    }
    tar.into_inner().expect("writing to memory")
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let mut files: Vec<(&[u8], &[u8])> = Vec::new();
    while let (Some(name), Some(content)) = (parts.next(), parts.next()) {
        files.push((name, content));
    }
    if files.len() > 10 {
        return;
    }
    // Fixed up from the last file to the first: (hex, bytes) of files[i..].
    let mut done: Vec<(String, Vec<u8>)> = Vec::new();
    let mut names = Vec::new();
    for (i, (name, content)) in files.iter().enumerate().rev() {
        let mut bytes = fix_up(content, &done, i + 1);
        if let Some(lines) = bytes.strip_prefix(b"@tar\n") {
            bytes = layer(lines);
        }
        let hex = hex::encode(Sha256::digest(&bytes));
        done.insert(0, (hex.clone(), bytes));
        // A name may refer to its own file too (`@H1.json` for docker-archive's configs).
        let name = match *name {
            b"-" => format!("blobs/sha256/{hex}"),
            n => String::from_utf8_lossy(&fix_up(n, &done, i)).into_owned(),
        };
        names.insert(0, name);
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Names a ustar header cannot hold are not archives anyone can write.
        if tar.append_data(&mut header, name, bytes).is_err() {
            return false;
        }
        true
    };
    if !names
        .iter()
        .any(|n| n == "oci-layout" || n == "manifest.json")
        && !add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
    {
        return;
    }
    for (name, (_, bytes)) in names.iter().zip(&done) {
        if !add(name, bytes) {
            return;
        }
    }
    let Ok(bytes) = tar.into_inner() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, bytes).expect("write the archive");
    let image = PreloadImage {
        name: "fuzz".into(),
        archive,
        refs: vec!["docker.io/library/fuzz:latest".into()],
        labels: Default::default(),
        deferred: false,
        condition_path: None,
    };
    let _ = diskless_oci::image_segments_with_cache(&[image], &dir.path().join("cache"));
});
