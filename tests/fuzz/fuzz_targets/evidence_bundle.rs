//! Fuzz target: the evidence bundle parser and checker (`cli::check_bundle_bytes`).
//!
//! Input: bundle JSON. Checks, beyond "never panics": the verdict is deterministic, and a
//! bundle accepted without trust anchors has at least one record and names an exchange.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_evidence::cli::{check_bundle_bytes, Bundle};
use penghubung_evidence::verify::VerifyOptions;

fuzz_target!(|data: &[u8]| {
    let opts = VerifyOptions::default();
    let a = check_bundle_bytes(data, &opts).expect("default options");
    let b = check_bundle_bytes(data, &opts).expect("default options");
    assert_eq!(a.result, b.result, "verdict is not deterministic");
    if a.result.is_ok() {
        let bundle: Bundle = serde_json::from_slice(data).expect("accepted bundle parses");
        assert!(!bundle.records.is_empty());
        assert!(!bundle.exchange_id.is_empty());
    }
});
