//! Compiled grants and their scope matching (stage 4, `authorize`).

use std::time::SystemTime;

use crate::catalog::parties::GrantSpec;
use crate::throttle::LimitPolicy;

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

/// A grant ready for use on the request path.
#[derive(Debug)]
pub struct GrantRuntime {
    /// Grant id.
    pub id: String,
    /// Consuming application.
    pub application: String,
    /// Service the grant is for.
    pub service: String,
    /// Purpose (*tujuan*), for the evidence record.
    pub tujuan: String,
    /// Start of validity.
    pub valid_from: Option<SystemTime>,
    /// End of validity (exclusive).
    pub valid_until: Option<SystemTime>,
    /// Whether the owner OPD consented.
    pub consented: bool,
    /// Rate and quota of the grant.
    pub limits: Option<LimitPolicy>,
    cakupan: Vec<(Vec<String>, Vec<PathPattern>)>,
}

impl GrantRuntime {
    /// Compiles a validated grant spec.
    pub fn compile(g: &GrantSpec) -> Result<Self, String> {
        let mut cakupan = Vec::new();
        for c in &g.cakupan {
            let paths = c
                .paths
                .iter()
                .map(|p| PathPattern::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            cakupan.push((c.methods.clone(), paths));
        }
        let limits = g
            .limits
            .as_ref()
            .map(|l| LimitPolicy::compile(&format!("grant:{}", g.id), l))
            .transpose()?;
        Ok(Self {
            id: g.id.clone(),
            application: g.application.clone(),
            service: g.service.clone(),
            tujuan: g.tujuan.clone(),
            valid_from: g.valid_from.map(SystemTime::from),
            valid_until: g.valid_until.map(SystemTime::from),
            consented: g.consent.is_some(),
            limits,
            cakupan,
        })
    }

    /// The grant used for callers of anonymous services.
    pub(crate) fn anonymous() -> Self {
        Self {
            id: "anonymous".into(),
            application: "anonymous".into(),
            service: String::new(),
            tujuan: "anonymous access".into(),
            valid_from: None,
            valid_until: None,
            consented: true,
            limits: None,
            cakupan: Vec::new(),
        }
    }

    /// Whether `now` is within the validity.
    pub fn validity(&self, now: SystemTime) -> Result<(), super::AuthError> {
        if self.valid_from.is_some_and(|f| now < f) {
            return Err(super::AuthError::GrantNotYetValid);
        }
        if self.valid_until.is_some_and(|u| now >= u) {
            return Err(super::AuthError::GrantExpired);
        }
        Ok(())
    }

    /// Whether the *cakupan* covers the method and canonical path.
    pub fn covers(&self, method: &http::Method, path: &str) -> bool {
        self.cakupan.iter().any(|(methods, paths)| {
            methods.iter().any(|m| m == "*" || m == method.as_str())
                && paths.iter().any(|p| p.matches(path))
        })
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
