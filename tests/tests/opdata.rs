//! Operational data through the running gateway: the background index picks up the calls
//! from the evidence log, and `GET /opdata` on the admin listener filters them; `/metrics`
//! counts the same calls per service and consumer OPD.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use penghubung_e2e::config::{access_config, AccessOpts, KEY};
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::raw::{admin, get};
use penghubung_e2e::upstream::Upstream;
use serde_json::Value;

async fn opdata(gw: &Gateway, query: &str) -> (u16, Value) {
    // Without an operator's token: refused.
    let anonymous = admin(gw.admin, &format!("/opdata?{query}")).await;
    assert_eq!(anonymous.status, 401, "GET /opdata needs an operator");
    let (status, body) = gw.admin_get(&format!("/opdata?{query}")).await;
    (status, serde_json::from_str(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_the_index_and_the_admin_endpoint_filters_them() {
    let up = Upstream::echo().await;
    let evidence = tempfile::tempdir().unwrap();
    let index = evidence.path().join("opdata");
    let tail = format!(
        "\n[telemetry.opdata]\ndir = {:?}\ninterval_secs = 1\nretention_days = 30\n",
        index.display().to_string()
    );
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(evidence.path()),
            tail: &tail,
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    for path in ["/data/a", "/data/b"] {
        assert_eq!(
            get(gw.addr, "data.test", path, &[("apikey", KEY)])
                .await
                .status,
            200
        );
    }
    assert_eq!(get(gw.addr, "data.test", "/data/c", &[]).await.status, 401);
    assert_eq!(get(gw.addr, "open.test", "/open/x", &[]).await.status, 200);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let all = loop {
        let (code, body) = opdata(&gw, "service=data").await;
        assert_eq!(code, 200, "{body}");
        if body["count"] == 3 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "index never caught up: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ok: Vec<&Value> = all["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == 200)
        .collect();
    assert_eq!(ok.len(), 2, "{all:#}");
    assert_eq!(ok[0]["consumer_opd"], "bkd");
    assert_eq!(ok[0]["consumer_application"], "simpeg");
    assert_eq!(ok[0]["grant"], "simpeg-data");
    assert_eq!(ok[0]["class"], "ok");
    assert_eq!(ok[0]["upstream"], up.addr.to_string());

    let (_, refused) = opdata(&gw, "status=refused").await;
    assert_eq!(refused["count"], 1, "{refused:#}");
    assert_eq!(refused["calls"][0]["reason"], "credential_missing");
    assert_eq!(refused["calls"][0]["stage"], "authenticate");
    let (_, bkd) = opdata(&gw, "opd=bkd&status=2xx").await;
    assert_eq!(bkd["count"], 2, "{bkd:#}");
    let (_, future) = opdata(&gw, "from=2200-01-01T00%3A00%3A00Z").await;
    assert_eq!(future["count"], 0);
    let (code, error) = opdata(&gw, "path=/data/a").await;
    assert_eq!(code, 400, "{error}");

    // The same calls in /metrics, per service and consumer OPD (catalogue ids only).
    let metrics = admin(gw.admin, "/metrics").await.text();
    assert!(
        metrics.contains(
            "penghubung_consumer_requests_total{service=\"data\",opd=\"bkd\",status_class=\"2xx\"} 2"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("/data/"), "{metrics}");

    // The command line reads the same index, and rebuilds one from the evidence log.
    let binary = penghubung_e2e::gateway::gateway_binary();
    let index_arg = index.display().to_string();
    let out = std::process::Command::new(&binary)
        .args([
            "opdata", "query", "--index", &index_arg, "--opd", "bkd", "--status", "2xx",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["service"], "data");
    let rebuilt = evidence.path().join("rebuilt");
    let out = std::process::Command::new(&binary)
        .args(["opdata", "rebuild", "--evidence"])
        .arg(evidence.path())
        .arg("--index")
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "4 calls indexed\n");
    let out = std::process::Command::new(&binary)
        .args([
            "opdata",
            "query",
            "--index",
            &index_arg,
            "--from",
            "yesterday",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}
