//! SOAP services (upstream kind `soap`) against a real SOAP back end (node-soap, SOAP 1.1 and
//! 1.2): operation-level grants, SOAP faults for the gateway's refusals, the WSDL rewritten to
//! the gateway, hostile XML refused with nothing forwarded, JSON→SOAP→JSON mediation, and the
//! WS-Security UsernameToken that reaches the back end and never the client.

use penghubung_e2e::evidence::records;
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::raw::{send, RawResponse};
use penghubung_e2e::soap::SoapServer;
use penghubung_evidence::schema::{record::Kind, Outcome, Refused, Request};
use sha2::{Digest, Sha256};

const KEY: &str = "kunci-soap-bkd";
const PASSWORD: &str = "sandi-rahasia-simpeg-7f3a";
const NS11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS12: &str = "http://www.w3.org/2003/05/soap-envelope";

fn config(dir: &std::path::Path, up11: &SoapServer, up12: &SoapServer) -> String {
    std::fs::write(dir.join("wsse.txt"), format!("{PASSWORD}\n")).expect("writes the secret");
    let key = hex::encode(Sha256::digest(KEY.as_bytes()));
    format!(
        r#"
node_id = "soap-test"

[[listener]]
name = "main"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"

[evidence]
dir = "@EVIDENCE_DIR@"
checkpoint_interval_secs = 3600

[[upstream]]
name = "simpeg11"
kind = "soap"
targets = ["{a11}"]

[upstream.soap]
public_url = "https://api.pemda.go.id/simpeg"
username_token = {{ username = "gateway-bkd", password_file = "{wsse}" }}

[[upstream.soap.mediate]]
path = "/rest/pegawai"
operation = "GetPegawai"
endpoint = "/simpeg"
action = "urn:simpeg#GetPegawai"
request = '<m:GetPegawai xmlns:m="urn:simpeg"><nip>{{{{nip}}}}</nip></m:GetPegawai>'
response = {{ nip = "GetPegawaiResponse/nip", nama = "GetPegawaiResponse/nama", jabatan = "GetPegawaiResponse/jabatan[]", pengguna = "GetPegawaiResponse/pengguna" }}

[[upstream.soap.mediate]]
path = "/rest/gagal"
operation = "GagalPegawai"
endpoint = "/simpeg"
request = '<m:GagalPegawai xmlns:m="urn:simpeg"><nip>{{{{nip}}}}</nip></m:GagalPegawai>'

[[upstream]]
name = "simpeg12"
kind = "soap"
targets = ["{a12}"]

[upstream.soap]
public_url = "https://api.pemda.go.id/simpeg12"

[[service]]
id = "simpeg"
owner_opd = "bkd"
hosts = ["simpeg.test"]
upstream = "simpeg11"

[[service.route]]
path = "/simpeg"
methods = ["GET", "POST"]

[[service.route]]
path = "/rest/*"
methods = ["POST"]

[[service]]
id = "simpeg12"
owner_opd = "bkd"
hosts = ["simpeg12.test"]
upstream = "simpeg12"

[[service.route]]
path = "/simpeg"
methods = ["GET", "POST"]

[[opd]]
id = "bkd"
name = "Badan Kepegawaian Daerah"

[[opd]]
id = "disdik"
name = "Dinas Pendidikan"

[[application]]
id = "sekolah"
opd = "disdik"
name = "Aplikasi Sekolah"

[application.credentials]
api_key_sha256 = ["{key}"]

[[grant]]
id = "sekolah-simpeg"
application = "sekolah"
service = "simpeg"
tujuan = "Verifikasi guru"
cakupan = [
    {{ methods = ["GET", "POST"], paths = ["/simpeg", "/rest/*"], operations = ["GetPegawai"] }},
    {{ methods = ["POST"], paths = ["/rest/*"], operations = ["GagalPegawai"] }},
]
consent = {{ by = "Kepala BKD", at = "2026-01-05T09:00:00+07:00" }}

# Another grant names GagalPegawai on the SOAP path, with its own limit.
[[grant]]
id = "sekolah-simpeg-gagal"
application = "sekolah"
service = "simpeg"
tujuan = "Uji kesalahan"
cakupan = [{{ methods = ["POST"], paths = ["/simpeg"], operations = ["GagalPegawai"] }}]
limits = {{ rate = "1/min" }}
consent = {{ by = "Kepala BKD", at = "2026-01-05T09:00:00+07:00" }}

[[grant]]
id = "sekolah-simpeg12"
application = "sekolah"
service = "simpeg12"
tujuan = "Verifikasi guru"
cakupan = [{{ methods = ["GET", "POST"], paths = ["/simpeg"], operations = ["GetPegawai"] }}]
consent = {{ by = "Kepala BKD", at = "2026-01-05T09:00:00+07:00" }}
"#,
        a11 = up11.addr,
        a12 = up12.addr,
        wsse = dir.join("wsse.txt").display(),
    )
}

