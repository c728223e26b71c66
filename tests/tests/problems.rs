//! Every refusal the client sees is a problem response with an exchange id and a stable reason
//! code, including the ones hyper's HTTP/1 parser answers before the pipeline sees a request
//! (431, 400, 414): those get the same body and header, and their evidence record carries the
//! exchange id the client saw.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use penghubung_e2e::{exchange, Behaviour, Cfg, Gateway, RawConn, Upstream, IO_TIMEOUT};

fn problem(r: &penghubung_e2e::RawResponse) -> serde_json::Value {
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.body_text()
    );
    let body: serde_json::Value = serde_json::from_str(&r.body_text()).unwrap();
    let id = r
        .header("x-penghubung-exchange-id")
        .expect("exchange id header");
    assert_eq!(body["exchange_id"], id);
    assert_eq!(body["status"], r.status);
    body
}

/// The refused record of the exchange `id`, once written.
async fn refused_record(gw: &Gateway, id: &str) -> serde_json::Value {
    let dir = gw.dir.path().join("evidence");
    for _ in 0..250 {
        let mut found = None;
        penghubung_evidence::verify::scan(&dir, &mut |s| {
            if s.record.exchange_id == id {
                if let Some(penghubung_evidence::schema::record::Kind::Refused(x)) = &s.record.kind
                {
                    found = Some(serde_json::json!({
                        "stage": x.stage,
                        "reason": x.reason_class,
                        "status": x.status,
                    }));
                }
            }
            true
        })
        .unwrap();
        if let Some(f) = found {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no refused record for {id}");
}

#[tokio::test]
async fn parser_refusals_get_a_problem_body_an_exchange_id_and_a_record() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            format!(
                "GET /demo/x HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
                "a".repeat(70 * 1024)
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            b"GET /demo/x HTTP/1.1\r\nHost: localhost\r\nBad Header: 1\r\n\r\n".to_vec(),
            400,
            "http_parse",
        ),
    ];
    for (request, status, reason) in cases {
        let mut conn = RawConn::connect(gw.addr).await;
        conn.send(&request).await;
        let r = conn.read_response(IO_TIMEOUT).await.expect("a response");
        assert_eq!(r.status, status);
        let body = problem(&r);
        assert_eq!(body["reason"], reason, "{body}");
        assert!(conn.closed_within(Duration::from_secs(3)).await);
        let id = r.header("x-penghubung-exchange-id").unwrap().to_owned();
        let record = refused_record(&gw, &id).await;
        assert_eq!(
            record,
            serde_json::json!({"stage": "accept", "reason": reason, "status": status})
        );
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn pipeline_refusals_carry_distinct_reason_codes() {
    let up = Upstream::start("a", Behaviour::Ok).await;
    let gw = Gateway::start(&Cfg::new(&[up.addr]).render()).await;
    let cases: [(&[u8], u16, &str); 3] = [
        (
            b"GET /demo/admin/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            403,
            "route_denied",
        ),
        (
            b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
            404,
            "no_route",
        ),
        (
            b"GET /demo/a%2Fb HTTP/1.1\r\nHost: localhost\r\n\r\n",
            400,
            "path_ambiguous",
        ),
    ];
    for (request, status, reason) in cases {
        let r = exchange(gw.addr, request).await.expect("a response");
        assert_eq!(r.status, status);
        assert_eq!(problem(&r)["reason"], reason);
    }
}
