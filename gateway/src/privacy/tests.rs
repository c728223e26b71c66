//! Declarations, extraction and masking, without a socket.

use super::*;
use penghubung_evidence::personal::commitment;

fn keyring() -> Arc<Keyring> {
    Arc::new(
        Keyring::parse(&format!(
            "current = \"k1\"\n[[key]]\nid = \"k1\"\nsecret = \"{}\"\n",
            "ab".repeat(32)
        ))
        .unwrap(),
    )
}

fn spec() -> PersonalSpec {
    toml::from_str(
        r#"
        path = { nik = "nik" }
        query = { nik = "nik" }
        headers = { "X-NIK" = "nik" }
        json = { "/nik" = "nik", "/anggota/*/nik" = "nik", "/alamat" = "address" }
        xml = { "/Envelope/Body/*/NIK" = "nik" }
        "#,
    )
    .unwrap()
}

const ROUTES: &[&str] = &["/penduduk/{nik}", "/penduduk/{nik}/keluarga", "/lain/*"];

#[test]
fn validation_refuses_undeclared_keyless_and_unknown_parameters() {
    let msgs = |v: Vec<(String, String)>| v.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
    assert!(validate_service(true, Some(&spec()), ROUTES, true).is_empty());
    assert!(validate_service(false, None, ROUTES, false).is_empty());
    assert_eq!(
        msgs(validate_service(true, None, ROUTES, true)),
        ["personal"]
    );
    assert_eq!(
        msgs(validate_service(
            true,
            Some(&PersonalSpec::default()),
            ROUTES,
            true
        )),
        ["personal"]
    );
    assert_eq!(
        msgs(validate_service(true, Some(&spec()), ROUTES, false)),
        ["personal_data"]
    );
    assert_eq!(
        msgs(validate_service(false, Some(&spec()), ROUTES, true)),
        ["personal"]
    );
    let bad: PersonalSpec = toml::from_str(
        r#"
        path = { nip = "nip" }
        headers = { "bad header" = "nik" }
        json = { "nik" = "nik" }
        xml = { "/soap:Envelope" = "nik" }
        "#,
    )
    .unwrap();
    let mut found = msgs(validate_service(true, Some(&bad), ROUTES, true));
    found.sort();
    assert_eq!(
        found,
        [
            "personal.headers.bad header",
            "personal.json.\"nik\"",
            "personal.path.nip",
            "personal.xml.\"/soap:Envelope\""
        ]
    );
    // An unknown category or table is a parse error.
    assert!(toml::from_str::<PersonalSpec>("path = { nik = \"ktp\" }").is_err());
    assert!(toml::from_str::<PersonalSpec>("cookie = {}").is_err());
}

fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

#[test]
fn a_request_is_committed_and_masked() {
    let policy = Arc::new(ServicePolicy::compile(&spec(), ROUTES).unwrap());
    let privacy = Privacy::new(Some(keyring()), std::slice::from_ref(&policy));
    let nik = "3201012304850007";
    let h = head(
        &format!("/penduduk/{nik}/keluarga?nik={nik}&nik=1&x=2"),
        &[("x-nik", nik)],
    );
    let seen = privacy
        .observe(
            &policy,
            1,
            &Observed {
                exchange_id: "ex",
                path: h.uri.path(),
                query: h.uri.query(),
                headers: &h.headers,
                digested_headers: b"",
            },
        )
        .unwrap();
    let places: Vec<(&str, &str, u32)> = seen
        .values
        .iter()
        .map(|v| (v.location.as_str(), v.field.as_str(), v.occurrence))
        .collect();
    assert_eq!(
        places,
        [
            ("path", "nik", 0),
            ("query", "nik", 0),
            ("query", "nik", 1),
            ("header", "x-nik", 0)
        ]
    );
    let k = keyring();
    let keys = k.current();
    let salt = keys.salt(
        "ex",
        Place {
            direction: "request",
            location: "path",
            field: "nik",
            occurrence: 0,
        },
    );
    assert_eq!(
        commitment(&salt, nik.as_bytes())[..],
        seen.values[0].commitment[..]
    );
    let fp = fingerprint(keys, Category::Nik, nik.as_bytes());
    assert_eq!(seen.masked_path, format!("/penduduk/{fp}/keluarga"));
    assert_eq!(seen.template, "/penduduk/{nik}/keluarga");
    assert_eq!(
        seen.mask(&format!("upstream refused /penduduk/{nik}")),
        format!("upstream refused /penduduk/{fp}")
    );
    // Unrouted: the template of any personal-data route.
    assert_eq!(
        privacy.mask_path(&format!("/penduduk/{nik}")),
        format!("/penduduk/{fp}")
    );
    assert_eq!(privacy.mask_path("/lain/3201"), "/lain/3201");
    let unrouted = privacy
        .observe_unrouted(&Observed {
            exchange_id: "ex",
            path: &format!("/penduduk/{nik}"),
            query: None,
            headers: &http::HeaderMap::new(),
            digested_headers: b"",
        })
        .unwrap();
    assert_eq!(unrouted.template, "/penduduk/{nik}");
    assert!(unrouted.policy.is_none());
    // No key: nothing observed (validation refuses that config anyway).
    assert!(Privacy::new(None, std::slice::from_ref(&policy))
        .observe_unrouted(&Observed {
            exchange_id: "ex",
            path: "/penduduk/1",
            query: None,
            headers: &http::HeaderMap::new(),
            digested_headers: b"",
        })
        .is_none());
}

