//! Compiled grants and their scope matching (stage 4, `authorize`).

use std::time::SystemTime;

use crate::catalog::parties::GrantSpec;
pub use crate::catalog::pattern::PathPattern;
use crate::throttle::LimitPolicy;

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
    /// The consent's reference (`consent.id`), for the request record; empty without one.
    pub consent_id: String,
    /// Rate and quota of the grant.
    pub limits: Option<LimitPolicy>,
    cakupan: Vec<(Vec<String>, Vec<PathPattern>, Vec<String>)>,
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
            cakupan.push((c.methods.clone(), paths, c.operations.clone()));
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
            consent_id: g
                .consent
                .as_ref()
                .and_then(|c| c.id.clone())
                .unwrap_or_default(),
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
            consent_id: String::new(),
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
        self.cakupan.iter().any(|(methods, paths, _)| {
            methods.iter().any(|m| m == "*" || m == method.as_str())
                && paths.iter().any(|p| p.matches(path))
        })
    }

    /// Whether one *cakupan* entry covers the method, the canonical path and the SOAP
    /// operation (named in its `operations`, or `*`).
    pub fn covers_operation(&self, method: &http::Method, path: &str, operation: &str) -> bool {
        self.cakupan.iter().any(|(methods, paths, operations)| {
            methods.iter().any(|m| m == "*" || m == method.as_str())
                && paths.iter().any(|p| p.matches(path))
                && operations.iter().any(|o| o == "*" || o == operation)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_covered_only_where_named() {
        let spec: GrantSpec = toml::from_str(
            r#"
            id = "g"
            application = "a"
            service = "s"
            tujuan = "t"
            cakupan = [
                { methods = ["POST"], paths = ["/ws"], operations = ["GetPegawai"] },
                { methods = ["POST"], paths = ["/ws2"], operations = ["*"] },
                { methods = ["GET"], paths = ["/ws"] },
            ]
            "#,
        )
        .expect("parses");
        let g = GrantRuntime::compile(&spec).expect("compiles");
        let post = http::Method::POST;
        assert!(g.covers_operation(&post, "/ws", "GetPegawai"));
        assert!(!g.covers_operation(&post, "/ws", "HapusPegawai"));
        assert!(g.covers_operation(&post, "/ws2", "HapusPegawai"));
        assert!(!g.covers_operation(&http::Method::GET, "/ws", "GetPegawai"));
        assert!(!g.covers_operation(&post, "/other", "GetPegawai"));
        assert!(
            g.covers(&http::Method::GET, "/ws"),
            "an entry without operations still covers its paths"
        );
    }
}
