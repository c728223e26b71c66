//! The hardened XML reader every SOAP byte goes through (requests, responses the gateway reads,
//! WSDL documents).
//!
//! It is built on `quick-xml`, which never resolves entities and never fetches anything; on top
//! of that it **refuses** (rather than ignores) everything a hostile document uses to attack a
//! parser further down the line:
//!
//! - any document type declaration (`<!DOCTYPE`), so no internal subset, no entity
//!   declarations (billion laughs, XXE) and no external DTD;
//! - any entity reference other than the five predefined ones (`&lt;` `&gt;` `&amp;` `&apos;`
//!   `&quot;`) and character references, in text and in attribute values;
//! - processing instructions other than the XML declaration, and any encoding but UTF-8;
//! - documents larger than [`Limits::max_bytes`], nested deeper than [`Limits::max_depth`],
//!   elements with more than [`Limits::max_attributes`] attributes, or more than
//!   [`Limits::max_elements`] elements in all.
//!
//! What it accepts is read into a small tree of [`Element`]s with resolved namespaces and the
//! byte offsets of each element's tags, so callers can splice (WS-Security injection) without
//! re-serialising the client's bytes.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Limits on one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting (the root is depth 1).
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Most elements in the whole document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_attributes: 32,
            max_elements: 20_000,
        }
    }
}

/// Why a document was refused. `reason` is the stable class used in refusals and evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// `<!DOCTYPE …>`: DTDs are never processed.
    #[error("document type declarations are not accepted")]
    Dtd,
    /// A reference to an entity other than the five predefined ones.
    #[error("entity reference &{0}; is not accepted")]
    Entity(String),
    /// A processing instruction other than the XML declaration.
    #[error("processing instructions are not accepted")]
    ProcessingInstruction,
    /// Larger than the limit.
    #[error("document larger than {0} bytes")]
    TooLarge(usize),
    /// Nested deeper than the limit.
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    /// An element with too many attributes.
    #[error("an element has more than {0} attributes")]
    TooManyAttributes(usize),
    /// Too many elements.
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// Not UTF-8, or declared in another encoding.
    #[error("only UTF-8 documents are accepted")]
    Encoding,
    /// Anything else that is not a well-formed, namespace-well-formed document.
    #[error("malformed XML: {0}")]
    Malformed(String),
}

impl XmlError {
    /// Stable reason class (`xml_dtd`, `xml_entity`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            XmlError::Dtd => "xml_dtd",
            XmlError::Entity(_) => "xml_entity",
            XmlError::ProcessingInstruction => "xml_processing_instruction",
            XmlError::TooLarge(_) => "xml_too_large",
            XmlError::TooDeep(_) => "xml_too_deep",
            XmlError::TooManyAttributes(_) => "xml_too_many_attributes",
            XmlError::TooManyElements(_) => "xml_too_many_elements",
            XmlError::Encoding => "xml_encoding",
            XmlError::Malformed(_) => "xml_malformed",
        }
    }
}

/// One element: resolved name, attributes, children and where its tags are in the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI, empty when unbound.
    pub namespace: String,
    /// Local name.
    pub local: String,
    /// Prefix as written (empty for none).
    pub prefix: String,
    /// Attributes as `(qualified name, unescaped value)`, in document order.
    pub attributes: Vec<(String, String)>,
    /// Child elements, in order.
    pub children: Vec<Element>,
    /// The element's text (text and CDATA directly inside it, concatenated, references
    /// resolved).
    pub text: String,
    /// Byte offset of `<` of the start tag.
    pub start: usize,
    /// Byte offset just after the start tag's `>`.
    pub start_end: usize,
    /// Byte offset of `<` of the end tag (equal to `start_end` for an empty element).
    pub end: usize,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local == local)
    }

    /// The value of an attribute by its qualified name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every element below this one (depth first, this one first) with its path of local names
    /// from this element (`Envelope/Body/GetPegawai/nik`).
    pub fn walk<'a>(&'a self, prefix: &str, out: &mut Vec<(String, &'a Element)>) {
        let path = if prefix.is_empty() {
            self.local.clone()
        } else {
            format!("{prefix}/{}", self.local)
        };
        for child in &self.children {
            child.walk(&path, out);
        }
        out.push((path, self));
    }
}

