//! Fuzz target: the RFC 3161 parsers (`tsa::token_from_response`, `tsa::parse_token`,
//! `tsa::parse_tst_info`) and the token verifier.
//!
//! Input: DER bytes, tried as a TimeStampResp, a TimeStampToken and a TSTInfo. Checks, beyond
//! "never panics": parsing is deterministic, and with no trust anchor no token verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_evidence::pki::PathPolicy;
use penghubung_evidence::tsa;

fuzz_target!(|data: &[u8]| {
    assert_eq!(tsa::token_from_response(data), tsa::token_from_response(data));
    let _ = tsa::parse_tst_info(data);
    if let Ok(t) = tsa::parse_token(data) {
        let _ = tsa::parse_tst_info(t.tst_info);
        assert!(!t.signed_attrs.is_empty());
    }
    let none = PathPolicy::tsa(Vec::new(), Vec::new());
    assert!(tsa::verify_token_with(data, &[0; 32], &none, &[], None).is_err());
});
