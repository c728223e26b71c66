//! Personal data end to end (README, "Personal data"; proto/README.md §16): the `penghubung`
//! binary serving a personal-data service, a NIK in the path, the query, a header and the JSON
//! bodies of request and response; then the evidence segments, the access log and the error
//! bodies searched byte by byte, the brute-force attack tried with and without the key, a
//! disclosure made, recorded and checked against the bundle, and a key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use penghubung_e2e::gateway::gateway_binary;
use penghubung_e2e::raw::{request, request_bytes, RawResponse};
use penghubung_e2e::testkit::dir::temp_dir;
use penghubung_e2e::testkit::free_port;
use penghubung_e2e::upstream::{Behaviour, Upstream};
use penghubung_evidence::personal::Keyring;
use penghubung_evidence::schema::{record::Kind, Record};
use sha2::Digest as _;

const NIK: &str = "3201012304850007";
const OTHER: &str = "3201015507900002";

use penghubung_e2e::process::Proc;

fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    evidence: &Path,
    key: &Path,
    echo: SocketAddr,
    json: SocketAddr,
) -> String {
    format!(
        r#"node_id = "privacy-test"

[[listener]]
name = "main"
address = "{listen}"

[admin]
address = "{admin}"

[log]
access_log = true
json = true

[evidence]
dir = "{evidence}"
checkpoint_interval_secs = 1

[privacy]
key_file = "{key}"

[[upstream]]
name = "echo"
targets = ["{echo}"]

[[upstream]]
name = "json"
targets = ["{json}"]

[[service]]
id = "dukcapil"
hosts = ["data.test"]
upstream = "echo"
personal_data = true

[service.auth]
anonymous = true

[[service.route]]
path = "/penduduk/{{nik}}"
methods = ["GET", "POST"]

[[service.route]]
path = "/penduduk/{{nik}}/foto"
action = "deny"

[service.personal]
path = {{ nik = "nik" }}
query = {{ nik = "nik" }}
headers = {{ "x-nik" = "nik" }}
json = {{ "/nik" = "nik", "/nama" = "name" }}

[[service]]
id = "cari"
hosts = ["json.test"]
upstream = "json"
personal_data = true

[service.auth]
anonymous = true

[[service.route]]
path = "/cari/{{nik}}"
methods = ["GET"]

[service.personal]
path = {{ nik = "nik" }}
json = {{ "/nik" = "nik", "/nama" = "name" }}
"#,
        evidence = evidence.display(),
        key = key.display(),
    )
}

