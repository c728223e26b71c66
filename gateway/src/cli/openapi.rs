//! `penghubung catalog openapi`: every Layanan exposed to SPL Provinsi or the national SPLP as
//! one OpenAPI 3.0 document, for the peer's publisher portal (WSO2 API Manager imports OpenAPI
//! definitions). Only forwarding routes are listed; `deny` routes and `internal` services never
//! appear.

use serde_json::{json, Map, Value};

use crate::catalog::services::{RouteAction, ServiceSpec};
use crate::catalog::{Catalog, Exposure};

const DEFAULT_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn exposure_name(e: Exposure) -> &'static str {
    match e {
        Exposure::Internal => "internal",
        Exposure::Provinsi => "provinsi",
        Exposure::Pusat => "pusat",
        Exposure::Eksternal => "eksternal",
    }
}

/// The OpenAPI path of a route pattern and its path parameters: `/p/*` becomes
/// `/p/{rest}` (any sub-path), templates keep their `{param}` segments.
fn openapi_path(pattern: &str) -> (String, Vec<(String, &'static str)>) {
    let mut params = Vec::new();
    let mut path = pattern.to_owned();
    if let Some(prefix) = pattern.strip_suffix("/*") {
        path = format!("{prefix}/{{rest}}");
        params.push(("rest".to_owned(), "The rest of the path (any sub-path)."));
    }
    for segment in pattern.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            params.push((name.to_owned(), "Path parameter."));
        }
    }
    (path, params)
}

fn operation(service: &ServiceSpec, method: &str, params: &[(String, &'static str)]) -> Value {
    let parameters: Vec<Value> = params
        .iter()
        .map(|(name, description)| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": description,
                "schema": { "type": "string" },
            })
        })
        .collect();
    json!({
        "tags": [service.id],
        "operationId": format!("{}-{}", service.id, method.to_ascii_lowercase()),
        "parameters": parameters,
        "responses": {
            "default": {
                "description": "The Layanan's answer, or a refusal as application/problem+json (RFC 9457).",
            }
        },
    })
}

/// The OpenAPI document of the catalogue's services exposed to a peer (`tier`: only those a
/// peer of that tier may call; `None`: provinsi or pusat).
pub fn document(catalog: &Catalog, tier: Option<&str>) -> Value {
    let exposed = |s: &&ServiceSpec| match tier {
        Some(t) => s.exposure.includes_tier(t),
        None => s.exposure.includes_tier("provinsi") || s.exposure.includes_tier("pusat"),
    };
    let mut paths: Map<String, Value> = Map::new();
    let mut tags = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    for service in catalog.service.iter().filter(exposed) {
        tags.push(json!({
            "name": service.id,
            "description": format!(
                "Layanan {} (version {}), owned by OPD {}; classification {:?}, exposure {}.",
                service.id,
                service.version.as_deref().unwrap_or("-"),
                service.owner_opd.as_deref().unwrap_or("-"),
                service.classification,
                exposure_name(service.exposure),
            ),
        }));
        for host in &service.hosts {
            let url = format!("https://{host}");
            if host != "*" && !servers.contains(&url) {
                servers.push(url);
            }
        }
        for route in service
            .route
            .iter()
            .filter(|r| r.action == RouteAction::Forward)
        {
            let (path, params) = openapi_path(&route.path);
            let item = paths
                .entry(path)
                .or_insert_with(|| Value::Object(Map::new()));
            let methods: Vec<String> = if route.methods.is_empty() {
                DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect()
            } else {
                route.methods.clone()
            };
            for method in methods {
                let lower = method.to_ascii_lowercase();
                if ![
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ]
                .contains(&lower.as_str())
                {
                    continue;
                }
                if let Value::Object(map) = item {
                    map.insert(lower, operation(service, &method, &params));
                }
            }
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Penghubung — Layanan for peer SPLs",
            "version": env!("CARGO_PKG_VERSION"),
            "description": match tier {
                Some(t) => format!("Every Layanan exposed to {t}."),
                None => "Every Layanan exposed to SPL Provinsi or the national SPLP.".to_owned(),
            },
        },
        "servers": servers.iter().map(|u| json!({ "url": u })).collect::<Vec<_>>(),
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "wso2BackendJwt": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-JWT-Assertion",
                    "description": "WSO2's backend JWT, signed by the peer's key configured in [[peer]].assertion_jwks.",
                },
                "mutualTls": { "type": "mutualTLS" },
            }
        },
        "security": [ { "wso2BackendJwt": [] }, { "mutualTls": [] } ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exposed_forwarding_routes_are_published() {
        let catalog: Catalog = toml::from_str(
            r#"
[[service]]
id = "dukcapil"
version = "v1"
hosts = ["api.kab.go.id"]
exposure = "pusat"
[[service.route]]
path = "/penduduk/{nik}"
methods = ["GET"]
[[service.route]]
path = "/penduduk/admin/*"
action = "deny"
[[service.route]]
path = "/berkas/*"
methods = ["GET", "POST"]

[[service]]
id = "prov-only"
hosts = ["api.kab.go.id"]
exposure = "provinsi"
[[service.route]]
path = "/prov"
methods = ["GET"]

[[service]]
id = "dalam"
hosts = ["internal.kab.go.id"]
[[service.route]]
path = "/rahasia"
"#,
        )
        .expect("catalogue");
        let all = document(&catalog, None);
        let paths = all["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/penduduk/{nik}"));
        assert!(paths.contains_key("/berkas/{rest}"));
        assert!(paths.contains_key("/prov"));
        assert!(
            !paths.contains_key("/rahasia"),
            "internal services are not published"
        );
        assert!(
            !paths.keys().any(|p| p.contains("admin")),
            "deny routes are not published"
        );
        assert_eq!(
            all["paths"]["/penduduk/{nik}"]["get"]["parameters"][0]["name"],
            "nik"
        );
        assert!(all["paths"]["/penduduk/{nik}"].get("post").is_none());
        assert_eq!(all["servers"][0]["url"], "https://api.kab.go.id");
        let pusat = document(&catalog, Some("pusat"));
        let paths = pusat["paths"].as_object().expect("paths");
        assert!(
            !paths.contains_key("/prov"),
            "provinsi-only is not for pusat"
        );
        assert!(paths.contains_key("/penduduk/{nik}"));
    }
}
