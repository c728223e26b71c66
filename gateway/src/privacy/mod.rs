//! Personal data: what a service declares personal, and how the gateway keeps it provable
//! without writing it in clear (README, "Personal data"; the constructions are specified in
//! proto/README.md §16 and implemented in `penghubung_evidence::personal`).
//!
//! A `personal_data` service declares (`[service.personal]`) its personal path parameters (by
//! the `{name}` of its route templates), query parameters, header names, JSON fields (RFC 6901
//! pointers, `*` for any one key or index) and XML elements (`/Envelope/Body/Cari/NIK`: local
//! names, namespace prefixes ignored, `*` for any one element), each with a [`Category`].
//! Validation refuses a `personal_data` service without a declaration, and any declaration
//! without `[privacy] key_file`.
//!
//! For such a service the evidence records keep the route template instead of the path, one
//! salted commitment (and sealed copy) per declared value, and HMAC-SHA256 keyed digests instead
//! of SHA-256 for path, query, headers and bodies; access-log lines and refusal logs show
//! declared values only as a short keyed fingerprint (`[nik:3f09c1a2b4d5]`: the same person gives
//! the same fingerprint under one key). This module compiles the declarations ([`ServicePolicy`])
//! and extracts, commits and masks values; the pipeline (`pipeline/record.rs`) puts them into
//! records, and [`disclose`] opens one value of one exchange for an auditor.

pub mod disclose;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use penghubung_evidence::personal::{Keyring, Keys, Place, XmlFields};
use penghubung_evidence::schema::PersonalValue;
use serde::{Deserialize, Serialize};

/// What kind of personal data a declared field holds (recorded with its commitment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Nomor Induk Kependudukan (16 digits).
    Nik,
    /// Nomor Induk Pegawai (civil servants).
    Nip,
    /// Nomor Kartu Keluarga.
    Kk,
    /// A person's name.
    Name,
    /// Address.
    Address,
    /// Date or place of birth.
    Birth,
    /// Telephone number.
    Phone,
    /// E-mail address.
    Email,
    /// Health data (a specific category under UU 27/2022).
    Health,
    /// Financial data (a specific category under UU 27/2022).
    Financial,
    /// Any other personal data.
    Other,
}

impl Category {
    /// The name written into records and fingerprints.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Nik => "nik",
            Category::Nip => "nip",
            Category::Kk => "kk",
            Category::Name => "name",
            Category::Address => "address",
            Category::Birth => "birth",
            Category::Phone => "phone",
            Category::Email => "email",
            Category::Health => "health",
            Category::Financial => "financial",
            Category::Other => "other",
        }
    }
}

/// `[service.personal]`: the service's personal fields and their categories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalSpec {
    /// Route template parameters (`nik` for a route `/penduduk/{nik}`).
    #[serde(default)]
    pub path: BTreeMap<String, Category>,
    /// Query parameters, by name as sent.
    #[serde(default)]
    pub query: BTreeMap<String, Category>,
    /// Request and response headers, by name (case-insensitive).
    #[serde(default)]
    pub headers: BTreeMap<String, Category>,
    /// JSON fields of request and response bodies, by RFC 6901 pointer; a `*` segment matches
    /// any one key or array index (`/anggota/*/nik`).
    #[serde(default)]
    pub json: BTreeMap<String, Category>,
    /// XML elements of request and response bodies (SOAP), by element path: `/`-separated local
    /// names from the root, `*` for any one element (`/Envelope/Body/*/NIK`).
    #[serde(default)]
    pub xml: BTreeMap<String, Category>,
}

impl PersonalSpec {
    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
            && self.query.is_empty()
            && self.headers.is_empty()
            && self.json.is_empty()
            && self.xml.is_empty()
    }
}

