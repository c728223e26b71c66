//! Declarative JSON↔XML mediation: a REST client posts a JSON object, the gateway fills the
//! operation's request template, sends the SOAP envelope, and maps the answer back to JSON.
//!
//! **Request templates** are the XML of the body's element, with `{{field}}` placeholders:
//! `field` is a dotted path into the JSON object (`nip`, `pegawai.nip`). A placeholder takes a
//! string, number or boolean, XML-escaped; a missing field, `null`, an object or an array is
//! refused (422, `soap_mediation_input`). Templates are checked when the config is loaded: the
//! template with every placeholder filled must be one well-formed element under the hardened
//! reader, and its local name must be the operation's.
//!
//! **Element paths** (response mapping and the personal-data hook) are local names joined by
//! `/`, starting below `Body`: `GetPegawaiResponse/pegawai/nama`. Namespaces are not written
//! (local names only). The last step may be `@name` (an attribute of the element selected so
//! far). A path ending in `[]` (`GetPegawaiResponse/jabatan[]`) selects every match as a JSON
//! array; without it, the first match as a string, or `null` when nothing matches.

use serde_json::{Map, Value};

use crate::envelope::{Envelope, Version};
use crate::xml::{self, Element, Limits};

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Vec<String>),
}

/// A compiled request template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; `operation` is the local name its element must have.
    pub fn parse(text: &str, operation: &str, limits: &Limits) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "a `{{` without its `}}`".to_owned())?;
            let name = after[..close].trim();
            let path: Vec<String> = name.split('.').map(str::to_owned).collect();
            let valid = |s: &String| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !path.iter().all(valid) {
                return Err(format!(
                    "placeholder {{{{{name}}}}}: a field is letters, digits, `_` and `-`, joined by `.`"
                ));
            }
            pieces.push(Piece::Field(path));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err("a `}}` without its `{{`".into());
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        let template = Template { pieces };
        let sample = template.fill(&|_| Some("x".into()));
        let root = xml::parse(sample.as_bytes(), limits)
            .map_err(|e| format!("the template is not one well-formed element: {e}"))?;
        if root.local != operation {
            return Err(format!(
                "the template's element is <{}>, not the operation {operation:?}",
                root.local
            ));
        }
        Ok(template)
    }

    fn fill(&self, value: &dyn Fn(&[String]) -> Option<String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(path) => out.push_str(&xml::escape(&value(path).unwrap_or_default())),
            }
        }
        out
    }

    /// Fills the template from a JSON object.
    pub fn render(&self, input: &Value) -> Result<String, String> {
        for piece in &self.pieces {
            if let Piece::Field(path) = piece {
                scalar(input, path)?;
            }
        }
        Ok(self.fill(&|path| scalar(input, path).ok()))
    }

    /// The fields the template reads, dotted.
    pub fn fields(&self) -> Vec<String> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(path) => Some(path.join(".")),
                Piece::Text(_) => None,
            })
            .collect()
    }
}

fn scalar(input: &Value, path: &[String]) -> Result<String, String> {
    let mut at = input;
    for step in path {
        at = at
            .get(step)
            .ok_or_else(|| format!("field {:?} is missing", path.join(".")))?;
    }
    match at {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!(
            "field {:?} must be a string, number or boolean",
            path.join(".")
        )),
    }
}

/// Wraps a body element in an envelope of `version` (no header: WS-Security is added later).
pub fn envelope(version: Version, body_element: &str) -> String {
    let ns = version.namespace();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"{ns}\"><soap:Body>{body_element}</soap:Body></soap:Envelope>"
    )
}

/// An element path (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementPath {
    steps: Vec<String>,
    attribute: Option<String>,
    many: bool,
}