const PREDEFINED: [(&str, char); 5] = [
    ("lt", '<'),
    ("gt", '>'),
    ("amp", '&'),
    ("apos", '\''),
    ("quot", '"'),
];

/// Reads a whole document under `limits`; returns its root element.
pub fn parse(input: &[u8], limits: &Limits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    let text = std::str::from_utf8(input).map_err(|_| XmlError::Encoding)?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let before = reader_position(&reader);
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let namespace = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(p) => {
                return Err(XmlError::Malformed(format!(
                    "unbound namespace prefix {:?}",
                    String::from_utf8_lossy(&p)
                )))
            }
        };
        let after = reader_position(&reader);
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() && stack.is_empty() => {
                let _ = start;
                return Err(XmlError::Malformed("more than one root element".into()));
            }
            Event::Start(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                stack.push(element(&start, namespace, before, after, limits)?);
            }
            Event::Empty(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements(limits.max_elements));
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep(limits.max_depth));
                }
                let mut e = element(&start, namespace, before, after, limits)?;
                e.end = after;
                close(&mut stack, &mut root, e);
            }
            Event::End(_) => {
                let mut e = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unexpected end tag".into()))?;
                e.end = before;
                close(&mut stack, &mut root, e);
            }
            Event::Text(t) => {
                let t = t.xml_content().map_err(|_| XmlError::Encoding)?;
                match stack.last_mut() {
                    Some(e) => e.text.push_str(&t),
                    None if t.trim().is_empty() => {}
                    None => return Err(XmlError::Malformed("text outside the root".into())),
                }
            }
            Event::CData(t) => {
                let t = t.decode().map_err(|_| XmlError::Encoding)?;
                match stack.last_mut() {
                    Some(e) => e.text.push_str(&t),
                    None => return Err(XmlError::Malformed("CDATA outside the root".into())),
                }
            }
            Event::GeneralRef(r) => {
                let c = resolve_reference(&r)?;
                match stack.last_mut() {
                    Some(e) => e.text.push(c),
                    None => return Err(XmlError::Malformed("reference outside the root".into())),
                }
            }
            Event::Decl(d) => {
                if let Some(enc) = d.encoding() {
                    let enc = enc.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !enc.eq_ignore_ascii_case(b"utf-8") {
                        return Err(XmlError::Encoding);
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or_else(|| XmlError::Malformed("no root element".into()))
}

fn reader_position(reader: &NsReader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

fn close(stack: &mut [Element], root: &mut Option<Element>, e: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => *root = Some(e),
    }
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(XmlError::Malformed("bad character reference".into())),
        };
    }
    let name = r.decode().map_err(|_| XmlError::Encoding)?;
    PREDEFINED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .ok_or_else(|| XmlError::Entity(name.chars().take(64).collect()))
}

fn element(
    start: &BytesStart<'_>,
    namespace: String,
    before: usize,
    after: usize,
    limits: &Limits,
) -> Result<Element, XmlError> {
    let name = start.name();
    let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let prefix = name
        .prefix()
        .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
        .unwrap_or_default();
    let mut attributes = Vec::new();
    for attr in start.attributes().with_checks(true) {
        if attributes.len() >= limits.max_attributes {
            return Err(XmlError::TooManyAttributes(limits.max_attributes));
        }
        let attr = attr.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = unescape_attribute(&attr.value)?;
        attributes.push((key, value));
    }
    Ok(Element {
        namespace,
        local,
        prefix,
        attributes,
        children: Vec::new(),
        text: String::new(),
        start: before,
        start_end: after,
        end: after,
    })
}

