//! Fuzz target: mediation templates and element paths (`penghubung_adapter_soap::mediation`).
//!
//! Input: `template` NUL `json` (NUL `path`). Checks, beyond "never panics": a template that
//! parses, filled from any JSON object it accepts, is one well-formed element of the operation
//! under the hardened reader, and wrapped in an envelope it reads back as that operation; the
//! string values of the JSON come back out of the element text unchanged (no injection); an
//! element path that parses prints back to a path that parses to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_adapter_soap::envelope::{Envelope, Version};
use penghubung_adapter_soap::mediation::{envelope, ElementPath, Template};
use penghubung_adapter_soap::xml::{parse, Limits};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let template = parts.next().unwrap_or_default();
    let json = parts.next().unwrap_or("{}");
    let path = parts.next().unwrap_or("Op/x");
    if let Ok(p) = ElementPath::parse(path) {
        assert_eq!(
            ElementPath::parse(&p.to_string()).as_ref(),
            Ok(&p),
            "{path:?}"
        );
    }
    let limits = Limits::default();
    let Ok(t) = Template::parse(template, "Op", &limits) else {
        return;
    };
    let Ok(input) = serde_json::from_str::<serde_json::Value>(json) else {
        return;
    };
    let Ok(filled) = t.render(&input) else {
        return;
    };
    let root = parse(filled.as_bytes(), &limits).expect("a filled template is well-formed");
    assert_eq!(root.local, "Op");
    let doc = envelope(Version::V11, &filled);
    let read = Envelope::read(doc.as_bytes(), Version::V11, &limits).expect("reads as an envelope");
    assert_eq!(read.operation, "Op");
    // A string value placed alone in an element's text comes back unchanged.
    if let Some(serde_json::Value::String(s)) = input.get("v") {
        if template == "<Op>{{v}}</Op>" {
            assert_eq!(&root.text, s);
        }
    }
});
