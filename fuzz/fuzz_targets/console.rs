//! The console line parsers the harness judges boots with (`diskless:` stage lines,
//! `diskless-check:` results, `diskless-check-json:` lines, check modes, stage names), fed
//! every line of the input as a serial console would deliver it (lossy UTF-8).
#![no_main]

use diskless_contract::console::{parse_check_json, CheckLine, CheckMode, Stage, StageLine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        if let Some(s) = StageLine::parse(line) {
            // What the init prints for a parsed line is a stage line again, of the same stage.
            let again = StageLine::parse(&s.render()).expect("a rendered stage line parses");
            assert_eq!(again.stage.name(), s.stage.name());
            let _ = s.stage.fatal();
        }
        if let Some(c) = CheckLine::parse(line) {
            let _ = CheckLine::parse(&c.render()).expect("a rendered check line parses");
        }
        let _ = parse_check_json(line);
        let _ = CheckMode::parse(line);
        let _ = Stage::from_name(line).fatal();
    }
});
