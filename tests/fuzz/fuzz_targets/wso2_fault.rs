//! Fuzz target: the WSO2 fault body parser of the SPLP adapter
//! (`penghubung_adapter_splp::wso2::parse_fault`), which reads what a peer SPL answers.
//!
//! Checks, beyond "never panics": parsing is deterministic; an accepted fault's message has at
//! most 200 characters and no control characters; a body over the size bound is never parsed;
//! the code classifies without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_adapter_splp::wso2::{parse_fault, MAX_FAULT_BODY};

fuzz_target!(|data: &[u8]| {
    let first = parse_fault(data);
    assert_eq!(first, parse_fault(data), "parse_fault is not deterministic");
    if let Some(fault) = first {
        assert!(data.len() <= MAX_FAULT_BODY);
        assert!(fault.message.chars().count() <= 200);
        assert!(!fault.message.chars().any(char::is_control));
        let _ = fault.class();
    }
});
