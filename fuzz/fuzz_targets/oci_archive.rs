//! Image archive ingestion as `diskless build` does it for a plan's `images[]`: the input is
//! the archive file (tar, gzip or zstd tar: docker-archive or OCI archive), streamed into a
//! fresh blob cache, then read as an OCI layout or docker-archive with every blob verified.
//! Nothing may panic or hang; errors are the only way out.
#![no_main]

use diskless_builder::plan::PreloadImage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let archive = dir.path().join("image.tar");
    std::fs::write(&archive, data).expect("write the archive");
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
