//! Fuzz target: the canonical request path (`admit::canonical`).
//!
//! Input: first byte selects `allow_raw` (low bit); the rest is the raw path, taken as UTF-8
//! (lossily, so every input reaches the code). Checks, beyond "never panics":
//! - a canonical path is ASCII, starts with `/`, has no `//`, `.` or `..` segment;
//! - canonicalising it again gives the same path (fixed point), in both modes it was made in;
//! - in strict mode, the loosest reading of the canonical path equals that of the raw path,
//!   so deny routes (matched on both readings) see the same thing whichever form they get;
//! - `loosest` never panics, starts with `/` and is lower case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung::admit::canonical::{canonicalize, loosest};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let allow_raw = mode & 1 == 1;
    let raw = String::from_utf8_lossy(rest);

    let loose = loosest(&raw);
    assert!(loose.starts_with('/'), "loosest({raw:?}) = {loose:?}");
    assert!(
        !loose.bytes().any(|b| b.is_ascii_uppercase()),
        "loosest({raw:?}) = {loose:?} is not lower case"
    );

    if let Ok(canon) = canonicalize(&raw, allow_raw) {
        assert!(canon.is_ascii(), "{raw:?} -> {canon:?}");
        assert!(canon.starts_with('/'), "{raw:?} -> {canon:?}");
        assert!(!canon.contains("//"), "{raw:?} -> {canon:?}");
        assert!(
            !canon.split('/').any(|s| s == "." || s == ".."),
            "{raw:?} -> {canon:?} keeps a dot segment"
        );
        assert!(
            !canon.bytes().any(|b| b < 0x21 || b == 0x7f || b == b'\\'),
            "{raw:?} -> {canon:?} keeps a control byte or backslash"
        );
        let again = canonicalize(&canon, allow_raw);
        assert_eq!(
            again.as_deref(),
            Ok(canon.as_str()),
            "not a fixed point: {raw:?} -> {canon:?} (allow_raw = {allow_raw})"
        );
        if !allow_raw {
            assert_eq!(
                loosest(&canon),
                loose,
                "loosest readings differ: {raw:?} -> {canon:?}"
            );
        }
    }
});
