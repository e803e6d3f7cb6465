//! The kernel image a plan names must be one a boot loader can start: an x86 bzImage (the
//! boot protocol's `HdrS` magic at 0x202) or an arm64 `Image` (`ARM\x64` at 0x38). Anything else
//! (a text file, a vmlinux ELF, a compressed vmlinuz.gz) would build, publish and then fail on
//! every machine at `boot`, so it is refused here with what was found instead.

use std::io::Read;
use std::path::Path;

/// Which kernel format `path` holds, by its header.
pub fn check(path: &Path) -> Result<&'static str, String> {
    let mut head = Vec::with_capacity(0x206);
    std::fs::File::open(path)
        .and_then(|f| f.take(0x206).read_to_end(&mut head))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return Ok("x86 bzImage");
    }
    if head.get(0x38..0x3c) == Some(b"ARM\x64") {
        return Ok("arm64 Image");
    }
    let found = match head.as_slice() {
        [0x7f, b'E', b'L', b'F', ..] => "an ELF file (vmlinux?); use the bzImage",
        [0x1f, 0x8b, ..] => "a gzip file; use the kernel image itself",
        [] => "an empty file",
        _ => "no kernel boot header",
    };
    Err(format!(
        "{} is not a bootable kernel image (x86 bzImage or arm64 Image): {found}",
        path.display()
    ))
}

/// A file with just enough of a bzImage header to pass [`check`], for tests that build images
/// they never boot.
pub fn fake_for_tests() -> Vec<u8> {
    let mut k = vec![0u8; 0x206];
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k.extend_from_slice(b"not a real kernel");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_told_from_other_files() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        assert_eq!(check(&write("bz", &fake_for_tests())), Ok("x86 bzImage"));
        let mut arm = vec![0u8; 0x40];
        arm[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(check(&write("arm", &arm)), Ok("arm64 Image"));
        for (name, bytes, why) in [
            ("text", &b"kernel bytes"[..], "no kernel boot header"),
            ("elf", &b"\x7fELF\x02\x01"[..], "vmlinux"),
            ("gz", &b"\x1f\x8b\x08"[..], "gzip"),
            ("empty", &b""[..], "empty"),
        ] {
            let e = check(&write(name, bytes)).unwrap_err();
            assert!(e.contains(name) && e.contains(why), "{e}");
        }
    }
}
