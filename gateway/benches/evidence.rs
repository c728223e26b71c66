//! Criterion benchmarks of the per-request costs that are not I/O: encoding and framing an
//! evidence record, verifying a log, the admit + route stages of the pipeline, and what a
//! personal-data route adds (commitments, keyed digests, masking).
//!
//! `cargo bench -p penghubung --bench evidence`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::segment;
use penghubung_evidence::verify::{verify_dir, VerifyOptions};
use prost::Message;

fn typical_request(sequence: u64) -> schema::Record {
    schema::Record {
        sequence,
        time_unix_nanos: 1_790_000_000_000_000_000 + sequence as i64,
        node_id: "penghubung-1".into(),
        exchange_id: "01a21558-f648-727b-8f24-1669b683a754".into(),
        trace_id: "dd884a50876e072f09b207e23defade8".into(),
        gateway_version: "0.1.0".into(),
        kind: Some(Kind::Request(schema::Request {
            consumer: Some(schema::Consumer {
                opd: "bkd".into(),
                application: "simpeg".into(),
                credential_kind: "apikey".into(),
                credential_fingerprint: "4e511560cc8d76db".into(),
                ..Default::default()
            }),
            provider: Some(schema::Provider {
                opd: "disdukcapil".into(),
                service_id: "kependudukan".into(),
                ..Default::default()
            }),
            grant_id: "simpeg-kependudukan".into(),
            tujuan: "Verifikasi NIK pegawai untuk pemutakhiran data kepegawaian".into(),
            method: "GET".into(),
            host: "api.pemda.go.id".into(),
            canonical_path: "/penduduk/3201010101010001".into(),
            headers_sha256: Bytes::from(vec![1u8; 32]),
            body_sha256: Bytes::from(vec![2u8; 32]),
            peer_address: "10.0.0.7:51234".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn encode(c: &mut Criterion) {
    let record = typical_request(1);
    let mut out = Vec::with_capacity(4096);
    c.bench_function("evidence/encode_and_frame_request_record", |b| {
        b.iter(|| {
            out.clear();
            let bytes = record.encode_to_vec();
            segment::encode_frame(&mut out, &bytes, &segment::GENESIS)
        })
    });
}

fn verify(c: &mut Criterion) {
    const N: u64 = 20_000;
    let dir = std::env::temp_dir().join(format!("penghubung-bench-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut buf = Vec::new();
    let mut h = segment::GENESIS;
    for seq in 1..=N {
        h = segment::encode_frame(&mut buf, &typical_request(seq).encode_to_vec(), &h);
    }
    std::fs::write(segment::segment_path(&dir, 1), buf).unwrap();
    let mut group = c.benchmark_group("evidence/verify");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    group.bench_function("20k_records", |b| {
        b.iter(|| {
            let report = verify_dir(&dir, &VerifyOptions::default(), &mut |_| {}).unwrap();
            assert_eq!(report.records, N);
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn admit_and_route(c: &mut Criterion) {
    use penghubung::admit;
    use penghubung::config::file::RequestLimits;
    use penghubung::identity::ConnInfo;
    let conn = ConnInfo {
        peer: "127.0.0.1:40000".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        listener: 0,
        tls: false,
        sni: None,
        client: None,
    };
    let limits = RequestLimits::default();
    let request = http::Request::get("/penduduk/3201010101010001?fields=nama")
        .header("host", "api.pemda.go.id")
        .header("user-agent", "simpeg/1.0")
        .header("accept", "application/json")
        .header("apikey", "kunci")
        .body(())
        .unwrap();
    let (parts, _) = request.into_parts();
    c.bench_function("pipeline/admit", |b| {
        b.iter(|| {
            let mut p = parts.clone();
            admit::admit(&mut p, &conn, &limits).unwrap()
        })
    });
    c.bench_function("pipeline/canonicalize", |b| {
        b.iter(|| admit::canonical::canonicalize("/penduduk/./3201010101010001//keluarga", false))
    });
}

/// What a personal-data route adds to a request: observing path, query and header (three
/// commitments with sealed copies, three keyed digests, the masked path), and committing a
/// small JSON body.
fn personal_data(c: &mut Criterion) {
    use penghubung::privacy::{Observed, PersonalSpec, Privacy, ServicePolicy};
    use std::sync::Arc;
    let keys = penghubung_evidence::personal::Keyring::parse(&format!(
        "current = \"k1\"\n[[key]]\nid = \"k1\"\nsecret = \"{}\"\n",
        "ab".repeat(32)
    ))
    .unwrap();
    let spec: PersonalSpec = toml::from_str(
        r#"
        path = { nik = "nik" }
        query = { nik = "nik" }
        headers = { "x-nik" = "nik" }
        json = { "/nik" = "nik", "/nama" = "name" }
        "#,
    )
    .unwrap();
    let policy = Arc::new(ServicePolicy::compile(&spec, &["/penduduk/{nik}"]).unwrap());
    let privacy = Privacy::new(Some(Arc::new(keys)), std::slice::from_ref(&policy));
    let request = http::Request::get("/penduduk/3201010101010001?nik=3201010101010001")
        .header("x-nik", "3201010101010001")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    let (parts, _) = request.into_parts();
    c.bench_function("privacy/observe_path_query_header", |b| {
        b.iter(|| {
            privacy
                .observe(
                    &policy,
                    0,
                    &Observed {
                        exchange_id: "0190c7e4-0000-7000-8000-000000000001",
                        path: parts.uri.path(),
                        query: parts.uri.query(),
                        headers: &parts.headers,
                        digested_headers: b"accept: application/json\n",
                    },
                )
                .unwrap()
        })
    });
    let body = br#"{"nik":"3201010101010001","nama":"Siti Aminah","keperluan":"verifikasi"}"#;
    let k = privacy.keys().unwrap().current();
    c.bench_function("privacy/commit_small_json_body", |b| {
        b.iter(|| policy.commit_body(k, "0190c7e4-0000-7000-8000-000000000001", "request", body))
    });
}

criterion_group!(benches, encode, verify, admit_and_route, personal_data);
criterion_main!(benches);