impl ElementPath {
    /// Parses `a/b/c`, `a/b/@id` or `a/b[]`.
    pub fn parse(text: &str) -> Result<ElementPath, String> {
        let (text, many) = match text.strip_suffix("[]") {
            Some(t) => (t, true),
            None => (text, false),
        };
        let mut steps: Vec<String> = text.split('/').map(str::to_owned).collect();
        let attribute = match steps.last().and_then(|s| s.strip_prefix('@')) {
            Some(a) => {
                let a = a.to_owned();
                steps.pop();
                Some(a)
            }
            None => None,
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if steps.is_empty()
            || !steps.iter().all(|s| name_ok(s))
            || attribute.as_deref().is_some_and(|a| !name_ok(a))
        {
            return Err(format!(
                "element path {text:?}: local names joined by `/`, optionally ending in `@attribute` or `[]`"
            ));
        }
        if many && attribute.is_some() {
            return Err(format!(
                "element path {text:?}: `[]` does not combine with `@`"
            ));
        }
        Ok(ElementPath {
            steps,
            attribute,
            many,
        })
    }

    /// The values this path selects below `body`.
    pub fn select(&self, body: &Element) -> Vec<String> {
        let mut at: Vec<&Element> = vec![body];
        for step in &self.steps {
            at = at
                .iter()
                .flat_map(|e| e.children.iter().filter(|c| &c.local == step))
                .collect();
        }
        match &self.attribute {
            Some(a) => at
                .iter()
                .filter_map(|e| e.attribute(a).map(str::to_owned))
                .collect(),
            None => at.iter().map(|e| e.text.trim().to_owned()).collect(),
        }
    }

    /// The JSON value this path gives for a response body.
    pub fn json(&self, body: &Element) -> Value {
        let found = self.select(body);
        if self.many {
            Value::Array(found.into_iter().map(Value::String).collect())
        } else {
            found.into_iter().next().map_or(Value::Null, Value::String)
        }
    }
}

/// Maps a response envelope to a JSON object with `mapping` (field name → element path).
pub fn map_response(envelope: &Envelope, mapping: &[(String, ElementPath)]) -> Value {
    let mut out = Map::new();
    if let Some(body) = envelope.body() {
        for (field, path) in mapping {
            out.insert(field.clone(), path.json(body));
        }
    }
    Value::Object(out)
}

/// The personal-data hook: calls `visit(path, value)` for every text value and attribute
/// below `Body` whose element path (the module's syntax, without `[]`) is in `paths`. The
/// personal-data mechanism commits to each such value; this module only finds them.
pub fn visit_fields(envelope: &Envelope, paths: &[ElementPath], visit: &mut dyn FnMut(&str, &str)) {
    let Some(body) = envelope.body() else { return };
    for path in paths {
        let name = path.to_string();
        for value in path.select(body) {
            visit(&name, &value);
        }
    }
}

impl std::fmt::Display for ElementPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.steps.join("/"))?;
        if let Some(a) = &self.attribute {
            write!(f, "/@{a}")?;
        }
        if self.many {
            f.write_str("[]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_and_escape() {
        let limits = Limits::default();
        let t = Template::parse(
            "<m:GetPegawai xmlns:m=\"urn:simpeg\"><nip>{{nip}}</nip><unit>{{ org.unit }}</unit></m:GetPegawai>",
            "GetPegawai",
            &limits,
        )
        .expect("parses");
        assert_eq!(t.fields(), ["nip", "org.unit"]);
        let out = t
            .render(&json!({"nip": "1980<&>", "org": {"unit": 7}}))
            .expect("renders");
        assert_eq!(out, "<m:GetPegawai xmlns:m=\"urn:simpeg\"><nip>1980&lt;&amp;&gt;</nip><unit>7</unit></m:GetPegawai>");
        assert!(t.render(&json!({"nip": "1"})).is_err());
        assert!(t.render(&json!({"nip": null, "org": {"unit": 1}})).is_err());
        assert!(t
            .render(&json!({"nip": ["x"], "org": {"unit": 1}}))
            .is_err());
        for bad in [
            "<a>{{x}}</a>",
            "<GetPegawai>{{x</GetPegawai>",
            "<GetPegawai>{{a b}}</GetPegawai>",
            "<GetPegawai>",
            "<!DOCTYPE x><GetPegawai/>",
            "<GetPegawai>&e;</GetPegawai>",
        ] {
            assert!(
                Template::parse(bad, "GetPegawai", &limits).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn responses_map_to_json() {
        let doc = envelope(
            Version::V11,
            "<r:GetPegawaiResponse xmlns:r=\"urn:simpeg\"><nama>Siti</nama><jabatan kode=\"J1\">Kepala</jabatan><jabatan>Staf</jabatan></r:GetPegawaiResponse>",
        );
        let e = Envelope::read(doc.as_bytes(), Version::V11, &Limits::default()).expect("reads");
        let mapping: Vec<(String, ElementPath)> = [
            ("nama", "GetPegawaiResponse/nama"),
            ("kode", "GetPegawaiResponse/jabatan/@kode"),
            ("jabatan", "GetPegawaiResponse/jabatan[]"),
            ("absent", "GetPegawaiResponse/alamat"),
        ]
        .iter()
        .map(|(f, p)| (f.to_string(), ElementPath::parse(p).expect("path")))
        .collect();
        assert_eq!(
            map_response(&e, &mapping),
            json!({"nama": "Siti", "kode": "J1", "jabatan": ["Kepala", "Staf"], "absent": null})
        );
        let mut seen = Vec::new();
        visit_fields(
            &e,
            &[ElementPath::parse("GetPegawaiResponse/nama").expect("path")],
            &mut |p, v| seen.push(format!("{p}={v}")),
        );
        assert_eq!(seen, ["GetPegawaiResponse/nama=Siti"]);
        for bad in ["", "a//b", "a/@", "a/@x[]", "a b"] {
            assert!(ElementPath::parse(bad).is_err(), "{bad}");
        }
    }
}