/// `[privacy]`: where the personal-data key lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// The key file (TOML: `current` and `[[key]]` tables of `id` and hex `secret`; mode 0600;
    /// made and rotated with `penghubung evidence keys rotate`). Required as soon as a service
    /// is `personal_data`.
    pub key_file: Option<PathBuf>,
}

/// The pure checks of one service's declaration (paths relative to the service): a
/// `personal_data` service declares its personal fields and needs `[privacy] key_file`; a
/// declaration needs `personal_data = true`; each declared field must make sense.
pub fn validate_service(
    personal_data: bool,
    personal: Option<&PersonalSpec>,
    routes: &[&str],
    has_key: bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match (personal_data, personal) {
        (true, None) => out.push((
            "personal".into(),
            "a personal_data service must declare its personal fields ([service.personal]: \
             path, query, headers, json, xml)"
                .into(),
        )),
        (true, Some(spec)) if spec.is_empty() => out.push((
            "personal".into(),
            "declares no personal field; name at least one path parameter, query parameter, \
             header, JSON or XML field"
                .into(),
        )),
        (false, Some(_)) => out.push((
            "personal".into(),
            "declared on a service that is not personal_data = true".into(),
        )),
        _ => {}
    }
    if let (true, Some(spec)) = (personal_data, personal) {
        if let Err(errors) = ServicePolicy::compile(spec, routes) {
            out.extend(
                errors
                    .into_iter()
                    .map(|(path, message)| (format!("personal.{path}"), message)),
            );
        }
        if !has_key {
            out.push((
                "personal_data".into(),
                "needs [privacy] key_file: the key that commits, digests and masks the declared \
                 fields"
                    .into(),
            ));
        }
    }
    out
}

/// One segment of a route template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
}

/// A route template of a personal-data service, with the category of each declared parameter.
#[derive(Debug, Clone)]
struct Template {
    text: String,
    segs: Vec<Seg>,
    prefix: bool,
}

impl Template {
    fn parse(text: &str) -> Template {
        let (body, prefix) = match text.strip_suffix("/*") {
            Some(b) => (b, true),
            None => (text, false),
        };
        let segs = body
            .split('/')
            .skip(1)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) if !name.is_empty() => Seg::Param(name.to_owned()),
                    _ => Seg::Lit(s.to_owned()),
                },
            )
            .collect();
        Template {
            text: text.to_owned(),
            segs,
            prefix,
        }
    }

    /// The path's segment for each template segment, when the path matches (canonical form).
    fn split<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut out = Vec::with_capacity(self.segs.len());
        for seg in &self.segs {
            let p = parts.next()?;
            match seg {
                Seg::Lit(l) if l == p => {}
                Seg::Param(_) if !p.is_empty() => {}
                _ => return None,
            }
            out.push(p);
        }
        if !self.prefix && parts.next().is_some() {
            return None;
        }
        Some(out)
    }
}

