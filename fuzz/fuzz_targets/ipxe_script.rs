//! The image's iPXE entry (`diskless_builder::ipxe::script`), from an index as `publish` and
//! `verify` read it off disk (serde, with the `Word`/`Words` checks) and the additions a host
//! entry or the check hook make. Property: the script is exactly the intended commands, every
//! word an input, no input carrying iPXE syntax (see `src/lib.rs`).
#![no_main]

use diskless_builder::index::{is_sha256_hex, Index};
use diskless_builder::words::{BaseUrl, Word, Words};
use diskless_builder::ipxe::{script, Extra};
use diskless_fuzz::{check, Script};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    index: Index,
    index_sha256: String,
    base_url: String,
    #[serde(default)]
    comment: Option<Words>,
    #[serde(default)]
    cmdline: Vec<Words>,
    #[serde(default)]
    initrds: Vec<Word>,
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let Ok(base) = BaseUrl::new(input.base_url.clone()) else {
        return;
    };
    if !is_sha256_hex(&input.index_sha256) {
        return;
    }
    let extra = Extra {
        comment: input.comment.clone(),
        cmdline: input.cmdline.clone(),
        initrds: input.initrds.clone(),
    };
    let text = script(&input.index, &input.index_sha256, &base, &extra);
    let index = &input.index;
    let expected = Script {
        name: index.name.as_str(),
        description: index.description.as_str(),
        comment: input.comment.as_ref().map(Words::as_str),
        index_sha256: &input.index_sha256,
        base: &input.base_url,
        kernel_sha256: &index.kernel.sha256,
        cmdline: std::iter::once(index.cmdline.as_str())
            .chain(input.cmdline.iter().map(Words::as_str))
            .collect(),
        segments: index.segments.iter().map(|s| s.sha256.as_str()).collect(),
        initrds: input
            .initrds
            .iter()
            .map(|i| i.as_str().to_string())
            .collect(),
    };
    check("image entry", &text, &expected.expect());
});
