//! Every entry a boot server serves (`diskless_publish::entries`: `<image>.ipxe`,
//! `hosts/<mac>.ipxe`, `menu.ipxe`, `boot.ipxe`), rendered from a generation record and the
//! indexes it names, as read off DEST (serde, with the `Word`/`Words` checks). Property: each
//! entry is exactly the intended commands with the inputs as its words (see `src/lib.rs`), and
//! is written inside the boot server's directory.
#![no_main]

use diskless_builder::index::Index;
use diskless_builder::words::{Word, Words};
use diskless_fuzz::{check, check_path, fixed, words, Expect, Script, W};
use diskless_publish::{entries, format_utc, Additions, Generation, Indexes};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Input {
    generation: Generation,
    indexes: BTreeMap<String, Index>,
    #[serde(default)]
    cmdline: Vec<Words>,
    #[serde(default)]
    initrds: Vec<Word>,
}

fn menu(g: &Generation) -> Vec<Expect> {
    let mut e = vec![
        Expect::Comment("!ipxe".into()),
        Expect::Command(fixed("menu diskless images")),
        Expect::Command(fixed("item --gap Images:")),
    ];
    for (name, img) in &g.images {
        let mut item = vec![
            W::Fixed("item"),
            W::Positional(name.to_string()),
            W::Input(name.to_string()),
        ];
        item.extend(words(img.description.as_str()));
        item.extend(words(&format!(
            "({}, id {})",
            format_utc(img.published_at),
            &img.index[..12]
        )));
        e.push(Expect::Command(item));
    }
    e.push(Expect::Command(fixed("item --gap Tools:")));
    e.push(Expect::Command(fixed("item shell iPXE shell")));
    let mut choose = vec![
        W::Fixed("choose"),
        W::Fixed("--timeout"),
        W::Input((u64::from(g.menu_timeout) * 1000).to_string()),
    ];
    if let Some(default) = g.default_image.as_ref().or_else(|| g.images.keys().next()) {
        choose.push(W::Fixed("--default"));
        choose.push(W::Positional(default.to_string()));
    }
    choose.extend(fixed("target || goto shell"));
    e.push(Expect::Command(choose));
    e.push(Expect::Command(fixed(
        "iseq ${target} shell && goto shell ||",
    )));
    e.push(Expect::Command(fixed(
        "chain --autofree ${target}.ipxe || goto shell",
    )));
    e.push(Expect::Label("shell"));
    e.push(Expect::Command(fixed("shell")));
    e
}

fn boot(default: Option<&Word>) -> Vec<Expect> {
    let mut e = vec![
        Expect::Comment("!ipxe".into()),
        Expect::Comment(
            " diskless boot entry: hosts/<mac>.ipxe for known machines, else the default.".into(),
        ),
        Expect::Command(fixed("echo diskless: looking for hosts/${mac:hexhyp}.ipxe")),
        Expect::Command(fixed(
            "chain --autofree hosts/${mac:hexhyp}.ipxe || goto fallback",
        )),
        Expect::Label("fallback"),
    ];
    match default {
        Some(image) => {
            let mut c = fixed("chain --autofree");
            c.push(W::Positional(format!("{image}.ipxe")));
            c.extend(fixed("|| chain --autofree menu.ipxe"));
            e.push(Expect::Command(c));
        }
        None => e.push(Expect::Command(fixed("chain --autofree menu.ipxe"))),
    }
    e.push(Expect::Command(fixed(
        "echo diskless: no entry could be loaded",
    )));
    e.push(Expect::Command(fixed("shell")));
    e
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let g = &input.generation;
    let indexes: Indexes = input
        .indexes
        .iter()
        .map(|(k, v)| (k.clone(), Ok(v.clone())))
        .collect();
    let add = Additions {
        cmdline: input.cmdline.clone(),
        initrds: input.initrds.clone(),
    };
    // Refusing (a host whose MAC or hostname is off, a missing index) is always allowed.
    let Ok(out) = entries(g, &indexes, &add) else {
        return;
    };
    let extra_cmdline = input.cmdline.iter().map(Words::as_str);
    assert_eq!(out.images.len(), g.images.len());
    for ((path, text), (name, img)) in out.images.iter().zip(&g.images) {
        check_path(path);
        assert_eq!(path, &format!("{name}.ipxe"));
        let index = &input.indexes[&img.index];
        let expected = Script {
            name: index.name.as_str(),
            description: index.description.as_str(),
            comment: None,
            index_sha256: &img.index,
            base: "",
            kernel_sha256: &index.kernel.sha256,
            cmdline: std::iter::once(index.cmdline.as_str())
                .chain(extra_cmdline.clone())
                .collect(),
            segments: index.segments.iter().map(|s| s.sha256.as_str()).collect(),
            initrds: input.initrds.iter().map(|i| i.to_string()).collect(),
        };
        check(path, text, &expected.expect());
    }
    assert_eq!(out.hosts.len(), g.hosts.len());
    for ((path, text), (mac, h)) in out.hosts.iter().zip(&g.hosts) {
        check_path(path);
        assert_eq!(path, &format!("hosts/{mac}.ipxe"));
        let img = &g.images[h.image.as_str()];
        let index = &input.indexes[&img.index];
        let comment = format!("host {} ({mac})", h.hostname);
        let expected = Script {
            name: index.name.as_str(),
            description: index.description.as_str(),
            comment: Some(&comment),
            index_sha256: &img.index,
            base: "../",
            kernel_sha256: &index.kernel.sha256,
            cmdline: [index.cmdline.as_str(), h.kernel_args.as_str()]
                .into_iter()
                .chain(extra_cmdline.clone())
                .collect(),
            segments: index.segments.iter().map(|s| s.sha256.as_str()).collect(),
            initrds: std::iter::once(format!("../objects/{}", h.node_segment.sha256))
                .chain(input.initrds.iter().map(|i| format!("../{i}")))
                .collect(),
        };
        check(path, text, &expected.expect());
    }
    let shared: BTreeMap<&str, &str> = out
        .shared
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    assert_eq!(shared.len(), 2);
    check("menu.ipxe", shared["menu.ipxe"], &menu(g));
    check(
        "boot.ipxe",
        shared["boot.ipxe"],
        &boot(g.default_image.as_ref()),
    );
});