#[test]
fn json_and_xml_fields() {
    let policy = ServicePolicy::compile(&spec(), ROUTES).unwrap();
    let k = keyring();
    let body = br#"{"nik":"1","anggota":[{"nik":"2"},{"nama":"x"},{"nik":"3"}],"alamat":{"kota":"Bogor"}}"#;
    let values = policy.commit_json(k.current(), "ex", "response", body);
    let fields: Vec<(&str, &str)> = values
        .iter()
        .map(|v| (v.field.as_str(), v.category.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("/alamat", "address"),
            ("/anggota/0/nik", "nik"),
            ("/anggota/2/nik", "nik"),
            ("/nik", "nik")
        ]
    );
    let opened = k
        .current()
        .unseal("ex", &values[0].commitment, &values[0].sealed)
        .unwrap();
    assert_eq!(opened, br#"{"kota":"Bogor"}"#);
    assert!(policy
        .commit_json(k.current(), "ex", "request", b"not json")
        .is_empty());
    assert_eq!(
        policy.xml().category("/Envelope/Body/CariPenduduk/NIK"),
        Some("nik")
    );
    assert_eq!(policy.xml().category("/Envelope/Body/NIK"), None);
    let v = policy
        .commit_xml(
            k.current(),
            "ex",
            "request",
            "/Envelope/Body/CariPenduduk/NIK",
            0,
            b"3201",
        )
        .unwrap();
    assert_eq!((v.location.as_str(), v.category.as_str()), ("xml", "nik"));
    assert!(policy
        .commit_xml(k.current(), "ex", "request", "/Envelope/Body/Nama", 0, b"x")
        .is_none());
}

#[test]
fn same_value_same_fingerprint_longest_first() {
    let k = keyring();
    let values = vec![
        ("3201".to_owned(), Category::Nik),
        ("3201012304850007".to_owned(), Category::Nik),
    ];
    let masked = mask_values(
        k.current(),
        "a=3201012304850007 b=3201012304850007",
        &values,
    );
    let fp = fingerprint(k.current(), Category::Nik, b"3201012304850007");
    assert_eq!(masked, format!("a={fp} b={fp}"));
}

#[test]
fn soap_elements_are_committed_by_path() {
    let policy = ServicePolicy::compile(&spec(), ROUTES).unwrap();
    let k = keyring();
    let body = br#"<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:dukcapil">
  <soap:Body><m:CariPenduduk><m:NIK>3201&#48;12304850007</m:NIK><m:NIK><![CDATA[3201015507900002]]></m:NIK><m:Nama>Siti &amp; Ani</m:Nama></m:CariPenduduk></soap:Body>
</soap:Envelope>"#;
    let values = policy.commit_body(k.current(), "ex", "request", body);
    let fields: Vec<(&str, u32)> = values
        .iter()
        .map(|v| (v.field.as_str(), v.occurrence))
        .collect();
    assert_eq!(
        fields,
        [
            ("/Envelope/Body/CariPenduduk/NIK", 0),
            ("/Envelope/Body/CariPenduduk/NIK", 1)
        ]
    );
    let open = |i: usize| {
        k.current()
            .unseal("ex", &values[i].commitment, &values[i].sealed)
            .unwrap()
    };
    assert_eq!(open(0), b"3201012304850007");
    assert_eq!(open(1), b"3201015507900002");
    assert!(policy
        .commit_body(k.current(), "ex", "request", b"<a><b>unclosed</a>")
        .is_empty());
}