async fn start() -> (Gateway, SoapServer, SoapServer) {
    let (up11, up12) = (
        SoapServer::start(false).await,
        SoapServer::start(true).await,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let text = config(dir.path(), &up11, &up12);
    (Gateway::start_in(dir, &text).await, up11, up12)
}

fn envelope(ns: &str, header: &str, operation: &str, nip: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><s:Envelope xmlns:s=\"{ns}\">{header}<s:Body><m:{operation} xmlns:m=\"urn:simpeg\"><nip>{nip}</nip></m:{operation}></s:Body></s:Envelope>"
    )
}

async fn call11(gw: &Gateway, action: &str, body: &str, key: bool) -> RawResponse {
    let action = format!("\"{action}\"");
    let mut headers = vec![
        ("content-type", "text/xml; charset=utf-8"),
        ("soapaction", action.as_str()),
    ];
    if key {
        headers.push(("apikey", KEY));
    }
    send(
        gw.addr,
        "POST",
        "simpeg.test",
        "/simpeg",
        &headers,
        body.as_bytes(),
    )
    .await
}

async fn call12(gw: &Gateway, action: &str, body: &str) -> RawResponse {
    let ct = format!("application/soap+xml; charset=utf-8; action=\"{action}\"");
    let headers = [("content-type", ct.as_str()), ("apikey", KEY)];
    send(
        gw.addr,
        "POST",
        "simpeg12.test",
        "/simpeg",
        &headers,
        body.as_bytes(),
    )
    .await
}

/// The fault code and the gateway's reason class of a SOAP fault answer.
fn fault_of(r: &RawResponse, ns: &str) -> (String, String) {
    let body = r.body_text();
    assert!(
        body.contains(ns),
        "a fault of the request's version: {body}"
    );
    let code = ["<faultcode>", "<env:Value>"]
        .iter()
        .find_map(|open| {
            let start = body.find(open)? + open.len();
            Some(body[start..start + body[start..].find('<')?].to_owned())
        })
        .unwrap_or_else(|| panic!("no fault code: {body}"));
    let start = body.find("<pg:reason").expect("reason");
    let start = start + body[start..].find('>').expect("tag end") + 1;
    let reason = body[start..start + body[start..].find('<').expect("text end")].to_owned();
    (code, reason)
}

fn requests(gw: &Gateway) -> Vec<Request> {
    records(&gw.dir.path().join("evidence"))
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Request(q)) => Some(q),
            _ => None,
        })
        .collect()
}

fn refusals(gw: &Gateway) -> Vec<Refused> {
    records(&gw.dir.path().join("evidence"))
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Refused(q)) => Some(q),
            _ => None,
        })
        .collect()
}

