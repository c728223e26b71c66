//! Fuzz target: route path patterns (`routing::Pattern`).
//!
//! Input: `pattern` NUL `path` (no NUL: the whole input is the pattern and is matched against
//! itself). Checks, beyond "never panics": a parsed pattern is deterministic; an exact pattern
//! matches its own text; a prefix pattern `/p/*` matches `/p` itself and `/p/anything`, and
//! everything below any path it matches; a template matches a path filling each parameter,
//! and only paths with its number of segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
    // A prefix pattern covers everything below a path it matches (deny routes rely on it).
    if matches!(parsed, Pattern::Prefix(_)) && parsed.matches(path) {
        let below = format!("{path}/x");
        assert!(parsed.matches(&below), "{pattern:?} matches {path:?} but not {below:?}");
    }
    // A template matches only paths with exactly its number of segments.
    if let Pattern::Template(segments) = &parsed {
        if parsed.matches(path) {
            assert_eq!(path.split('/').count() - 1, segments.len(), "{pattern:?} vs {path:?}");
        }
    }
});
