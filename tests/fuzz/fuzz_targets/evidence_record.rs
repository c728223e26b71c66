//! Fuzz target: the strict evidence record decoder (`penghubung_evidence::decode`).
//!
//! Input: the bytes of one stored record. Checks, beyond "never panics": decoding is
//! deterministic; an accepted record has exactly one kind; an accepted checkpoint goes through
//! the checkpoint verdict (digests, status/token rules, signature with the embedded leaf)
//! without panicking, and an anchor built from it checks against its own record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung_evidence::decode::decode_record;
use penghubung_evidence::schema::record::Kind;
use penghubung_evidence::verify::{check_checkpoint, Anchor, CheckContext, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let first = decode_record(data);
    let second = decode_record(data);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.record, b.record);
            assert_eq!(a.unknown_fields, b.unknown_fields);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("decode is not deterministic"),
    }
    let Ok(decoded) = first else {
        return;
    };
    let kind = decoded.record.kind.as_ref().expect("accepted record has a kind");
    if let Kind::Checkpoint(cp) = kind {
        let ctx = CheckContext::new(&VerifyOptions::default()).expect("default options");
        let _ = check_checkpoint(&ctx, &decoded.record.node_id, cp);
        let anchor = Anchor::from_record(data).expect("a checkpoint makes an anchor");
        assert!(anchor.head().is_some(), "anchor disagrees with its own record");
    }
});