fn outcomes(gw: &Gateway) -> Vec<Outcome> {
    records(&gw.dir.path().join("evidence"))
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Outcome(q)) => Some(q),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_granted_one_by_one_and_refusals_are_soap_faults() {
    let (gw, up11, up12) = start().await;

    // SOAP 1.1: a granted operation reaches the back end (with the gateway's UsernameToken).
    let r = call11(
        &gw,
        "urn:simpeg#GetPegawai",
        &envelope(NS11, "", "GetPegawai", "1980"),
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body_text().contains("<nama>Siti Rahayu</nama>"),
        "{}",
        r.text()
    );
    assert!(
        r.body_text().contains("<pengguna>gateway-bkd</pengguna>"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains(PASSWORD),
        "the password never reaches the client"
    );
    let got = up11.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]["xml"].as_str().unwrap().contains(PASSWORD),
        "the token reached the back end"
    );
    let q = requests(&gw);
    let q = q.last().unwrap();
    assert_eq!(
        (
            q.soap_operation.as_str(),
            q.soap_version,
            q.soap_mode.as_str()
        ),
        ("GetPegawai", 11, "call")
    );
    assert_eq!(q.soap_action, "urn:simpeg#GetPegawai");
    assert_eq!(q.grant_id, "sekolah-simpeg");

    // An operation the grant does not name: a SOAP 1.1 fault, nothing forwarded, recorded.
    let r = call11(
        &gw,
        "urn:simpeg#HapusPegawai",
        &envelope(NS11, "", "HapusPegawai", "1980"),
        true,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/xml"));
    assert_eq!(
        fault_of(&r, NS11),
        ("soap:Client".into(), "grant_outside_cakupan".into())
    );
    let refused = refusals(&gw);
    let last = refused.last().unwrap();
    assert_eq!(
        (last.soap_operation.as_str(), last.soap_version, last.status),
        ("HapusPegawai", 11, 403)
    );
    // A SOAPAction naming another operation than the body is refused before authorisation.
    let r = call11(
        &gw,
        "urn:simpeg#HapusPegawai",
        &envelope(NS11, "", "GetPegawai", "1980"),
        true,
    )
    .await;
    assert_eq!(
        (r.status, fault_of(&r, NS11).1.as_str()),
        (400, "soap_action_mismatch")
    );
    // No credential: the SOAP client still gets a SOAP fault (with the HTTP challenge).
    let r = call11(&gw, "", &envelope(NS11, "", "GetPegawai", "1980"), false).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(fault_of(&r, NS11).0, "soap:Client");
    // A client's own WS-Security header is refused where the gateway injects one.
    let own = "<s:Header><w:Security xmlns:w=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\"><w:UsernameToken><w:Username>admin</w:Username></w:UsernameToken></w:Security></s:Header>";
    let r = call11(&gw, "", &envelope(NS11, own, "GetPegawai", "1980"), true).await;
    assert_eq!(
        (r.status, fault_of(&r, NS11).1.as_str()),
        (400, "soap_client_security")
    );
    assert_eq!(
        up11.received().len(),
        1,
        "only the granted call reached the back end"
    );

    // An operation another grant names: that grant is recorded, and its limit applies.
    let gagal = envelope(NS11, "", "GagalPegawai", "7");
    let r = call11(&gw, "urn:simpeg#GagalPegawai", &gagal, true).await;
    assert_ne!(r.status, 429, "{}", r.text());
    assert!(
        r.body_text().contains("tidak dikenal"),
        "the back end's fault passes: {}",
        r.text()
    );
    assert_eq!(
        requests(&gw).last().unwrap().grant_id,
        "sekolah-simpeg-gagal"
    );
    let r = call11(&gw, "urn:simpeg#GagalPegawai", &gagal, true).await;
    assert_eq!(
        (r.status, fault_of(&r, NS11).1.as_str()),
        (429, "rate_limited")
    );
    assert_eq!(up11.received().len(), 2);

    // SOAP 1.2, with the action parameter.
    let r = call12(
        &gw,
        "urn:simpeg#GetPegawai",
        &envelope(NS12, "<s:Header/>", "GetPegawai", "1980"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body_text().contains(NS12) && r.body_text().contains("Siti Rahayu"),
        "{}",
        r.text()
    );
    let q = requests(&gw);
    assert_eq!(
        (
            q.last().unwrap().soap_version,
            q.last().unwrap().grant_id.as_str()
        ),
        (12, "sekolah-simpeg12")
    );
    let r = call12(
        &gw,
        "urn:simpeg#HapusPegawai",
        &envelope(NS12, "", "HapusPegawai", "1980"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/soap+xml"));
    assert_eq!(
        fault_of(&r, NS12),
        ("env:Sender".into(), "grant_outside_cakupan".into())
    );
    // A SOAPAction header is checked on 1.2 requests too (a back end may dispatch on it).
    let headers = [
        ("content-type", "application/soap+xml; charset=utf-8"),
        ("soapaction", "urn:simpeg#HapusPegawai"),
        ("apikey", KEY),
    ];
    let body = envelope(NS12, "", "GetPegawai", "1980");
    let r = send(
        gw.addr,
        "POST",
        "simpeg12.test",
        "/simpeg",
        &headers,
        body.as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, fault_of(&r, NS12).1.as_str()),
        (400, "soap_action_mismatch")
    );
    // A 1.1 envelope sent as 1.2 is not an envelope of that version.
    let r = call12(&gw, "", &envelope(NS11, "", "GetPegawai", "1980")).await;
    assert_eq!(
        (r.status, fault_of(&r, NS12).1.as_str()),
        (400, "soap_not_envelope")
    );
    assert_eq!(up12.received().len(), 1);
    assert!(
        !up12.received()[0]["xml"]
            .as_str()
            .unwrap()
            .contains("Security"),
        "no token configured for 1.2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wsdl_points_at_the_gateway() {
    let (gw, up11, up12) = start().await;
    for (host, public, up) in [
        ("simpeg.test", "https://api.pemda.go.id/simpeg", &up11),
        ("simpeg12.test", "https://api.pemda.go.id/simpeg12", &up12),
    ] {
        let r = send(
            gw.addr,
            "GET",
            host,
            "/simpeg?wsdl",
            &[("apikey", KEY)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.body_text();
        assert!(body.contains(&format!("location=\"{public}\"")), "{body}");
        assert!(
            !body.contains(&up.addr.to_string()),
            "the back end's address is gone: {body}"
        );
        assert!(
            body.contains("<portType name=\"SimpegPort\">"),
            "the rest is passed on: {body}"
        );
    }
    let q = requests(&gw);
    assert!(q
        .iter()
        .all(|q| q.soap_mode == "wsdl" && q.soap_operation.is_empty()));
    let o = outcomes(&gw);
    assert!(
        o.iter()
            .all(|o| o.soap_upstream_sha256.len() == 32
                && o.response_sha256 != o.soap_upstream_sha256)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_xml_is_refused_and_nothing_is_forwarded() {
    let (gw, up11, _up12) = start().await;
    let body_with = |inner: &str| {
        format!("<s:Envelope xmlns:s=\"{NS11}\"><s:Body><m:GetPegawai xmlns:m=\"urn:simpeg\">{inner}</m:GetPegawai></s:Body></s:Envelope>")
    };
    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]>{}",
        body_with("<nip>&d;</nip>")
    );
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        body_with("<nip>&x;</nip>")
    );
    let external = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope SYSTEM \"http://127.0.0.1:9/evil.dtd\">{}",
        body_with("<nip>1</nip>")
    );
    let deep = body_with(&format!("{}1980{}", "<x>".repeat(200), "</x>".repeat(200)));
    let attrs: String = (0..100).map(|i| format!(" a{i}=\"1\"")).collect();
    let wide = body_with(&format!("<nip{attrs}>1980</nip>"));
    let undeclared = body_with("<nip>&x;</nip>");
    let pi = format!(
        "<?xml-stylesheet href=\"http://127.0.0.1:9/x.xsl\"?>{}",
        body_with("<nip>1</nip>")
    );
    let latin1 = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{}",
        body_with("<nip>1</nip>")
    );
    for (name, doc, reason) in [
        ("billion laughs", laughs, "xml_dtd"),
        ("XXE", xxe, "xml_dtd"),
        ("external DTD", external, "xml_dtd"),
        ("deep nesting", deep, "xml_too_deep"),
        ("attributes", wide, "xml_too_many_attributes"),
        ("undeclared entity", undeclared, "xml_entity"),
        ("processing instruction", pi, "xml_processing_instruction"),
        ("other encoding", latin1, "xml_encoding"),
    ] {
        let r = call11(&gw, "urn:simpeg#GetPegawai", &doc, true).await;
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert_eq!(
            fault_of(&r, NS11),
            ("soap:Client".into(), reason.into()),
            "{name}"
        );
    }
    assert!(up11.received().is_empty(), "nothing reached the back end");
    assert!(
        requests(&gw).is_empty(),
        "nothing was forwarded, so no request record"
    );
    assert_eq!(refusals(&gw).len(), 8);
    // The gateway still serves well-formed calls.
    let r = call11(&gw, "", &envelope(NS11, "", "GetPegawai", "1980"), true).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn json(gw: &Gateway, path: &str, body: &str) -> RawResponse {
    let headers = [("content-type", "application/json"), ("apikey", KEY)];
    send(
        gw.addr,
        "POST",
        "simpeg.test",
        path,
        &headers,
        body.as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_client_calls_the_soap_back_end_through_json_mediation() {
    let (gw, up11, _up12) = start().await;
    let r = json(&gw, "/rest/pegawai", r#"{"nip": "1980<&>"}"#).await;
    assert_eq!(r.status, 200, "{} {:?}", r.text(), up11.received());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "nip": "1980<&>",
            "nama": "Siti Rahayu",
            "jabatan": ["Kepala Seksi", "Plt. Kepala Bidang"],
            "pengguna": "gateway-bkd",
        })
    );
    assert!(!r.text().contains(PASSWORD));
    let got = up11.received();
    let sent = got[0]["xml"].as_str().unwrap();
    assert!(
        sent.contains("<nip>1980&lt;&amp;&gt;</nip>"),
        "escaped into the template: {sent}"
    );
    assert!(
        sent.contains(PASSWORD) && sent.contains("UsernameToken"),
        "{sent}"
    );
    assert_eq!(got[0]["soapaction"], "\"urn:simpeg#GetPegawai\"");
    let q = requests(&gw);
    let q = q.last().unwrap();
    assert_eq!(
        (q.soap_mode.as_str(), q.soap_operation.as_str()),
        ("mediated", "GetPegawai")
    );
    assert_eq!(q.soap_envelope_sha256.len(), 32);
    let o = outcomes(&gw);
    assert_eq!(o.last().unwrap().soap_upstream_sha256.len(), 32);

    // A SOAP fault becomes problem+json.
    let r = json(&gw, "/rest/gagal", r#"{"nip": "404"}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["reason"].as_str(), v["fault_code"].as_str()),
        (Some("soap_fault"), Some("soap:Client"))
    );
    assert_eq!(v["detail"], "nip 404 tidak dikenal");
    assert_eq!(outcomes(&gw).last().unwrap().soap_fault_code, "soap:Client");

    // Bad input is refused with problem+json (a JSON client), nothing forwarded.
    let before = up11.received().len();
    for body in [
        r#"{"nama": "x"}"#,
        r#"["1980"]"#,
        "not json",
        r#"{"nip": {"a": 1}}"#,
    ] {
        let r = json(&gw, "/rest/pegawai", body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    assert_eq!(up11.received().len(), before);

    // A back end that echoes the password: the client never sees it.
    let r = json(&gw, "/rest/pegawai", r#"{"nip": "bocor"}"#).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains(PASSWORD));
    let leak = envelope(NS11, "", "GetPegawai", "bocor");
    let r = call11(&gw, "", &leak, true).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(!r.text().contains(PASSWORD));
}
