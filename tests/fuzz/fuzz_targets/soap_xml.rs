//! Fuzz target: the hardened XML reader and the SOAP envelope reader
//! (`penghubung_adapter_soap::xml::parse`, `Envelope::read`).
//!
//! Input: any bytes, read as a document under small limits. Checks, beyond "never panics":
//! an accepted document respects every limit (depth, attributes, elements); the element
//! offsets lie inside the input on character boundaries, a start tag begins with `<` and ends
//! with `>`; no DTD is ever accepted; an envelope read as SOAP 1.1 and 1.2 names the same
//! operation when both versions accept it (they cannot: the namespaces differ, so at most one
//! does); a UsernameToken injected into an accepted envelope leaves an envelope with the same
//! operation and a Security header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_adapter_soap::envelope::{Envelope, Version};
use penghubung_adapter_soap::xml::{parse, Element, Limits};

fn check(e: &Element, text: &str, depth: usize, limits: &Limits, count: &mut usize) {
    *count += 1;
    assert!(depth <= limits.max_depth, "depth {depth}");
    assert!(e.attributes.len() <= limits.max_attributes);
    assert!(e.start < e.start_end && e.start_end <= e.end && e.end <= text.len());
    let tag = &text[e.start..e.start_end];
    assert!(tag.starts_with('<') && tag.ends_with('>'), "{tag:?}");
    for c in &e.children {
        assert!(c.start >= e.start_end && c.end <= e.end);
        check(c, text, depth + 1, limits, count);
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 12,
        max_attributes: 8,
        max_elements: 500,
    };
    if let Ok(root) = parse(data, &limits) {
        let text = std::str::from_utf8(data).expect("accepted documents are UTF-8");
        assert!(!text.contains("<!DOCTYPE"), "a DTD was accepted");
        let mut count = 0;
        check(&root, text, 1, &limits, &mut count);
        assert!(count <= limits.max_elements);
    }
    let v11 = Envelope::read(data, Version::V11, &limits);
    let v12 = Envelope::read(data, Version::V12, &limits);
    assert!(!(v11.is_ok() && v12.is_ok()), "one envelope, two versions");
    for (version, read) in [(Version::V11, v11), (Version::V12, v12)] {
        let Ok(envelope) = read else { continue };
        let token = penghubung_adapter_soap::wsse::UsernameToken::new("u", "p<&>");
        let injected = token.inject(data, &envelope);
        let big = Limits {
            max_depth: limits.max_depth + 3,
            max_attributes: limits.max_attributes.max(2),
            max_elements: limits.max_elements + 10,
            max_bytes: limits.max_bytes * 2,
        };
        let again = Envelope::read(&injected, version, &big).expect("the injected envelope reads");
        assert_eq!(again.operation, envelope.operation);
        assert!(again.has_security_header());
    }
});