fn pointer_segments(pattern: &str) -> Vec<String> {
    pattern
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A personal-data service's declarations, compiled.
#[derive(Debug)]
pub struct ServicePolicy {
    routes: Vec<Template>,
    path: BTreeMap<String, Category>,
    query: BTreeMap<String, Category>,
    headers: Vec<(http::HeaderName, Category)>,
    json: Vec<(Vec<String>, Category)>,
    xml: XmlFields,
}

impl ServicePolicy {
    /// Compiles a declaration for a service whose routes have the patterns `routes` (in order).
    /// The errors are (field path under `personal`, message).
    pub fn compile(
        spec: &PersonalSpec,
        routes: &[&str],
    ) -> Result<ServicePolicy, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let routes: Vec<Template> = routes.iter().map(|r| Template::parse(r)).collect();
        for name in spec.path.keys() {
            let known = routes
                .iter()
                .any(|t| t.segs.contains(&Seg::Param(name.clone())));
            if !known {
                errors.push((
                    format!("path.{name}"),
                    format!("no route of the service has a {{{name}}} segment"),
                ));
            }
        }
        let mut headers = Vec::new();
        for (name, category) in &spec.headers {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => headers.push((h, *category)),
                Err(_) => errors.push((format!("headers.{name}"), "not a header name".into())),
            }
        }
        for name in spec.query.keys() {
            if name.is_empty() || name.contains(['&', '=', '#']) {
                errors.push((format!("query.{name}"), "not a query parameter name".into()));
            }
        }
        let mut json = Vec::new();
        for (pointer, category) in &spec.json {
            if !pointer.starts_with('/') {
                errors.push((
                    format!("json.{pointer:?}"),
                    "must be a JSON pointer starting with '/'".into(),
                ));
            } else {
                json.push((pointer_segments(pointer), *category));
            }
        }
        let mut xml = XmlFields::default();
        for (path, category) in &spec.xml {
            if let Err(message) = XmlFields::new([(path.as_str(), category.as_str())]) {
                errors.push((format!("xml.{path:?}"), message));
            }
        }
        if errors.is_empty() {
            let declared = spec.xml.iter().map(|(p, c)| (p.as_str(), c.as_str()));
            xml = XmlFields::new(declared).map_err(|m| vec![("xml".to_owned(), m)])?;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ServicePolicy {
            routes,
            path: spec.path.clone(),
            query: spec.query.clone(),
            headers,
            json,
            xml,
        })
    }

    /// The declared path values of a canonical `path` matched by route `route`: (parameter,
    /// category, value).
    fn path_values<'p>(&self, route: usize, path: &'p str) -> Vec<(&str, Category, &'p str)> {
        let Some(t) = self.routes.get(route) else {
            return Vec::new();
        };
        let Some(parts) = t.split(path) else {
            return Vec::new();
        };
        t.segs
            .iter()
            .zip(parts)
            .filter_map(|(seg, value)| match seg {
                Seg::Param(name) => self
                    .path
                    .get_key_value(name)
                    .map(|(n, c)| (n.as_str(), *c, value)),
                Seg::Lit(_) => None,
            })
            .collect()
    }

    /// The route template of route `route`.
    pub fn template(&self, route: usize) -> &str {
        self.routes.get(route).map_or("", |t| t.text.as_str())
    }

    /// The declared XML element paths (SOAP bodies). An adapter crate commits the elements it
    /// parses with [`XmlFields::commit`] (in `penghubung_evidence::personal`, so it needs no
    /// gateway dependency); the gateway hands it this table.
    pub fn xml(&self) -> &XmlFields {
        &self.xml
    }

    /// The commitment of one XML element's text when its element path is declared personal
    /// (`None` otherwise): [`XmlFields::commit`] on this service's declarations.
    pub fn commit_xml(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        path: &str,
        occurrence: u32,
        value: &[u8],
    ) -> Option<PersonalValue> {
        self.xml
            .commit(keys, exchange_id, direction, path, occurrence, value)
    }

    /// Whether bodies must be kept (up to a limit) to commit their declared fields.
    pub fn commits_bodies(&self) -> bool {
        !self.json.is_empty() || !self.xml.is_empty()
    }

    /// Commitments of the declared fields of a body: JSON fields when it is JSON, XML elements
    /// when it is XML (SOAP), none otherwise.
    pub fn commit_body(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        body: &[u8],
    ) -> Vec<PersonalValue> {
        let json = self.commit_json(keys, exchange_id, direction, body);
        if !json.is_empty() {
            return json;
        }
        self.commit_xml_body(keys, exchange_id, direction, body)
    }

    /// Commitments of the declared XML elements of a body (none when it is not well-formed
    /// XML): each element's text content (entities resolved, CDATA as is), by the path of local
    /// names from the root.
    pub fn commit_xml_body(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        body: &[u8],
    ) -> Vec<PersonalValue> {
        use quick_xml::events::Event;
        if self.xml.is_empty() {
            return Vec::new();
        }
        let mut reader = quick_xml::Reader::from_reader(body);
        let mut stack: Vec<(String, String)> = Vec::new();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        let mut out = Vec::new();
        let path_of = |stack: &[(String, String)], last: Option<&str>| {
            let mut p = String::new();
            for (name, _) in stack {
                p.push('/');
                p.push_str(name);
            }
            if let Some(l) = last {
                p.push('/');
                p.push_str(l);
            }
            p
        };
        let mut finish = |path: String, text: &str, out: &mut Vec<PersonalValue>| {
            if self.xml.category(&path).is_some() {
                let n = counts.entry(path.clone()).or_default();
                let occurrence = *n;
                *n += 1;
                out.extend(self.xml.commit(
                    keys,
                    exchange_id,
                    direction,
                    &path,
                    occurrence,
                    text.as_bytes(),
                ));
            }
        };
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    stack.push((name, String::new()));
                }
                Ok(Event::Empty(e)) => {
                    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                    finish(path_of(&stack, Some(&name)), "", &mut out);
                }
                Ok(Event::End(_)) => {
                    let path = path_of(&stack, None);
                    let Some((_, text)) = stack.pop() else {
                        return Vec::new();
                    };
                    finish(path, &text, &mut out);
                }
                Ok(Event::Text(t)) => match (t.xml_content(), stack.last_mut()) {
                    (Ok(text), Some((_, buf))) => buf.push_str(&text),
                    (Err(_), _) => return Vec::new(),
                    _ => {}
                },
                Ok(Event::CData(c)) => {
                    if let Some((_, buf)) = stack.last_mut() {
                        buf.push_str(&String::from_utf8_lossy(&c));
                    }
                }
                Ok(Event::GeneralRef(r)) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match r
                            .decode()
                            .ok()
                            .as_deref()
                            .and_then(quick_xml::escape::resolve_predefined_entity)
                        {
                            Some(s) => s.to_owned(),
                            None => return Vec::new(),
                        },
                        Err(_) => return Vec::new(),
                    };
                    if let Some((_, buf)) = stack.last_mut() {
                        buf.push_str(&resolved);
                    }
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(_) => return Vec::new(),
            }
        }
        out
    }

    /// Commitments of the declared JSON fields of a body (none when it is not JSON).
    pub fn commit_json(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        body: &[u8],
    ) -> Vec<PersonalValue> {
        if self.json.is_empty() {
            return Vec::new();
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for (pattern, category) in &self.json {
            walk(&value, pattern, &mut String::new(), *category, &mut found);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        found
            .into_iter()
            .map(|(pointer, category, text)| {
                let place = Place {
                    direction,
                    location: "json",
                    field: &pointer,
                    occurrence: 0,
                };
                keys.commit(exchange_id, place, category.as_str(), text.as_bytes())
            })
            .collect()
    }

    /// Commitments of the declared headers of a request or response head.
    pub fn commit_headers(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        headers: &http::HeaderMap,
    ) -> Vec<PersonalValue> {
        let mut out = Vec::new();
        for (name, category) in &self.headers {
            for (i, value) in headers.get_all(name).iter().enumerate() {
                let place = Place {
                    direction,
                    location: "header",
                    field: name.as_str(),
                    occurrence: u32::try_from(i).unwrap_or(u32::MAX),
                };
                out.push(keys.commit(exchange_id, place, category.as_str(), value.as_bytes()));
            }
        }
        out
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn walk(
    value: &serde_json::Value,
    pattern: &[String],
    pointer: &mut String,
    category: Category,
    out: &mut Vec<(String, Category, String)>,
) {
    let Some((first, rest)) = pattern.split_first() else {
        out.push((pointer.clone(), category, value.to_string()));
        return;
    };
    let len = pointer.len();
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if first == "*" || first == k {
                    pointer.push('/');
                    pointer.push_str(&escape(k));
                    walk(v, rest, pointer, category, out);
                    pointer.truncate(len);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if first == "*" || *first == i.to_string() {
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    walk(v, rest, pointer, category, out);
                    pointer.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// What the gateway saw of one exchange of a personal-data route: the masked path for logs,
/// the template and the keyed digests and commitments for the records. The clear values are
/// kept in memory for the exchange only, to mask them in log messages.
#[derive(Debug)]
pub struct Seen {
    /// The key new records of this exchange are made with.
    pub keys: Arc<Keyring>,
    /// The service's declarations (absent when only a template of some service matched an
    /// unrouted request).
    pub policy: Option<Arc<ServicePolicy>>,
    /// The route template.
    pub template: String,
    /// The path with declared segments replaced by fingerprints, for logs.
    pub masked_path: String,
    /// Commitments of the request's declared path, query and header values.
    pub values: Vec<PersonalValue>,
    /// Keyed digests of the canonical path, the query string and the digested headers.
    pub path_hmac: Bytes,
    /// Query (empty without one).
    pub query_hmac: Bytes,
    /// Digested headers.
    pub headers_hmac: Bytes,
    clear: Vec<(String, Category)>,
}

impl Seen {
    /// The id of the key used.
    pub fn key_id(&self) -> &str {
        self.keys.current().id()
    }

    /// `text` with every declared value of this exchange replaced by its fingerprint (for log
    /// and error messages, and trace attributes).
    pub fn mask(&self, text: &str) -> String {
        mask_values(self.keys.current(), text, &self.clear)
    }
}

/// `text` with each of `values` replaced by `[category:fingerprint]` (longest values first).
pub fn mask_values(keys: &Keys, text: &str, values: &[(String, Category)]) -> String {
    let mut sorted: Vec<&(String, Category)> =
        values.iter().filter(|(v, _)| !v.is_empty()).collect();
    sorted.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for (value, category) in sorted {
        if out.contains(value.as_str()) {
            out = out.replace(
                value.as_str(),
                &fingerprint(keys, *category, value.as_bytes()),
            );
        }
    }
    out
}

/// The log form of one value: `[category:fingerprint]`.
pub fn fingerprint(keys: &Keys, category: Category, value: &[u8]) -> String {
    format!(
        "[{}:{}]",
        category.as_str(),
        keys.fingerprint(category.as_str(), value)
    )
}

/// The request facts a [`Seen`] is made from.
pub struct Observed<'a> {
    /// Exchange id.
    pub exchange_id: &'a str,
    /// Canonical path.
    pub path: &'a str,
    /// Query string as received.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The digested headers as bytes (`pipeline::record`'s serialisation).
    pub digested_headers: &'a [u8],
}

/// The snapshot's personal-data runtime: the keyring and every personal-data route template.
#[derive(Debug, Default)]
pub struct Privacy {
    keys: Option<Arc<Keyring>>,
    templates: Vec<(Arc<ServicePolicy>, usize)>,
}

impl Privacy {
    /// The runtime of a config: `keys` loaded from `[privacy] key_file` (when set) and the
    /// compiled policies of the personal-data services.
    pub fn new(keys: Option<Arc<Keyring>>, policies: &[Arc<ServicePolicy>]) -> Privacy {
        let mut templates = Vec::new();
        for p in policies {
            for i in 0..p.routes.len() {
                if p.routes[i]
                    .segs
                    .iter()
                    .any(|s| matches!(s, Seg::Param(n) if p.path.contains_key(n)))
                {
                    templates.push((p.clone(), i));
                }
            }
        }
        Privacy { keys, templates }
    }

    /// The keyring, when configured.
    pub fn keys(&self) -> Option<&Arc<Keyring>> {
        self.keys.as_ref()
    }

    /// What a request routed to `route` of a personal-data service (`policy`) shows.
    pub fn observe(
        &self,
        policy: &Arc<ServicePolicy>,
        route: usize,
        request: &Observed<'_>,
    ) -> Option<Seen> {
        let keys = self.keys.clone()?;
        let k = keys.current();
        let mut values = Vec::new();
        let mut clear = Vec::new();
        for (name, category, value) in policy.path_values(route, request.path) {
            let place = Place {
                direction: "request",
                location: "path",
                field: name,
                occurrence: 0,
            };
            values.push(k.commit(
                request.exchange_id,
                place,
                category.as_str(),
                value.as_bytes(),
            ));
            clear.push((value.to_owned(), category));
        }
        if let Some(query) = request.query {
            let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if let Some(category) = policy.query.get(name) {
                    let n = seen.entry(name).or_default();
                    let place = Place {
                        direction: "request",
                        location: "query",
                        field: name,
                        occurrence: *n,
                    };
                    *n += 1;
                    values.push(k.commit(
                        request.exchange_id,
                        place,
                        category.as_str(),
                        value.as_bytes(),
                    ));
                    clear.push((value.to_owned(), *category));
                }
            }
        }
        for (name, category) in &policy.headers {
            for value in request.headers.get_all(name) {
                if let Ok(v) = value.to_str() {
                    clear.push((v.to_owned(), *category));
                }
            }
        }
        values.extend(policy.commit_headers(k, request.exchange_id, "request", request.headers));
        let masked_path = match policy.routes.get(route) {
            Some(t) => masked(k, t, policy, request.path),
            None => request.path.to_owned(),
        };
        Some(Seen {
            template: policy.template(route).to_owned(),
            masked_path,
            values,
            path_hmac: Bytes::copy_from_slice(&k.digest("path", request.path.as_bytes())),
            query_hmac: request
                .query
                .map(|q| Bytes::copy_from_slice(&k.digest("query", q.as_bytes())))
                .unwrap_or_default(),
            headers_hmac: Bytes::copy_from_slice(&k.digest("headers", request.digested_headers)),
            policy: Some(policy.clone()),
            keys: keys.clone(),
            clear,
        })
    }

    /// For a request that was not routed (or refused before routing): when its path matches a
    /// personal-data route template of any service, the template, the masked path and the
    /// keyed digests, so that neither the refusal record nor the log holds the values.
    pub fn observe_unrouted(&self, request: &Observed<'_>) -> Option<Seen> {
        let (policy, route) = self
            .templates
            .iter()
            .find(|(p, i)| p.routes[*i].split(request.path).is_some())?;
        let mut seen = self.observe(policy, *route, request)?;
        seen.policy = None;
        Some(seen)
    }

    /// A path for logs and traces: declared segments of any personal-data route template the
    /// path matches replaced by their fingerprints (the path itself otherwise).
    pub fn mask_path<'p>(&self, path: &'p str) -> std::borrow::Cow<'p, str> {
        let Some(keys) = &self.keys else {
            return path.into();
        };
        match self
            .templates
            .iter()
            .find(|(p, i)| p.routes[*i].split(path).is_some())
        {
            Some((p, i)) => masked(keys.current(), &p.routes[*i], p, path).into(),
            None => path.into(),
        }
    }
}

fn masked(keys: &Keys, template: &Template, policy: &ServicePolicy, path: &str) -> String {
    let Some(parts) = template.split(path) else {
        return path.to_owned();
    };
    let mut out = String::with_capacity(path.len());
    for (seg, part) in template.segs.iter().zip(&parts) {
        out.push('/');
        match seg {
            Seg::Param(name) => match policy.path.get(name) {
                Some(c) => out.push_str(&fingerprint(keys, *c, part.as_bytes())),
                None => out.push_str(part),
            },
            Seg::Lit(_) => out.push_str(part),
        }
    }
    // The rest of a prefix route's path is undeclared: kept as it is.
    let consumed: usize = parts.iter().map(|p| p.len() + 1).sum();
    out.push_str(&path[consumed.min(path.len())..]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
