//! The pipeline without a socket: a request built in memory, `MockAdapter` behind the service,
//! the evidence log in a temp dir, and the records it wrote checked.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use penghubung_adapter::mock::MockAdapter;
use penghubung_evidence::schema::{record::Kind, Record};
use penghubung_evidence::EvidenceLog;

use super::refusals::RefusalGuard;
use super::{handle, Connection};
use crate::catalog::services::UpstreamKind;
use crate::identity::{ConnInfo, EXCHANGE_ID};
use crate::snapshot::{Adapters, Snapshot};
use crate::telemetry::Metrics;

fn config_text(evidence_dir: &std::path::Path) -> String {
    format!(
        r#"node_id = "pipeline-test"

[evidence]
dir = "{}"

[[listener]]
name = "main"
address = "127.0.0.1:0"

[[upstream]]
name = "app"
targets = ["127.0.0.1:9"]

[[service]]
id = "demo"
hosts = ["localhost"]
upstream = "app"

[service.auth]
anonymous = true

[[service.route]]
path = "/demo/*"
"#,
        evidence_dir.display()
    )
}

/// What one test needs: the snapshot with the mock behind `demo`, the log, the mock.
struct Bench {
    runtime: Arc<Snapshot>,
    evidence: EvidenceLog,
    refusals: RefusalGuard,
    mock: MockAdapter,
    dir: penghubung_testkit::dir::TempDir,
}

async fn bench() -> Bench {
    let dir = penghubung_testkit::dir::temp_dir("pipeline");
    let config = crate::config::parse(&config_text(&dir.path().join("evidence")), "test")
        .expect("the test config parses");
    let (settings, catalog) = config.split();
    let compiled = crate::config::validate(&settings, &catalog).expect("the test config is valid");
    let mock = MockAdapter {
        body: Bytes::from_static(b"from the mock"),
        ..MockAdapter::default()
    };
    let evidence = EvidenceLog::open(&compiled.settings().evidence, "pipeline-test")
        .await
        .expect("evidence log opens");
    let adapters = Adapters::default().with(UpstreamKind::Http, Arc::new(mock.clone()));
    let runtime = Snapshot::build_with(&compiled, &Metrics::default(), None, &adapters)
        .await
        .expect("snapshot builds");
    Bench {
        runtime: Arc::new(runtime),
        evidence,
        refusals: RefusalGuard::default(),
        mock,
        dir,
    }
}

fn connection() -> Connection<()> {
    Connection {
        info: Arc::new(ConnInfo {
            peer: "192.0.2.7:40000".parse().expect("address"),
            local: "127.0.0.1:8080".parse().expect("address"),
            listener: 0,
            tls: false,
            sni: None,
            client: None,
        }),
        content_length_with_transfer_encoding: false,
        in_flight: (),
    }
}

impl Bench {
    async fn send(&self, method: &str, path: &str, body: &'static [u8]) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost")
            .body(Full::new(Bytes::from_static(body)))
            .expect("request");
        let response = handle(
            self.runtime.clone(),
            &self.evidence,
            &self.refusals,
            connection(),
            request,
        )
        .await;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    }

    /// The records written, after the log is closed.
    async fn records(self) -> Vec<Record> {
        self.evidence.shutdown().await;
        let mut out = Vec::new();
        penghubung_evidence::verify::scan(&self.dir.path().join("evidence"), &mut |s| {
            out.push(s.record);
            true
        })
        .expect("the log reads back");
        out
    }
}

#[tokio::test]
async fn a_forwarded_request_reaches_the_adapter_and_is_recorded() {
    let bench = bench().await;
    let (status, body) = bench.send("POST", "/demo/a/../b?x=1", b"isi").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"from the mock");
    let seen = bench.mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "/demo/b?x=1");
    assert_eq!(seen[0].body.as_deref(), Some(&b"isi"[..]));
    assert!(seen[0].headers.contains_key(EXCHANGE_ID));
    let records = bench.records().await;
    let request = records
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Request(q)) => Some(q.clone()),
            _ => None,
        })
        .expect("a request record");
    assert_eq!(request.method, "POST");
    assert_eq!(request.canonical_path, "/demo/b");
    assert_eq!(request.body_length, 3);
    assert_eq!(request.peer_address, "192.0.2.7:40000");
    let outcome = records
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Outcome(o)) => Some(o.clone()),
            _ => None,
        })
        .expect("an outcome record");
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.response_length, 13);
}

#[tokio::test]
async fn a_refused_request_never_reaches_the_adapter_and_is_recorded() {
    let bench = bench().await;
    let (status, _) = bench.send("GET", "/elsewhere", b"").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(bench.mock.seen().is_empty());
    let records = bench.records().await;
    let refused = records
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Refused(x)) => Some(x.clone()),
            _ => None,
        })
        .expect("a refused record");
    assert_eq!(
        (
            refused.stage.as_str(),
            refused.reason_class.as_str(),
            refused.status
        ),
        ("route", "no_route", 404)
    );
    assert!(!records
        .iter()
        .any(|r| matches!(r.kind, Some(Kind::Request(_)))));
}
