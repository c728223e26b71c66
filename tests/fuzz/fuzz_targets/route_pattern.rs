//! Fuzz target: route path patterns (`routing::Pattern`).
//!
//! Input: `pattern` NUL `path` (no NUL: the whole input is the pattern and is matched against
//! itself). Checks, beyond "never panics": a parsed pattern is deterministic; an exact pattern
//! matches its own text; a prefix pattern `/p/*` matches `/p` itself and `/p/anything`; and a
//! canonical path that a pattern matches still matches after canonicalising it again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use penghubung::admit::canonical::canonicalize;
use penghubung::routing::Pattern;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (pattern, path) = match text.split_once('\0') {
        Some((p, q)) => (p, q),
        None => (&*text, &*text),
    };
    let Ok(parsed) = Pattern::parse(pattern) else {
        return;
    };
    assert_eq!(
        Pattern::parse(pattern).as_ref(),
        Ok(&parsed),
        "parse is not deterministic for {pattern:?}"
    );
    match &parsed {
        Pattern::Exact(p) => {
            assert_eq!(p, pattern);
            assert!(parsed.matches(pattern), "{pattern:?} does not match itself");
        }
        Pattern::Prefix(p) => {
            let base = if p.is_empty() { "/" } else { p.as_str() };
            assert!(parsed.matches(base), "{pattern:?} does not match {base:?}");
            let below = format!("{p}/x");
            assert!(parsed.matches(&below), "{pattern:?} does not match {below:?}");
        }
        Pattern::Template(segments) => {
            // A concrete path filling every parameter with `x` must match.
            let concrete: String = segments
                .iter()
                .map(|s| format!("/{}", s.as_deref().unwrap_or("x")))
                .collect();
            assert!(
                parsed.matches(&concrete),
                "{pattern:?} does not match {concrete:?}"
            );
        }
    }
    let hit = parsed.matches(path);
    if let Ok(canon) = canonicalize(path, false) {
        if canon == path {
            assert_eq!(parsed.matches(&canon), hit);
        }
    }
});
