//! The control plane end to end: the admin API's authentication, roles and segregation, the
//! whole onboarding of a Layanan from an empty registry through the API and the data plane,
//! signed revisions (tamper, rollback), and the change trail in the evidence log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use penghubung_e2e::client::h1;
use penghubung_e2e::evidence::records;
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::raw::get;
use penghubung_e2e::testkit::pki::signer_files;
use penghubung_e2e::upstream::Upstream;
use penghubung_evidence::schema::record::Kind;
use penghubung_evidence::verify::{verify_dir, VerifyOptions};
use serde_json::{json, Value};

/// A call on the admin API: status and JSON body (`Null` when not JSON).
async fn api(
    admin: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", admin.to_string());
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() && !extra.iter().any(|(k, _)| *k == "content-type") {
        request = request.header("content-type", "application/json");
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let response = h1(admin, request.body(Full::new(Bytes::from(bytes))).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (status, value)
}

async fn sign_in(admin: SocketAddr, user: &str) -> String {
    let (code, body) = api(
        admin,
        None,
        "POST",
        "/api/v1/sessions",
        Some(json!({"username": user, "password": format!("{user}-kata-sandi")})),
        &[],
    )
    .await;
    assert_eq!(code, 201, "{user}: {body}");
    body["token"].as_str().unwrap().to_owned()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_from_an_empty_registry_through_the_api_and_the_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let signer = signer_files(pki_dir.path(), false);
    let up = Upstream::echo().await;
    let text = penghubung_e2e::config::registry_config("control-test", dir.path(), &signer);
    let registry = dir.path().join("registry.db");
    let evidence = dir.path().join("evidence");
    let gw = Gateway::start_in(dir, &text).await;
    let admin = gw.admin;
    let root = gw.token.clone();

    // Unauthenticated and cross-site calls are refused; /live, /ready, loopback /metrics open.
    assert_eq!(api(admin, None, "POST", "/reload", None, &[]).await.0, 401);
    assert_eq!(api(admin, None, "GET", "/health", None, &[]).await.0, 401);
    assert_eq!(
        api(admin, Some("phs_forged"), "GET", "/health", None, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        api(admin, None, "GET", "/api/v1/catalogue", None, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        api(admin, None, "POST", "/api/v1/opd", Some(json!({})), &[])
            .await
            .0,
        401
    );
    assert_eq!(get(admin, "admin", "/live", &[]).await.status, 200);
    assert_eq!(get(admin, "admin", "/ready", &[]).await.status, 200);
    assert_eq!(get(admin, "admin", "/metrics", &[]).await.status, 200);
    let opd_b = json!({"code": "dukcapil", "name": "Dinas Kependudukan", "domain": "dukcapil.contoh.go.id"});
    let (code, body) = api(
        admin,
        Some(&root),
        "POST",
        "/api/v1/opd",
        Some(opd_b.clone()),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(
        (code, body["title"].as_str()),
        (403, Some("cross_site")),
        "{body}"
    );
    let (code, body) = api(
        admin,
        Some(&root),
        "POST",
        "/api/v1/opd",
        Some(opd_b.clone()),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_ne!(code, 200, "a non-JSON body is refused: {body}");
    let (_, history) = api(admin, Some(&root), "GET", "/api/v1/revisions", None, &[]).await;
    assert_eq!(
        history["revisions"].as_array().unwrap().len(),
        0,
        "nothing applied"
    );

    // Diskominfo's Admin Platform: the OPDs and the accounts.
    let (code, body) = api(
        admin,
        Some(&root),
        "POST",
        "/api/v1/opd",
        Some(opd_b),
        &[("x-penghubung-ticket", "T-1")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["revision"], "rev-1");
    let opd_a = json!({"code": "bkd", "name": "Badan Kepegawaian", "domain": "bkd.contoh.go.id"});
    assert_eq!(
        api(admin, Some(&root), "POST", "/api/v1/opd", Some(opd_a), &[])
            .await
            .0,
        200
    );
    let bad = json!({"code": "x", "name": "X", "domain": "x.example.com"});
    let (code, body) = api(admin, Some(&root), "POST", "/api/v1/opd", Some(bad), &[]).await;
    assert_eq!(
        (code, body["field"].as_str()),
        (422, Some("opd[2].domain")),
        "{body}"
    );
    let now = time::OffsetDateTime::now_utc();
    for (user, roles) in [
        ("admin-b", json!([{"role": "admin_opd", "opd": "dukcapil"}])),
        (
            "pemilik-b",
            json!([{"role": "pemilik_layanan", "opd": "dukcapil"}]),
        ),
        ("admin-a", json!([{"role": "admin_opd", "opd": "bkd"}])),
        ("petugas", json!([{"role": "petugas_kelaikan"}])),
        (
            "ganda",
            json!([{"role": "admin_opd", "opd": "dukcapil"}, {"role": "petugas_kelaikan"}]),
        ),
        ("auditor", json!([{"role": "auditor"}])),
        (
            "eksternal",
            json!([{"role": "auditor_eksternal", "valid_from": rfc3339(now - time::Duration::days(30)), "valid_until": rfc3339(now - time::Duration::days(1))}]),
        ),
        ("pimpinan", json!([{"role": "pimpinan"}])),
    ] {
        let account =
            json!({"username": user, "password": format!("{user}-kata-sandi"), "roles": roles});
        let (code, body) = api(
            admin,
            Some(&root),
            "POST",
            "/api/v1/operators",
            Some(account),
            &[],
        )
        .await;
        assert_eq!(code, 201, "{user}: {body}");
    }
    let admin_b = sign_in(admin, "admin-b").await;
    let pemilik_b = sign_in(admin, "pemilik-b").await;
    let admin_a = sign_in(admin, "admin-a").await;
    let petugas = sign_in(admin, "petugas").await;
    let ganda = sign_in(admin, "ganda").await;
    let auditor = sign_in(admin, "auditor").await;
    let eksternal = sign_in(admin, "eksternal").await;
    let pimpinan = sign_in(admin, "pimpinan").await;
    // Only an Admin Platform manages accounts.
    let (code, _) = api(
        admin,
        Some(&admin_b),
        "POST",
        "/api/v1/operators",
        Some(json!({"username": "x", "password": "xxxxxxxxxxxxxxxx", "roles": []})),
        &[],
    )
    .await;
    assert_eq!(code, 403);
    // Failed sign-ins are refused, then throttled.
    for _ in 0..5 {
        let (code, _) = api(
            admin,
            None,
            "POST",
            "/api/v1/sessions",
            Some(json!({"username": "auditor", "password": "salah"})),
            &[],
        )
        .await;
        assert_eq!(code, 401);
    }
    let (code, _) = api(
        admin,
        None,
        "POST",
        "/api/v1/sessions",
        Some(json!({"username": "auditor", "password": "auditor-kata-sandi"})),
        &[],
    )
    .await;
    assert_eq!(
        code, 429,
        "locked after five failures, even with the right password"
    );

    // B registers its Layanan; A cannot register one for B; an auditor cannot write.
    let layanan = json!({
        "id": "nik", "owner_opd": "dukcapil", "name": "Cek NIK",
        "spec": {"hosts": ["*"], "auth": {"credentials": ["apikey"]}, "route": [{"path": "/nik/*", "methods": ["GET"]}]},
        "upstream": {"targets": [up.addr.to_string()]},
    });
    assert_eq!(
        api(
            admin,
            Some(&admin_a),
            "POST",
            "/api/v1/layanan",
            Some(layanan.clone()),
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(
            admin,
            Some(&auditor),
            "POST",
            "/api/v1/layanan",
            Some(layanan.clone()),
            &[]
        )
        .await
        .0,
        403
    );
    let (code, body) = api(
        admin,
        Some(&admin_b),
        "POST",
        "/api/v1/layanan",
        Some(layanan),
        &[],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let move_to = |to: &str| json!({"to": to});
    assert_eq!(
        api(
            admin,
            Some(&admin_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("aktif")),
            &[]
        )
        .await
        .0,
        409,
        "no kelaikan skipped"
    );
    assert_eq!(
        api(
            admin,
            Some(&admin_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("diajukan")),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api(
            admin,
            Some(&admin_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("uji")),
            &[]
        )
        .await
        .0,
        403,
        "the OPD does not test its own Layanan"
    );
    assert_eq!(
        api(
            admin,
            Some(&petugas),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("uji")),
            &[]
        )
        .await
        .0,
        200
    );
    // Diskominfo approves kelaikan, expiring shortly (the expiry is tested below).
    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(12);
    let approve = json!({"to": "laik", "approval": {"letter_number": "800/17/DKI/2026", "conditions": "uji ulang tahunan", "expires_at": rfc3339(expires)}});
    assert_eq!(
        api(
            admin,
            Some(&admin_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(approve.clone()),
            &[]
        )
        .await
        .0,
        403
    );
    let (code, body) = api(
        admin,
        Some(&petugas),
        "POST",
        "/api/v1/layanan/nik/transition",
        Some(approve),
        &[("x-penghubung-ticket", "KL-2026-17")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        api(
            admin,
            Some(&admin_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("aktif")),
            &[]
        )
        .await
        .0,
        200
    );

    // Segregation: whoever registered a Layanan cannot review or approve it.
    let kk = json!({
        "id": "kk", "owner_opd": "dukcapil", "name": "Kartu Keluarga",
        "spec": {"hosts": ["*"], "route": [{"path": "/kk/*"}]},
        "upstream": {"targets": [up.addr.to_string()]},
    });
    assert_eq!(
        api(
            admin,
            Some(&ganda),
            "POST",
            "/api/v1/layanan",
            Some(kk),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api(
            admin,
            Some(&ganda),
            "POST",
            "/api/v1/layanan/kk/transition",
            Some(move_to("diajukan")),
            &[]
        )
        .await
        .0,
        200
    );
    let (code, body) = api(
        admin,
        Some(&ganda),
        "POST",
        "/api/v1/layanan/kk/transition",
        Some(move_to("uji")),
        &[],
    )
    .await;
    assert_eq!(
        (code, body["title"].as_str()),
        (403, Some("segregation")),
        "{body}"
    );

    // A registers its application, gets an API key once, and requests a grant with tujuan.
    let app = json!({"id": "simpeg", "owner_opd": "bkd", "name": "SIMPEG", "kind": "umum"});
    assert_eq!(
        api(
            admin,
            Some(&admin_a),
            "POST",
            "/api/v1/aplikasi",
            Some(app),
            &[]
        )
        .await
        .0,
        200
    );
    let (code, body) = api(
        admin,
        Some(&admin_a),
        "POST",
        "/api/v1/aplikasi/simpeg/keys",
        None,
        &[],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let key = body["secret"].as_str().unwrap().to_owned();
    let (_, cat) = api(admin, Some(&auditor), "GET", "/api/v1/catalogue", None, &[]).await;
    assert!(
        !cat.to_string().contains(&key),
        "the key is stored only as its digest"
    );
    let grant = json!({"id": "simpeg-nik", "application": "simpeg", "layanan": "nik", "tujuan": "verifikasi data pegawai", "cakupan": [{"methods": ["GET"], "paths": ["/nik/*"]}]});
    assert_eq!(
        api(
            admin,
            Some(&admin_a),
            "POST",
            "/api/v1/grants",
            Some(grant),
            &[]
        )
        .await
        .0,
        200
    );
    let headers = [("apikey", key.as_str())];
    let call = || get(gw.addr, "api.test", "/nik/3201010101010001", &headers);
    assert_eq!(call().await.status, 403, "no consent, no access");
    assert_eq!(
        api(
            admin,
            Some(&admin_a),
            "POST",
            "/api/v1/grants/simpeg-nik/consent",
            None,
            &[]
        )
        .await
        .0,
        403,
        "the requester cannot consent"
    );
    let (code, body) = api(
        admin,
        Some(&pemilik_b),
        "POST",
        "/api/v1/grants/simpeg-nik/consent",
        None,
        &[],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let consented = body["revision"].as_str().unwrap().to_owned();

    // A's application calls through the data plane.
    let r = call().await;
    assert_eq!(r.status, 200, "{}", r.text());
    let exchange = r.exchange_id();

    // Readers: the auditor reads, the engagement of the external auditor is over, Pimpinan
    // sees reports only.
    assert_eq!(
        api(admin, Some(&auditor), "GET", "/api/v1/catalogue", None, &[])
            .await
            .0,
        200
    );
    assert_eq!(
        api(
            admin,
            Some(&auditor),
            "POST",
            "/api/v1/grants/simpeg-nik/revoke",
            None,
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(
            admin,
            Some(&eksternal),
            "GET",
            "/api/v1/catalogue",
            None,
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(
            admin,
            Some(&pimpinan),
            "GET",
            "/api/v1/catalogue",
            None,
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api(admin, Some(&admin_b), "POST", "/reload", None, &[])
            .await
            .0,
        403,
        "reload is the platform's"
    );

    // B suspends its Layanan: 403; resumes: 200 again.
    assert_eq!(
        api(
            admin,
            Some(&pemilik_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("ditangguhkan")),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(call().await.status, 403, "suspended");
    assert_eq!(
        api(
            admin,
            Some(&pemilik_b),
            "POST",
            "/api/v1/layanan/nik/transition",
            Some(move_to("aktif")),
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(call().await.status, 200, "resumed");

    // The approval expires: 403 from that moment, without any change.
    let wait = (expires - time::OffsetDateTime::now_utc())
        .whole_milliseconds()
        .max(0) as u64
        + 200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(call().await.status, 403, "approval expired");
    let (code, _) = api(
        admin,
        Some(&pemilik_b),
        "POST",
        "/api/v1/layanan/nik/transition",
        Some(move_to("ditangguhkan")),
        &[],
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = api(
        admin,
        Some(&pemilik_b),
        "POST",
        "/api/v1/layanan/nik/transition",
        Some(move_to("aktif")),
        &[],
    )
    .await;
    assert_eq!(code, 409, "no resumption on an expired approval: {body}");

    // Signed history; rollback restores a signed revision and is recorded.
    let (_, history) = api(admin, Some(&auditor), "GET", "/api/v1/revisions", None, &[]).await;
    let revisions = history["revisions"].as_array().unwrap().clone();
    assert!(revisions.iter().all(|r| r["signed"] == true), "{history}");
    let (code, body) = api(
        admin,
        Some(&admin_b),
        "POST",
        "/api/v1/rollback",
        Some(json!({"revision": 2})),
        &[],
    )
    .await;
    assert_eq!(code, 403, "rollback is the platform's: {body}");
    let (code, body) = api(
        admin,
        Some(&root),
        "POST",
        "/api/v1/rollback",
        Some(json!({"revision": 2})),
        &[("x-penghubung-ticket", "RB-1")],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let rolled = body["revision"].as_str().unwrap().to_owned();
    let (_, now_cat) = api(admin, Some(&auditor), "GET", "/api/v1/catalogue", None, &[]).await;
    assert_eq!(now_cat["catalogue"]["opd"].as_array().unwrap().len(), 2);
    assert!(now_cat["catalogue"]["layanan"]
        .as_array()
        .unwrap()
        .is_empty());

    // A tampered revision is refused: reading it, rolling back to it.
    {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", registry.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE revision SET body = replace(body, 'Badan Kepegawaian', 'Badan Lain') WHERE id = 2")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE revision SET sha256 = ? WHERE id = 2")
            .bind(penghubung_registry::sha256_hex(
                sqlx::query_scalar::<_, String>("SELECT body FROM revision WHERE id = 2")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .as_bytes(),
            ))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let (code, body) = api(
        admin,
        Some(&auditor),
        "GET",
        "/api/v1/revisions/rev-2",
        None,
        &[],
    )
    .await;
    assert_eq!(
        (code, body["title"].as_str()),
        (422, Some("tampered")),
        "{body}"
    );
    let (code, _) = api(
        admin,
        Some(&root),
        "POST",
        "/api/v1/rollback",
        Some(json!({"revision": 2})),
        &[],
    )
    .await;
    assert_eq!(code, 422);

    // The evidence: every step an admin record, the 200 names approval, grant, consent and
    // revision, and `evidence verify` accepts the log.
    let all = records(&evidence);
    let changes: Vec<_> = all
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::Admin(a)) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let applied = |action: &str| {
        changes
            .iter()
            .filter(|a| a.action == action && !a.refused)
            .count()
    };
    assert_eq!(applied("opd.put"), 2);
    assert_eq!(applied("layanan.register"), 2);
    assert_eq!(applied("layanan.approve"), 1);
    assert_eq!(applied("aplikasi.register"), 1);
    assert_eq!(applied("aplikasi.issue_key"), 1);
    assert_eq!(applied("grant.request"), 1);
    assert_eq!(applied("grant.consent"), 1);
    assert_eq!(applied("operator.put"), 8);
    assert!(changes
        .iter()
        .any(|a| a.action == "session.sign_in_refused" && a.refused));
    assert!(changes.iter().any(|a| a.action == "layanan.transition"
        && a.refused
        && a.detail.contains("segregation")));
    let approve = changes
        .iter()
        .find(|a| a.action == "layanan.approve" && !a.refused)
        .unwrap();
    assert_eq!(
        (
            approve.actor.as_str(),
            approve.role.as_str(),
            approve.ticket.as_str()
        ),
        ("petugas", "petugas_kelaikan", "KL-2026-17")
    );
    assert!(approve.approval_id.starts_with("kl-"));
    assert_eq!(approve.before_sha256.len(), 32);
    assert_ne!(approve.before_sha256, approve.after_sha256);
    let rollback = changes
        .iter()
        .find(|a| a.action == "catalog.rollback" && !a.refused)
        .unwrap();
    assert_eq!(
        (
            rollback.revision_id.as_str(),
            rollback.target.as_str(),
            rollback.ticket.as_str()
        ),
        (rolled.as_str(), "rev-2", "RB-1")
    );
    let request = all
        .iter()
        .find_map(|r| match &r.kind {
            Some(Kind::Request(q)) if r.exchange_id == exchange => {
                Some((r.config_version_id.clone(), q.clone()))
            }
            _ => None,
        })
        .expect("the 200's request record");
    assert_eq!(request.0, consented, "the revision in force");
    assert_eq!(request.1.grant_id, "simpeg-nik");
    assert_eq!(request.1.tujuan, "verifikasi data pegawai");
    assert_eq!(
        request.1.provider.as_ref().unwrap().approval_id,
        approve.approval_id
    );
    let consent = changes
        .iter()
        .find(|a| a.action == "grant.consent" && !a.refused)
        .unwrap();
    assert!(request.1.consent_id.starts_with("ct-"));
    assert_eq!(
        request.1.consent_id, consent.approval_id,
        "the consent record names the consent"
    );
    gw.state().evidence.checkpoint_now().await.unwrap();
    let options = VerifyOptions {
        trust_anchors: Some(
            penghubung_evidence::signer::load_pem_certificates(&signer.ca).unwrap(),
        ),
        ..VerifyOptions::default()
    };
    let report = verify_dir(&evidence, &options, &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    gw.shutdown().await;
}

/// `penghubung catalog` over the admin API, as printed in README: export, diff, apply,
/// history, rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_commands_export_diff_apply_history_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[evidence]\ndir = \"@EVIDENCE_DIR@\"\ncheckpoint_interval_secs = 3600\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\nregistry = \"{}\"\ncatalogue = \"registry\"\n",
        dir.path().join("registry.db").display()
    );
    let work = tempfile::tempdir().unwrap();
    let gw = Gateway::start_in(dir, &text).await;
    let opd = json!({"code": "bkd", "name": "Badan Kepegawaian", "domain": "bkd.contoh.go.id"});
    let (code, _) = api(
        gw.admin,
        Some(&gw.token),
        "POST",
        "/api/v1/opd",
        Some(opd),
        &[],
    )
    .await;
    assert_eq!(code, 200);
    let admin = gw.admin.to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(penghubung_e2e::gateway::gateway_binary())
            .arg("catalog")
            .args(args)
            .args(["--admin", &admin])
            .env("PENGHUBUNG_TOKEN", &gw.token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let file = work.path().join("catalogue.toml");
    let file_arg = file.display().to_string();
    let (ok, out) = run(&["export", "-o", &file_arg]);
    assert!(ok, "{out}");
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(exported.contains("bkd.contoh.go.id"), "{exported}");
    assert_eq!(run(&["diff", &file_arg]), (true, "no change\n".into()));
    std::fs::write(
        &file,
        format!("{exported}\n[[opd]]\ncode = \"dukcapil\"\nname = \"Dukcapil\"\ndomain = \"dukcapil.contoh.go.id\"\n"),
    )
    .unwrap();
    assert_eq!(run(&["diff", &file_arg]), (true, "+ opd dukcapil\n".into()));
    let (ok, out) = run(&["apply", &file_arg]);
    assert!(ok && out.contains("applied: rev-2"), "{out}");
    let (ok, out) = run(&["history"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("catalog.apply"), "{out}");
    let (ok, out) = run(&["rollback", "rev-1"]);
    assert!(ok && out.contains("rev-3"), "{out}");
    let (_, now) = api(
        gw.admin,
        Some(&gw.token),
        "GET",
        "/api/v1/catalogue",
        None,
        &[],
    )
    .await;
    assert_eq!(
        now["catalogue"]["opd"].as_array().unwrap().len(),
        1,
        "{now}"
    );
    // Without a token, or with a bad file, the command fails with the reason.
    std::fs::write(&file, "[[opd]]\ncode = 5\n").unwrap();
    let (ok, out) = run(&["apply", &file_arg]);
    assert!(!ok && out.contains("catalogue.toml"), "{out}");
    let out = std::process::Command::new(penghubung_e2e::gateway::gateway_binary())
        .args(["catalog", "history", "--admin", &admin])
        .env_remove("PENGHUBUNG_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PENGHUBUNG_TOKEN"));
    gw.shutdown().await;
}
