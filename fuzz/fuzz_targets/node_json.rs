//! node.json as the init reads it (`NodeConfig::parse`). Property: an accepted configuration
//! serializes (as publish writes it) to JSON that is accepted again unchanged.
#![no_main]

use diskless_contract::node::NodeConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(node) = NodeConfig::parse(text) {
        let json = serde_json::to_string(&node).expect("a node config serializes");
        let again = NodeConfig::parse(&json)
            .unwrap_or_else(|e| panic!("an accepted node.json re-serialized is refused: {e}"));
        assert_eq!(again, node);
    }
});
