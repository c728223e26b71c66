//! The operational-data index over a generated evidence log (written by the real evidence
//! writer, small segments so that the index crosses files): its counts by OPD, service, status
//! and period equal counts computed from what was generated; it is rebuilt the same after its
//! files are deleted; it continues where it stopped; retention removes old calls.

use std::collections::BTreeMap;

use penghubung_evidence::schema::{self, record::Kind};
use penghubung_evidence::{EvidenceLog, EvidenceSettings};
use rand::{Rng, SeedableRng};

use super::{Call, Index, Query};

/// What the test generated for one call, to count independently of the index.
#[derive(Debug, Clone)]
struct Made {
    opd: &'static str,
    service: &'static str,
    status: u32,
    refused: bool,
    batch: u8,
}

const OPDS: [&str; 3] = ["bkd", "dinkes", "disdukcapil"];
const SERVICES: [&str; 3] = ["ktp", "gaji", "rujukan"];

async fn generate(
    log: &EvidenceLog,
    rng: &mut rand::rngs::StdRng,
    batch: u8,
    n: usize,
) -> Vec<Made> {
    let mut made = Vec::new();
    for i in 0..n {
        let opd = OPDS[rng.gen_range(0..OPDS.len())];
        let service = SERVICES[rng.gen_range(0..SERVICES.len())];
        let exchange_id = format!("ex-{batch}-{i}");
        let consumer = schema::Consumer {
            opd: opd.into(),
            application: format!("app-{opd}"),
            ..Default::default()
        };
        if rng.gen_bool(0.2) {
            let status = [401, 403, 429][rng.gen_range(0..3)];
            let record = schema::Record {
                exchange_id: exchange_id.clone(),
                kind: Some(Kind::Refused(schema::Refused {
                    stage: "authorize".into(),
                    reason_class: "grant_missing".into(),
                    status,
                    consumer: Some(consumer),
                    service_id: service.into(),
                    method: "GET".into(),
                    path: "/personal/3201011234560001".into(),
                    ..Default::default()
                })),
                ..Default::default()
            };
            log.append(record).await.unwrap();
            made.push(Made {
                opd,
                service,
                status,
                refused: true,
                batch,
            });
            continue;
        }
        let request = schema::Record {
            exchange_id: exchange_id.clone(),
            kind: Some(Kind::Request(schema::Request {
                consumer: Some(consumer),
                provider: Some(schema::Provider {
                    opd: "diskominfo".into(),
                    service_id: service.into(),
                    ..Default::default()
                }),
                grant_id: format!("g-{opd}-{service}"),
                method: "POST".into(),
                canonical_path: "/personal/3201011234560001".into(),
                body_length: 100 + i as u64,
                ..Default::default()
            })),
            ..Default::default()
        };
        let sequence = log.append(request).await.unwrap();
        let status = [200, 201, 404, 502, 504][rng.gen_range(0..5)];
        let outcome = schema::Record {
            exchange_id,
            kind: Some(Kind::Outcome(schema::Outcome {
                request_sequence: sequence,
                upstream_address: "10.0.0.7:8080".into(),
                status,
                response_length: 10,
                attempts: 1,
                total_nanos: 5_000_000,
                upstream_head_nanos: 4_000_000,
                outcome_class: if status < 500 { "ok" } else { "failed" }.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        log.append(outcome).await.unwrap();
        made.push(Made {
            opd,
            service,
            status,
            refused: false,
            batch,
        });
    }
    made
}

fn count(calls: &[Call], key: impl Fn(&Call) -> String) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in calls {
        *counts.entry(key(c)).or_default() += 1;
    }
    counts
}

fn made_count(made: &[Made], key: impl Fn(&Made) -> String) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in made {
        *counts.entry(key(m)).or_default() += 1;
    }
    counts
}

fn all() -> Query {
    Query {
        limit: 100_000,
        ..Query::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_counts_equal_the_generated_log_and_rebuild_after_deletion() {
    let tmp = penghubung_testkit::dir::temp_dir("opdata");
    let evidence_dir = tmp.path().join("evidence");
    let settings = EvidenceSettings {
        dir: evidence_dir.clone(),
        segment_size_bytes: 16 * 1024,
        checkpoint_interval_secs: 3600,
        ..EvidenceSettings::default()
    };
    let log = EvidenceLog::open(&settings, "node-a").await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let mut made = generate(&log, &mut rng, 1, 150).await;
    let index_dir = tmp.path().join("opdata");
    let index = Index::open(&index_dir).unwrap();
    assert_eq!(index.update(&evidence_dir).unwrap(), made.len());
    // Nothing new: nothing appended; then the second batch continues where the first stopped.
    assert_eq!(index.update(&evidence_dir).unwrap(), 0);
    let between = time::OffsetDateTime::now_utc();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    made.extend(generate(&log, &mut rng, 2, 150).await);
    log.shutdown().await;
    assert!(
        penghubung_evidence::segment::list_segments(&evidence_dir)
            .unwrap()
            .len()
            > 2,
        "the log spans several segments"
    );
    index.update(&evidence_dir).unwrap();

    let calls = index.query(&all()).unwrap();
    assert_eq!(calls.len(), made.len());
    assert_eq!(
        count(&calls, |c| c.consumer_opd.clone()),
        made_count(&made, |m| m.opd.to_owned())
    );
    assert_eq!(
        count(&calls, |c| c.service.clone()),
        made_count(&made, |m| m.service.to_owned())
    );
    assert_eq!(
        count(&calls, |c| c.status.to_string()),
        made_count(&made, |m| m.status.to_string())
    );
    // The query filters give the same counts as the generated calls.
    for opd in OPDS {
        for service in SERVICES {
            let pairs = [("opd", opd), ("service", service), ("status", "2xx")];
            let q = Query::from_pairs(pairs.iter().copied().chain([("limit", "100000")])).unwrap();
            let expect = made
                .iter()
                .filter(|m| m.opd == opd && m.service == service && (200..300).contains(&m.status))
                .count();
            assert_eq!(index.query(&q).unwrap().len(), expect, "{opd} {service}");
        }
    }
    let refused = Query::from_pairs([("status", "refused"), ("limit", "100000")]).unwrap();
    assert_eq!(
        index.query(&refused).unwrap().len(),
        made.iter().filter(|m| m.refused).count()
    );
    let from = between
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let later = Query::from_pairs([("from", from.as_str()), ("limit", "100000")]).unwrap();
    assert_eq!(
        index.query(&later).unwrap().len(),
        made.iter().filter(|m| m.batch == 2).count()
    );
    // Calls carry ids, sizes and times; never the path.
    let line = std::fs::read_to_string(index_dir.join("calls.jsonl")).unwrap();
    assert!(!line.contains("3201011234560001"));
    let ok = calls.iter().find(|c| c.class == "ok").unwrap();
    assert!(
        ok.response_out >= ok.request_in && ok.request_bytes >= 100,
        "{ok:?}"
    );
    assert_eq!(
        (ok.upstream.as_str(), ok.total_nanos),
        ("10.0.0.7:8080", 5_000_000)
    );

    // Deleted: rebuilt from the log, the same calls.
    std::fs::remove_dir_all(&index_dir).unwrap();
    let rebuilt = Index::open(&index_dir).unwrap();
    assert_eq!(rebuilt.update(&evidence_dir).unwrap(), made.len());
    assert_eq!(rebuilt.query(&all()).unwrap(), calls);
    // A crash after appending but before the state was saved: the calls are not doubled.
    std::fs::remove_file(index_dir.join("state.json")).unwrap();
    assert_eq!(rebuilt.update(&evidence_dir).unwrap(), 0);
    assert_eq!(rebuilt.query(&all()).unwrap(), calls);

    // Retention: a cutoff after every call removes them all.
    let index = Index::open(&index_dir).unwrap();
    assert_eq!(index.prune(i64::MAX).unwrap(), made.len());
    assert!(index.query(&all()).unwrap().is_empty());
}

#[test]
fn bad_query_parameters_are_refused_with_the_reason() {
    for (pairs, word) in [
        (vec![("from", "yesterday")], "RFC 3339"),
        (vec![("status", "2x")], "status"),
        (vec![("limit", "0")], "limit"),
        (vec![("path", "/x")], "unknown parameter"),
    ] {
        let error = Query::from_pairs(pairs).unwrap_err();
        assert!(error.contains(word), "{error}");
    }
    let pairs = super::query_pairs("from=2026-12-08T01%3A00%3A00%2B07%3A00&opd=bkd").unwrap();
    assert_eq!(pairs[0].1, "2026-12-08T01:00:00+07:00");
    assert!(Query::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))).is_ok());
}
