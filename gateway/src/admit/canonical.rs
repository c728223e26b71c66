//! The one canonical form of a request path (stage 1, `admit`).
//!
//! Routing, authorisation, evidence and the upstream request all use the form computed here,
//! so no component can read the path differently from another. Unreserved characters that were
//! percent-encoded are decoded, `.`/`..` segments are resolved, repeated slashes are merged and
//! hex digits are upper-cased. Encodings that backends disagree about are *ambiguous* and refused
//! unless the route explicitly allows raw forwarding.

pub use crate::error::PathError;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Canonicalises `raw` (the path part of the request target, without the query).
///
/// With `allow_raw`, ambiguous encodings are kept encoded (hex upper-cased) instead of refused;
/// bare `\` and control bytes are still refused.
pub fn canonicalize(raw: &str, allow_raw: bool) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // First pass: decode what is safe to decode, refuse what is ambiguous.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (h, l) = match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let v = h << 4 | l;
                i += 3;
                if is_unreserved(v) {
                    decoded.push(v);
                    continue;
                }
                let ambiguous = match v {
                    b'/' => Some("encoded slash"),
                    b'\\' => Some("encoded backslash"),
                    b'.' => Some("encoded dot"),
                    b';' => Some("encoded semicolon"),
                    0x00..=0x1f | 0x7f => Some("encoded control byte"),
                    0x80..=0xff => Some("encoded non-ASCII byte"),
                    b'%' if bytes.get(i).copied().and_then(hex).is_some()
                        && bytes.get(i + 1).copied().and_then(hex).is_some() =>
                    {
                        Some("double encoding")
                    }
                    _ => None,
                };
                if let Some(what) = ambiguous {
                    if !allow_raw || v < 0x20 || v == 0x7f {
                        return Err(PathError::Ambiguous(what));
                    }
                }
                decoded.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(v >> 4)],
                    HEX[usize::from(v & 15)],
                ]);
            }
            b'\\' => return Err(PathError::Ambiguous("backslash")),
            b';' if !allow_raw => return Err(PathError::Ambiguous("semicolon parameter")),
            0x00..=0x20 | 0x7f => return Err(PathError::Ambiguous("control byte")),
            0x80..=0xff => return Err(PathError::Ambiguous("non-ASCII byte")),
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    // Decoding `%34%31` after a kept `%25` would make `%2541`: double encoding in disguise.
    if !allow_raw
        && decoded
            .windows(5)
            .any(|w| w[..3] == *b"%25" && hex(w[3]).is_some() && hex(w[4]).is_some())
    {
        return Err(PathError::Ambiguous("double encoding"));
    }
    // Second pass: resolve dot segments and merge empty segments.
    let mut out: Vec<&[u8]> = Vec::with_capacity(8);
    let trailing_slash = decoded.len() > 1 && decoded.last() == Some(&b'/');
    let mut last_was_dot = false;
    for segment in decoded.split(|&c| c == b'/').skip(1) {
        last_was_dot = false;
        match segment {
            b"" => {}
            b"." => last_was_dot = true,
            // `...` and longer: some servers (Windows, some Java containers) treat them as
            // parent references.
            s if s.len() > 2 && s.iter().all(|&c| c == b'.') => {
                return Err(PathError::Ambiguous("dot segment"));
            }
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                last_was_dot = true;
            }
            s => out.push(s),
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        // Only ASCII bytes survive the first pass.
        path.extend(s.iter().map(|&c| char::from(c)));
    }
    if path.is_empty() || trailing_slash || (last_was_dot && !out.is_empty()) {
        path.push('/');
    }
    Ok(path)
}

/// The loosest reading of a path that any backend might make: everything percent-decoded
/// repeatedly, `\` as `/`, `;` parameters dropped, dot segments resolved, lower-cased.
///
/// Deny routes are matched against this reading too, so that no spelling reaches a denied route.
pub fn loosest(raw: &str) -> String {
    let mut current: Vec<u8> = raw.as_bytes().to_vec();
    for _ in 0..4 {
        let mut next = Vec::with_capacity(current.len());
        let mut i = 0;
        let mut changed = false;
        while i < current.len() {
            if current[i] == b'%' {
                if let (Some(h), Some(l)) = (
                    current.get(i + 1).copied().and_then(hex),
                    current.get(i + 2).copied().and_then(hex),
                ) {
                    next.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
            }
            next.push(current[i]);
            i += 1;
        }
        current = next;
        if !changed {
            break;
        }
    }
    let text: String = current
        .iter()
        .map(|&c| {
            if c == b'\\' {
                '/'
            } else {
                char::from(c.to_ascii_lowercase())
            }
        })
        .collect();
    let mut out: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        if segment.len() >= 2 && segment.chars().all(|c| c == '.') {
            out.pop();
            continue;
        }
        match segment.trim_end_matches(['.', ' ']) {
            "" => {}
            s => out.push(s),
        }
    }
    let mut path = String::new();
    for s in out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/", "/a/b/"),
            ("/a/b/.", "/a/b/"),
            ("/%61%62", "/ab"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%7e", "/a~"),
            ("/a%25", "/a%25"),
        ];
        for (raw, want) in ok {
            assert_eq!(canonicalize(raw, false).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            "a",
            "*",
            "/%2f",
            "/a%2Fb",
            "/%5c",
            "/a\\b",
            "/%00",
            "/%2e%2e/admin",
            "/a;x=1",
            "/%3b",
            "/%252f",
            "/%c0%af",
            "/%e2%80%a8",
            "/%",
            "/%g1",
            "/..",
            "/a/../../b",
            "/admin/x/.../.../../y",
            "/a/..../b",
        ];
        for raw in bad {
            assert!(canonicalize(raw, false).is_err(), "{raw} must be refused");
        }
    }

    #[test]
    fn raw_forwarding_keeps_ambiguous_encodings() {
        assert_eq!(canonicalize("/a%2fb", true).as_deref(), Ok("/a%2Fb"));
        assert_eq!(canonicalize("/a;v=1", true).as_deref(), Ok("/a;v=1"));
        assert!(canonicalize("/a%00", true).is_err());
        assert!(canonicalize("/a\\b", true).is_err());
    }

    #[test]
    fn loosest_readings() {
        assert_eq!(loosest("/ADMIN"), "/admin");
        assert_eq!(loosest("/%2561dmin"), "/admin");
        assert_eq!(loosest("/x/..%2fadmin"), "/admin");
        assert_eq!(loosest("/admin;jsessionid=1/"), "/admin");
        assert_eq!(loosest("/x\\..\\admin"), "/admin");
        assert_eq!(loosest("/admin."), "/admin");
    }

    proptest! {
        #[test]
        fn canonical_is_a_fixed_point(raw in "/[a-zA-Z0-9%./_~;-]{0,40}") {
            if let Ok(c) = canonicalize(&raw, false) {
                prop_assert_eq!(canonicalize(&c, false), Ok(c.clone()));
                prop_assert!(c.starts_with('/'));
                prop_assert!(!c.contains("//"));
                prop_assert!(!c.split('/').any(|s| s == "." || s == ".."));
                // The canonical form reads the same under the loosest reading.
                prop_assert_eq!(loosest(&c), loosest(&raw));
            }
        }

        #[test]
        fn never_panics(raw in any::<String>(), allow in any::<bool>()) {
            let _ = canonicalize(&raw, allow);
            let _ = loosest(&raw);
        }
    }
}
