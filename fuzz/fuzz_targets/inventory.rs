//! The inventory reader (`Inventory::parse`: TOML, then every host's identity and iPXE rules).
//! Property: an accepted inventory serializes (`to_toml`, as the harness writes inventories)
//! to TOML that is accepted again as the same inventory.
#![no_main]

use diskless_publish::inventory::Inventory;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/lab/inventory.toml");
    if let Ok(inv) = Inventory::parse(text, path) {
        let again = Inventory::parse(&inv.to_toml(), path)
            .unwrap_or_else(|e| panic!("an accepted inventory's own TOML is refused: {e}"));
        assert_eq!(again, inv, "to_toml changes the inventory");
    }
});
