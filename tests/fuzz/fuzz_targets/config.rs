//! Fuzz target: the configuration file (`config::parse` then `config::validate::issues`).
//!
//! Input: a TOML document (lossy UTF-8). Checks, beyond "never panics" (neither the parser
//! nor the pure validator may panic on any document): every issue the validator reports has
//! a non-empty field path and message, and validating the same config twice gives the same
//! issues (the validator is pure).
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung::config::{parse, validate::issues};

fuzz_target!(|data: &[u8]| {
    // Real configs are small; bound the work per input so the fuzzer explores breadth.
    if data.len() > 64 * 1024 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let Ok(config) = parse(&text, "fuzz.toml") else {
        return;
    };
    let (settings, catalog) = config.split();
    let found = issues(&settings, &catalog);
    for issue in &found {
        assert!(!issue.path.is_empty(), "issue without a path: {issue:?}");
        assert!(!issue.message.is_empty(), "issue without a message: {issue:?}");
    }
    assert_eq!(issues(&settings, &catalog), found, "validate is not pure");
});
