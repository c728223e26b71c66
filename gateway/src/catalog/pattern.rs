//! The path-pattern grammar of grant *cakupan* in the catalogue.

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param,
}

/// A *cakupan* path pattern on the canonical path: exact `/a/b`, segment parameters
/// `/a/{id}` (one non-empty segment), and a trailing `/*` (one or more further segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segs: Vec<Seg>,
    prefix: bool,
}

impl PathPattern {
    /// Parses a pattern; the message says what is wrong.
    pub fn parse(p: &str) -> Result<Self, String> {
        let rest = p.strip_prefix('/').ok_or("must start with '/'")?;
        let mut parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let prefix = parts.last() == Some(&"*");
        if prefix {
            parts.pop();
        }
        let mut segs = Vec::new();
        for s in parts {
            if s.is_empty() || s == "." || s == ".." {
                return Err(format!("empty or dot segment in {p:?}"));
            }
            if s.contains('*') {
                return Err("'*' only as the whole last segment".into());
            }
            if s.starts_with('{') && s.ends_with('}') && s.len() > 2 {
                segs.push(Seg::Param);
            } else if s.contains(['{', '}', '%', '?', '#']) {
                return Err(format!("invalid segment {s:?}"));
            } else {
                segs.push(Seg::Lit(s.to_owned()));
            }
        }
        Ok(Self { segs, prefix })
    }

    /// Whether the canonical `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        for seg in &self.segs {
            match (seg, parts.next()) {
                (Seg::Lit(l), Some(p)) if l == p => {}
                (Seg::Param, Some(p)) if !p.is_empty() => {}
                _ => return false,
            }
        }
        let tail: Vec<&str> = parts.collect();
        if self.prefix {
            !tail.is_empty() && tail.first().is_some_and(|t| !t.is_empty())
        } else {
            tail.is_empty() || (self.segs.is_empty() && tail == [""])
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::PathPattern;

    #[test]
    fn patterns() {
        let p = |s: &str| PathPattern::parse(s).unwrap();
        assert!(p("/a/b").matches("/a/b"));
        assert!(!p("/a/b").matches("/a/b/"));
        assert!(!p("/a/b").matches("/a/bc"));
        assert!(p("/a/*").matches("/a/x/y"));
        assert!(!p("/a/*").matches("/a"));
        assert!(!p("/a/*").matches("/a/"));
        assert!(!p("/a/*").matches("/ab/x"));
        assert!(p("/p/{nik}/x").matches("/p/123/x"));
        assert!(!p("/p/{nik}/x").matches("/p//x"));
        assert!(!p("/p/{nik}/x").matches("/p/1/2/x"));
        assert!(p("/").matches("/"));
        assert!(p("/*").matches("/anything"));
        assert!(PathPattern::parse("a").is_err());
        assert!(PathPattern::parse("/a/*/b").is_err());
        assert!(PathPattern::parse("/a/../b").is_err());
    }
}
