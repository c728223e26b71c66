//! WSDL served through the gateway: the back end's WSDL, read with the hardened reader, with
//! the `location` of every `soap:address` and `soap12:address` rewritten to the service's
//! public URL, so clients generated from it call the gateway and never the back end directly.
//! Everything else is passed on byte for byte.

use crate::xml::{self, escape, Element, Limits};

const NS_WSDL_SOAP11: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const NS_WSDL_SOAP12: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

/// Rewrites the endpoint addresses of a WSDL document to `public_url`; returns the document and
/// how many addresses were rewritten.
pub fn rewrite(
    wsdl: &[u8],
    public_url: &str,
    limits: &Limits,
) -> Result<(Vec<u8>, usize), xml::XmlError> {
    let root = xml::parse(wsdl, limits)?;
    let mut all = Vec::new();
    root.walk("", &mut all);
    let mut addresses: Vec<&Element> = all
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| {
            e.local == "address"
                && (e.namespace == NS_WSDL_SOAP11 || e.namespace == NS_WSDL_SOAP12)
                && e.attribute("location").is_some()
        })
        .collect();
    addresses.sort_by_key(|e| e.start);
    let mut out = Vec::with_capacity(wsdl.len() + 64);
    let mut at = 0;
    for e in &addresses {
        out.extend_from_slice(&wsdl[at..e.start]);
        let name = if e.prefix.is_empty() {
            e.local.clone()
        } else {
            format!("{}:{}", e.prefix, e.local)
        };
        let mut tag = format!("<{name}");
        for (k, v) in &e.attributes {
            let v = if k == "location" { public_url } else { v };
            tag.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
        tag.push_str(if wsdl[..e.start_end].ends_with(b"/>") {
            "/>"
        } else {
            ">"
        });
        out.extend_from_slice(tag.as_bytes());
        at = e.start_end;
    }
    out.extend_from_slice(&wsdl[at..]);
    Ok((out, addresses.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_point_at_the_gateway() {
        let doc = format!(
            "<definitions xmlns=\"http://schemas.xmlsoap.org/wsdl/\" xmlns:soap=\"{NS_WSDL_SOAP11}\" xmlns:soap12=\"{NS_WSDL_SOAP12}\"><service name=\"S\"><port name=\"p\"><soap:address location=\"http://10.0.0.5:8080/ws\"/></port><port name=\"q\"><soap12:address location=\"http://10.0.0.5:8080/ws\"></soap12:address></port><port name=\"h\"><address location=\"http://10.0.0.5/keep\"/></port></service></definitions>"
        );
        let (out, n) = rewrite(
            doc.as_bytes(),
            "https://api.example.go.id/simpeg?x=1&y=2",
            &Limits::default(),
        )
        .expect("rewrites");
        let out = String::from_utf8(out).expect("utf8");
        assert_eq!(n, 2);
        assert_eq!(
            out.matches("https://api.example.go.id/simpeg?x=1&amp;y=2")
                .count(),
            2,
            "{out}"
        );
        assert!(!out.contains("10.0.0.5:8080"), "{out}");
        assert!(
            out.contains("http://10.0.0.5/keep"),
            "not a SOAP address: {out}"
        );
        assert!(rewrite(b"<!DOCTYPE d><d/>", "x", &Limits::default()).is_err());
    }
}
