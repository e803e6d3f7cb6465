//! Every entry a boot server serves, rendered from a generation record alone: `<image>.ipxe`,
//! `hosts/<mac>.ipxe` (the image's entry plus the host's kernel arguments and node segment),
//! `menu.ipxe` and `boot.ipxe`. Pure, so publish, rollback and the harness render the same text.

use crate::generation::{format_utc, index_of, Generation, IndexError, Indexes};
use diskless_builder::ipxe::{script, Extra};
use diskless_builder::store::object_path;
use diskless_builder::words::{BaseUrl, Word, Words};
use diskless_contract::identity;

/// Additions to every image and host entry (the harness's check hook): kernel arguments, and
/// initrds named relative to the boot server's root.
#[derive(Debug, Clone, Default)]
pub struct Additions {
    pub cmdline: Vec<Words>,
    pub initrds: Vec<Word>,
}

/// A generation that cannot be rendered: a hand-edited record, or an index that is not there.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("host {mac:?} is not a normalized MAC (52-54-00-12-34-56)")]
    Mac { mac: String },
    #[error("host {mac}: {why}")]
    Hostname { mac: String, why: String },
    #[error("host {mac} boots image {image}, which is not published")]
    Unpublished { mac: String, image: Word },
    /// A name that would not be one iPXE word (the message says which).
    #[error("host {mac}: {why}")]
    Word { mac: String, why: String },
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A generation's entries as (path, text), in the groups publish writes in order.
pub struct Entries {
    pub images: Vec<(String, String)>,
    pub hosts: Vec<(String, String)>,
    pub shared: Vec<(String, String)>,
}

pub fn entries(g: &Generation, indexes: &Indexes, add: &Additions) -> Result<Entries, EntryError> {
    let mut images = Vec::new();
    for (name, img) in &g.images {
        let extra = Extra {
            comment: None,
            cmdline: add.cmdline.clone(),
            initrds: add.initrds.clone(),
        };
        let index = index_of(indexes, &img.index)?;
        images.push((
            format!("{name}.ipxe"),
            script(index, &img.index, &BaseUrl::default(), &extra),
        ));
    }
    let mut hosts = Vec::new();
    let host_base = BaseUrl::new("../").expect("a valid base");
    for (mac, h) in &g.hosts {
        // The key becomes a path: only the normalized form `mac` itself makes.
        if identity::mac(mac).ok().as_deref() != Some(mac.as_str()) {
            return Err(EntryError::Mac { mac: mac.clone() });
        }
        identity::hostname(&h.hostname).map_err(|why| EntryError::Hostname {
            mac: mac.clone(),
            why: why.into(),
        })?;
        let img = g
            .images
            .get(&h.image)
            .ok_or_else(|| EntryError::Unpublished {
                mac: mac.clone(),
                image: h.image.clone(),
            })?;
        let word = |why: String| EntryError::Word {
            mac: mac.clone(),
            why,
        };
        let index = index_of(indexes, &img.index)?;
        // The hostname travels in the node segment's node.json only; the node segment comes
        // after the image's own segments.
        let initrds = std::iter::once(object_path(&h.node_segment.sha256))
            .chain(add.initrds.iter().map(ToString::to_string))
            .map(|p| Word::new(format!("../{p}")).map_err(word))
            .collect::<Result<_, _>>()?;
        let extra = Extra {
            comment: Some(Words::new(format!("host {} ({mac})", h.hostname)).map_err(word)?),
            cmdline: std::iter::once(h.kernel_args.clone())
                .chain(add.cmdline.iter().cloned())
                .collect(),
            initrds,
        };
        hosts.push((
            format!("hosts/{mac}.ipxe"),
            script(index, &img.index, &host_base, &extra),
        ));
    }
    let shared = vec![
        ("menu.ipxe".to_string(), menu(g)),
        ("boot.ipxe".to_string(), boot(g.default_image.as_ref())),
    ];
    Ok(Entries {
        images,
        hosts,
        shared,
    })
}

/// `boot.ipxe`, the entry the DHCP server hands out: the machine's own entry when one exists,
/// else the default image, else the menu. Uses only commands the old iPXE builds in NIC ROMs
/// have (`chain`, `goto`, `${mac:hexhyp}`).
pub fn boot(default_image: Option<&Word>) -> String {
    let fallback = match default_image {
        Some(image) => format!("chain --autofree {image}.ipxe || chain --autofree menu.ipxe\n"),
        None => "chain --autofree menu.ipxe\n".to_string(),
    };
    format!(
        "#!ipxe\n# diskless boot entry: hosts/<mac>.ipxe for known machines, else the default.\n\
         echo diskless: looking for hosts/${{mac:hexhyp}}.ipxe\n\
         chain --autofree hosts/${{mac:hexhyp}}.ipxe || goto fallback\n\
         :fallback\n{fallback}\
         echo diskless: no entry could be loaded\nshell\n"
    )
}

/// `menu.ipxe`: every published image with its description, publish date and id.
pub fn menu(g: &Generation) -> String {
    let mut s = String::from("#!ipxe\nmenu diskless images\nitem --gap Images:\n");
    for (name, img) in &g.images {
        s.push_str(&format!(
            "item {name} {name}  {}  ({}, id {})\n",
            img.description,
            format_utc(img.published_at),
            &img.index[..12]
        ));
    }
    // No image, no `--default`: an empty one would make `target` the default and leave
    // `choose` without a setting name.
    let default = g
        .default_image
        .as_ref()
        .or_else(|| g.images.keys().next())
        .map_or(String::new(), |d| format!(" --default {d}"));
    s.push_str("item --gap Tools:\nitem shell iPXE shell\n");
    s.push_str(&format!(
        "choose --timeout {}{default} target || goto shell\n",
        u64::from(g.menu_timeout) * 1000
    ));
    s.push_str("iseq ${target} shell && goto shell ||\nchain --autofree ${target}.ipxe || goto shell\n:shell\nshell\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Found by the `ipxe_entries` fuzz target (fuzz/corpus/ipxe_entries/no-images.json): a
    /// generation without images wrote `--default  target`, which iPXE reads as the default
    /// `target` and no setting name.
    #[test]
    fn a_menu_without_images_has_no_default() {
        let g = Generation {
            version: 1,
            number: 1,
            published_at: 0,
            images: BTreeMap::new(),
            default_image: None,
            menu_timeout: 5,
            hosts: BTreeMap::new(),
        };
        let m = menu(&g);
        assert!(
            m.contains("\nchoose --timeout 5000 target || goto shell\n"),
            "{m}"
        );
        assert!(!m.contains("--default"), "{m}");
    }
}