/// Attribute values: the five predefined entities and character references, nothing else.
fn unescape_attribute(raw: &[u8]) -> Result<String, XmlError> {
    let raw = std::str::from_utf8(raw).map_err(|_| XmlError::Encoding)?;
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail
            .find(';')
            .ok_or_else(|| XmlError::Malformed("unterminated reference in attribute".into()))?;
        let name = &tail[..end];
        let c = if let Some(num) = name.strip_prefix('#') {
            let code = match num.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => num.parse::<u32>(),
            }
            .map_err(|_| XmlError::Malformed("bad character reference".into()))?;
            char::from_u32(code)
                .filter(|c| *c != '\0')
                .ok_or_else(|| XmlError::Malformed("bad character reference".into()))?
        } else {
            PREDEFINED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
                .ok_or_else(|| XmlError::Entity(name.chars().take(64).collect()))?
        };
        out.push(c);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for an element's content or an attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(doc: &str) -> &'static str {
        parse(doc.as_bytes(), &Limits::default())
            .expect_err(doc)
            .reason()
    }

    #[test]
    fn reads_namespaces_text_and_offsets() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?><s:E xmlns:s="urn:s"><s:B a="1 &amp; &#50;"><x xmlns="urn:x">a &lt; b<![CDATA[<c>]]></x><y/></s:B></s:E>"#;
        let root = parse(doc.as_bytes(), &Limits::default()).expect("parses");
        assert_eq!(
            (root.namespace.as_str(), root.local.as_str()),
            ("urn:s", "E")
        );
        let body = root.child("B").expect("B");
        assert_eq!(body.attribute("a"), Some("1 & 2"));
        let x = &body.children[0];
        assert_eq!(
            (x.namespace.as_str(), x.text.as_str()),
            ("urn:x", "a < b<c>")
        );
        assert_eq!(
            &doc[body.start..body.start_end],
            r#"<s:B a="1 &amp; &#50;">"#
        );
        assert_eq!(&doc[body.end..body.end + 6], "</s:B>");
        let y = &body.children[1];
        assert_eq!(&doc[y.start..y.end], "<y/>");
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert_eq!(refuse(laughs), "xml_dtd");
        let xxe = r#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
        assert_eq!(refuse(xxe), "xml_dtd");
        assert_eq!(
            refuse(r#"<!DOCTYPE foo SYSTEM "http://evil/x.dtd"><foo/>"#),
            "xml_dtd"
        );
        assert_eq!(refuse("<foo>&xxe;</foo>"), "xml_entity");
        assert_eq!(refuse(r#"<foo a="&xxe;"/>"#), "xml_entity");
        assert_eq!(
            refuse(r#"<?xml-stylesheet href="x"?><foo/>"#),
            "xml_processing_instruction"
        );
        assert_eq!(
            refuse(&format!("{}{}", "<a>".repeat(40), "</a>".repeat(40))),
            "xml_too_deep"
        );
        let attrs: String = (0..40).map(|i| format!(" a{i}=\"1\"")).collect();
        assert_eq!(refuse(&format!("<a{attrs}/>")), "xml_too_many_attributes");
        assert_eq!(
            refuse(r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#),
            "xml_encoding"
        );
        assert_eq!(refuse("<a><b></a>"), "xml_malformed");
        assert_eq!(refuse("<a/><b/>"), "xml_malformed");
        assert_eq!(refuse("<p:a/>"), "xml_malformed");
        assert_eq!(refuse(""), "xml_malformed");
        let big = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            parse(b"<a>0123456789</a>", &big).expect_err("big").reason(),
            "xml_too_large"
        );
    }

    #[test]
    fn escape_round_trips() {
        let text = "a<b>&\"c'";
        let doc = format!("<a x=\"{0}\">{0}</a>", escape(text));
        let root = parse(doc.as_bytes(), &Limits::default()).expect("parses");
        assert_eq!(
            (root.text.as_str(), root.attribute("x")),
            (text, Some(text))
        );
    }
}
