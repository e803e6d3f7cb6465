//! The plan reader (`Plan::parse`, what `diskless build` reads first). Property: a plan that
//! parses survives its canonical JSON (the input of the plan digest in every index) unchanged.
#![no_main]

use diskless_builder::plan::Plan;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // `Plan::load` reads with `read_to_string`: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("plan.json");
    if let Ok(plan) = Plan::parse(text, path) {
        let again = Plan::parse(&plan.canonical_json(), path)
            .unwrap_or_else(|e| panic!("canonical JSON of a parsed plan does not parse: {e}"));
        assert_eq!(again, plan, "canonical JSON changes the plan");
    }
});