fn records(dir: &Path) -> Vec<(u64, Record)> {
    let mut out = Vec::new();
    penghubung_evidence::verify::scan(dir, &mut |s| {
        out.push((s.record.sequence, s.record));
        true
    })
    .unwrap();
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn penghubung(args: &[&str]) -> std::process::Output {
    Command::new(gateway_binary()).args(args).output().unwrap()
}

fn request_of<'r>(
    records: &'r [(u64, Record)],
    id: &str,
) -> (u64, &'r penghubung_evidence::schema::Request) {
    records
        .iter()
        .find_map(|(seq, r)| match &r.kind {
            Some(Kind::Request(q)) if r.exchange_id == id => Some((*seq, q)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no request record of {id}"))
}

async fn call(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    request(addr, &request_bytes(method, host, path, headers, body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nik_is_nowhere_in_clear_yet_provable_and_disclosable_across_a_key_rotation() {
    let work = temp_dir("privacy");
    let evidence = work.path().join("evidence");
    let key = work.path().join("keys.toml");
    let out = penghubung(&[
        "evidence",
        "keys",
        "rotate",
        key.to_str().unwrap(),
        "--id",
        "k1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let echo = Upstream::echo().await;
    let json_body = format!(r#"{{"nik":"{NIK}","nama":"Siti Aminah"}}"#);
    let json = Upstream::start(
        "json",
        Behaviour::Raw {
            bytes: format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json_body}",
                json_body.len()
            )
            .into_bytes(),
            close: true,
        },
    )
    .await;
    let (listen, admin): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    );
    let config_file = work.path().join("gateway.toml");
    std::fs::write(
        &config_file,
        config(listen, admin, &evidence, &key, echo.addr, json.addr),
    )
    .unwrap();
    let log = work.path().join("gateway.log");
    let gateway = Proc::start(&config_file, admin, &log).await;

    // Path, query and header; then a small JSON body; then the response JSON of another service.
    let path = format!("/penduduk/{NIK}?nik={NIK}&page=1");
    let get = call(listen, "GET", "data.test", &path, &[("x-nik", NIK)], b"").await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert!(get.text().contains(NIK), "the upstream saw the real path");
    let small = format!(r#"{{"nik":"{NIK}"}}"#);
    let post = call(
        listen,
        "POST",
        "data.test",
        &format!("/penduduk/{NIK}"),
        &[("content-type", "application/json")],
        small.as_bytes(),
    )
    .await;
    assert_eq!(post.status, 200);
    let found = call(
        listen,
        "GET",
        "json.test",
        &format!("/cari/{NIK}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(found.status, 200);
    assert!(found.text().contains("Siti Aminah"));
    // Refusals: a method no route allows (405), a deny route (403), a host nobody serves (421).
    let refusals = [
        call(
            listen,
            "DELETE",
            "data.test",
            &format!("/penduduk/{NIK}?nik={NIK}"),
            &[],
            b"",
        )
        .await,
        call(
            listen,
            "GET",
            "data.test",
            &format!("/penduduk/{NIK}/foto"),
            &[],
            b"",
        )
        .await,
        call(
            listen,
            "GET",
            "other.test",
            &format!("/penduduk/{NIK}"),
            &[],
            b"",
        )
        .await,
    ];
    assert_eq!(
        refusals.iter().map(|r| r.status).collect::<Vec<_>>(),
        [405, 403, 421]
    );
    for r in &refusals {
        assert!(
            !contains(&r.body, NIK.as_bytes()),
            "error body: {}",
            r.text()
        );
    }
    // The same person once more, and another person.
    let again = call(
        listen,
        "GET",
        "data.test",
        &format!("/penduduk/{NIK}"),
        &[],
        b"",
    )
    .await;
    let other = call(
        listen,
        "GET",
        "data.test",
        &format!("/penduduk/{OTHER}"),
        &[],
        b"",
    )
    .await;
    assert_eq!((again.status, other.status), (200, 200));

    // Key rotation while serving: a new current key, picked up by a reload; one more exchange.
    let out = penghubung(&[
        "evidence",
        "keys",
        "rotate",
        key.to_str().unwrap(),
        "--id",
        "k2",
    ]);
    assert!(out.status.success(), "{out:?}");
    gateway.reload(&log).await;
    let after = call(
        listen,
        "GET",
        "data.test",
        &format!("/penduduk/{NIK}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(after.status, 200);
    gateway.stop();

    // Nowhere in clear: not in the segments, not in the access log.
    assert!(
        !contains(&all_bytes(&evidence), NIK.as_bytes()),
        "NIK in the evidence segments"
    );
    assert!(
        !contains(&all_bytes(&evidence), b"Siti Aminah"),
        "name in the evidence segments"
    );
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains(NIK),
        "NIK in the access log:\n{log_text}"
    );
    // Same NIK, same fingerprint; another NIK, another one.
    let keys = Keyring::load(&key).unwrap();
    let k1 = keys.get("k1").unwrap();
    let fp = format!("[nik:{}]", k1.fingerprint("nik", NIK.as_bytes()));
    let other_fp = format!("[nik:{}]", k1.fingerprint("nik", OTHER.as_bytes()));
    let lines_with = |needle: &str| {
        log_text
            .lines()
            .filter(|l| l.contains("penghubung::access") && l.contains(needle))
            .count()
    };
    assert!(lines_with(&fp) >= 6, "{fp} in the access log:\n{log_text}");
    assert_eq!(lines_with(&other_fp), 1);
    assert!(log_text.contains(&format!("/penduduk/{fp}/foto")));

    // What the records keep instead.
    let all = records(&evidence);
    let (get_seq, get_rec) = request_of(&all, &get.exchange_id());
    assert_eq!(get_rec.route_template, "/penduduk/{nik}");
    assert!(get_rec.canonical_path.is_empty() && get_rec.query_sha256.is_empty());
    assert_eq!(get_rec.personal_key_id, "k1");
    let places: Vec<(&str, &str)> = get_rec
        .personal_values
        .iter()
        .map(|v| (v.location.as_str(), v.field.as_str()))
        .collect();
    assert_eq!(
        places,
        [("path", "nik"), ("query", "nik"), ("header", "x-nik")]
    );
    let refused: Vec<&penghubung_evidence::schema::Refused> = all
        .iter()
        .filter_map(|(_, r)| match &r.kind {
            Some(Kind::Refused(f)) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 3);
    assert!(refused
        .iter()
        .all(|f| f.path.starts_with("/penduduk/{nik}") && f.query_sha256.is_empty()));
    let response_values = all
        .iter()
        .find_map(|(seq, r)| match &r.kind {
            Some(Kind::Outcome(o)) if r.exchange_id == found.exchange_id() => {
                Some((*seq, o.clone()))
            }
            _ => None,
        })
        .unwrap();
    assert!(response_values.1.response_sha256.is_empty());
    assert_eq!(
        response_values
            .1
            .personal_values
            .iter()
            .map(|v| (v.field.as_str(), v.category.as_str()))
            .collect::<Vec<_>>(),
        [("/nama", "name"), ("/nik", "nik")]
    );

    // Brute force of the small body: the plain SHA-256 attack over a NIK range holding the true
    // value finds nothing in the record; the same attack with the key finds it.
    let (_, post_rec) = request_of(&all, &post.exchange_id());
    let stored: Vec<Vec<u8>> = [
        post_rec.body_sha256.to_vec(),
        post_rec.body_hmac.to_vec(),
        post_rec.body_commitment_root.to_vec(),
    ]
    .into_iter()
    .chain(
        post_rec
            .personal_values
            .iter()
            .map(|v| v.commitment.to_vec()),
    )
    .filter(|b| !b.is_empty())
    .collect();
    assert!(post_rec.body_sha256.is_empty() && !post_rec.body_hmac.is_empty());
    let truth: u64 = NIK.parse().unwrap();
    let range = truth - 20_000..truth + 20_000;
    let candidate = |n: u64| format!(r#"{{"nik":"{n:016}"}}"#);
    let plain = range
        .clone()
        .find(|n| stored.contains(&sha2::Sha256::digest(candidate(*n).as_bytes()).to_vec()));
    assert_eq!(plain, None, "plain SHA-256 recovered the NIK");
    let keyed = range.clone().find(|n| {
        stored.contains(
            &keys
                .get("k1")
                .unwrap()
                .digest("body", candidate(*n).as_bytes())
                .to_vec(),
        )
    });
    assert_eq!(keyed, Some(truth), "with the key the same search finds it");

    // After the rotation: the new key id, a fingerprint under the new key.
    assert_eq!(
        request_of(&all, &after.exchange_id()).1.personal_key_id,
        "k2"
    );
    let k2_fp = format!(
        "[nik:{}]",
        keys.get("k2").unwrap().fingerprint("nik", NIK.as_bytes())
    );
    assert_eq!(lines_with(&k2_fp), 1);

    // Disclosure of a value before and after the rotation: recorded with its actor and case,
    // verified against the bundle; a wrong value or salt is refused.
    let config_arg = config_file.to_str().unwrap();
    for (id, field, seq, response) in [
        (get.exchange_id(), "path:nik", get_seq, false),
        (
            after.exchange_id(),
            "path:nik",
            request_of(&all, &after.exchange_id()).0,
            false,
        ),
        (found.exchange_id(), "json:/nik", response_values.0, true),
    ] {
        let disclosure = work.path().join(format!("{id}.json"));
        let mut args = vec![
            "evidence",
            "disclose",
            "-c",
            config_arg,
            "--exchange",
            &id,
            "--field",
            field,
            "--actor",
            "auditor-inspektorat",
            "--case",
            "PERKARA-2026-17",
            "-o",
            disclosure.to_str().unwrap(),
        ];
        if response {
            args.push("--response");
        }
        let out = penghubung(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&disclosure).unwrap()).unwrap();
        let expected = if response {
            format!("\"{NIK}\"")
        } else {
            NIK.to_owned()
        };
        assert_eq!(d["value"], expected.as_str());
        assert_eq!(d["record_sequence"], seq);
        // Recorded: an admin record with the actor and the case, naming the commitment.
        let admin = records(&evidence)
            .into_iter()
            .find_map(|(s, r)| match r.kind {
                Some(Kind::Admin(a)) if s == d["disclosure_sequence"].as_u64().unwrap() => Some(a),
                _ => None,
            })
            .expect("the disclosure's admin record");
        assert_eq!(
            (
                admin.action.as_str(),
                admin.actor.as_str(),
                admin.reason.as_str()
            ),
            (
                "personal.disclose",
                "auditor-inspektorat",
                "PERKARA-2026-17"
            )
        );
        let disclosed = admin.disclosed.unwrap();
        assert_eq!(
            (disclosed.exchange_id.as_str(), disclosed.record_sequence),
            (id.as_str(), seq)
        );
        assert!(
            !contains(&all_bytes(&evidence), NIK.as_bytes()),
            "the disclosure record holds no value"
        );

        let bundle = work.path().join(format!("{id}.bundle.json"));
        let out = penghubung(&[
            "evidence",
            "export",
            evidence.to_str().unwrap(),
            "--exchange",
            &id,
            "-o",
            bundle.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let check = |file: &Path| {
            penghubung(&[
                "evidence",
                "check-bundle",
                bundle.to_str().unwrap(),
                "--disclosure",
                file.to_str().unwrap(),
            ])
        };
        let ok = check(&disclosure);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stdout)
        );
        for (what, edit) in [
            (
                "value",
                (
                    "value",
                    serde_json::Value::from(if response {
                        format!("\"{OTHER}\"")
                    } else {
                        OTHER.to_owned()
                    }),
                ),
            ),
            ("salt", ("salt", serde_json::Value::from("00".repeat(32)))),
        ] {
            let mut forged = d.clone();
            forged[edit.0] = edit.1;
            let file = work.path().join(format!("{id}.forged-{what}.json"));
            std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
            let out = check(&file);
            assert_eq!(out.status.code(), Some(1), "a wrong {what} must not verify");
            assert!(String::from_utf8_lossy(&out.stdout).contains("[disclosure]"));
        }
    }
    // The whole log still verifies, disclosures included.
    let out = penghubung(&["evidence", "verify", evidence.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
