//! The admin API over gRPC (tonic client against the admin listener): authentication, roles,
//! a short onboarding whose changes the JSON API sees and the evidence log records, and
//! field-naming INVALID_ARGUMENT errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pb::admin_client::AdminClient;
use penghubung_e2e::evidence::records;
use penghubung_e2e::gateway::Gateway;
use penghubung_e2e::testkit::pki::signer_files;
use penghubung_evidence::schema::record::Kind;
use penghubung_proto::admin::v1 as pb;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

/// `message` with `authorization: Bearer token` (and a ticket, if any).
fn as_op<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

async fn sign_in(client: &mut AdminClient<Channel>, user: &str) -> String {
    client
        .sign_in(pb::SignInRequest {
            username: user.into(),
            password: format!("{user}-kata-sandi"),
        })
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"))
        .into_inner()
        .token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_over_grpc_is_the_json_apis_service_layer() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let signer = signer_files(pki_dir.path(), false);
    let text = penghubung_e2e::config::registry_config("grpc-test", dir.path(), &signer);
    let evidence = dir.path().join("evidence");
    let gw = Gateway::start_in(dir, &text).await;
    let root = gw.token.clone();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AdminClient::new(channel);
    let opd = |code: &str, domain: &str| pb::Opd {
        code: code.into(),
        name: code.to_uppercase(),
        domain: domain.into(),
    };

    // No token, a forged token, a failed sign-in: UNAUTHENTICATED.
    let e = c
        .put_opd(opd("dukcapil", "dukcapil.contoh.go.id"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = c
        .get_catalogue(as_op("phs_forged", pb::GetCatalogueRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = c
        .sign_in(pb::SignInRequest {
            username: "operator".into(),
            password: "salah".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");

    // The Admin Platform (the harness's session) creates the OPDs and the accounts.
    let mut ticketed = as_op(&root, opd("dukcapil", "dukcapil.contoh.go.id"));
    ticketed
        .metadata_mut()
        .insert("x-penghubung-ticket", "T-G1".parse().unwrap());
    let applied = c.put_opd(ticketed).await.unwrap().into_inner();
    assert_eq!(applied.revision, "rev-1");
    c.put_opd(as_op(&root, opd("bkd", "bkd.contoh.go.id")))
        .await
        .unwrap();
    // A bad field from the service layer: INVALID_ARGUMENT naming it.
    let e = c
        .put_opd(as_op(&root, opd("x", "x.example.com")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().starts_with("opd[2].domain: "), "{e}");
    assert_eq!(
        e.metadata().get("x-penghubung-field").unwrap(),
        "opd[2].domain"
    );
    let role = |role: &str, opd: &str| pb::RoleBinding {
        role: role.into(),
        opd: opd.into(),
        ..Default::default()
    };
    for (user, roles) in [
        ("admin-b", vec![role("admin_opd", "dukcapil")]),
        ("pemilik-b", vec![role("pemilik_layanan", "dukcapil")]),
        ("admin-a", vec![role("admin_opd", "bkd")]),
        ("petugas", vec![role("petugas_kelaikan", "")]),
        ("auditor", vec![role("auditor", "")]),
    ] {
        c.put_operator(as_op(
            &root,
            pb::PutOperatorRequest {
                username: user.into(),
                display_name: user.into(),
                password: format!("{user}-kata-sandi"),
                roles,
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    }
    // A bad field of the gRPC message itself: INVALID_ARGUMENT naming it.
    let e = c
        .put_operator(as_op(
            &root,
            pb::PutOperatorRequest {
                username: "x".into(),
                password: "xxxxxxxxxxxxxxxx".into(),
                roles: vec![role("raja", "")],
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().starts_with("roles[0].role: "), "{e}");
    let admin_b = sign_in(&mut c, "admin-b").await;
    let pemilik_b = sign_in(&mut c, "pemilik-b").await;
    let admin_a = sign_in(&mut c, "admin-a").await;
    let petugas = sign_in(&mut c, "petugas").await;
    let auditor = sign_in(&mut c, "auditor").await;

    // Roles: an auditor cannot write, an OPD cannot register another OPD's Layanan.
    let e = c
        .put_opd(as_op(&auditor, opd("dinkes", "dinkes.contoh.go.id")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let layanan = pb::RegisterLayananRequest {
        id: "nik".into(),
        owner_opd: "dukcapil".into(),
        name: "Cek NIK".into(),
        spec_json: json!({"hosts": ["*"], "auth": {"credentials": ["apikey"]}, "route": [{"path": "/nik/*", "methods": ["GET"]}]}).to_string(),
        upstream_json: json!({"targets": ["127.0.0.1:9"]}).to_string(),
        ..Default::default()
    };
    let e = c
        .register_layanan(as_op(&admin_a, layanan.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = c
        .register_layanan(as_op(
            &admin_b,
            pb::RegisterLayananRequest {
                spec_json: "{not json".into(),
                ..layanan.clone()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().starts_with("spec_json: "), "{e}");
    c.register_layanan(as_op(&admin_b, layanan)).await.unwrap();

    // The lifecycle, with kelaikan approved by another role.
    let to = |to: &str| pb::TransitionLayananRequest {
        id: "nik".into(),
        to: to.into(),
        approval: None,
    };
    let e = c
        .transition_layanan(as_op(&admin_b, to("aktif")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    c.transition_layanan(as_op(&admin_b, to("diajukan")))
        .await
        .unwrap();
    let e = c
        .transition_layanan(as_op(&admin_b, to("uji")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    c.transition_layanan(as_op(&petugas, to("uji")))
        .await
        .unwrap();
    let approval = |expires_at: String| pb::TransitionLayananRequest {
        approval: Some(pb::Approval {
            letter_number: "800/18/DKI/2026".into(),
            conditions: String::new(),
            expires_at,
        }),
        ..to("laik")
    };
    let e = c
        .transition_layanan(as_op(&petugas, approval("besok".into())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().starts_with("approval.expires_at: "), "{e}");
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(365))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut approve = as_op(&petugas, approval(expires));
    approve
        .metadata_mut()
        .insert("x-penghubung-ticket", "KL-G1".parse().unwrap());
    c.transition_layanan(approve).await.unwrap();
    c.transition_layanan(as_op(&admin_b, to("aktif")))
        .await
        .unwrap();

    // The consuming OPD's application, its key, a grant; the owner consents.
    c.register_aplikasi(as_op(
        &admin_a,
        pb::RegisterAplikasiRequest {
            id: "simpeg".into(),
            owner_opd: "bkd".into(),
            name: "SIMPEG".into(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let key = c
        .issue_api_key(as_op(
            &admin_a,
            pb::IssueApiKeyRequest {
                aplikasi: "simpeg".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!key.secret.is_empty());
    c.request_grant(as_op(
        &admin_a,
        pb::RequestGrantRequest {
            id: "simpeg-nik".into(),
            application: "simpeg".into(),
            layanan: "nik".into(),
            tujuan: "verifikasi data pegawai".into(),
            cakupan_json: json!([{"methods": ["GET"], "paths": ["/nik/*"]}]).to_string(),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let grant = || pb::GrantRef {
        id: "simpeg-nik".into(),
    };
    let e = c.consent_grant(as_op(&admin_a, grant())).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let consented = c
        .consent_grant(as_op(&pemilik_b, grant()))
        .await
        .unwrap()
        .into_inner();

    // The same registry through the JSON API and through gRPC.
    let (status, body) = gw.admin_get("/api/v1/catalogue").await;
    assert_eq!(status, 200, "{body}");
    let json_view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json_view["revision"], consented.revision.as_str());
    let cat = &json_view["catalogue"];
    assert_eq!(cat["layanan"][0]["state"], "aktif");
    assert_eq!(cat["grant"][0]["consent"]["by"], "pemilik-b");
    let grpc_view = c
        .get_catalogue(as_op(&auditor, pb::GetCatalogueRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_view.revision, consented.revision);
    let grpc_cat: Value = serde_json::from_str(&grpc_view.catalogue_json).unwrap();
    assert_eq!(&grpc_cat, cat);
    let revisions = c
        .list_revisions(as_op(&auditor, pb::ListRevisionsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .revisions;
    assert_eq!(revisions.last().unwrap().id, consented.revision);
    assert!(revisions.iter().all(|r| r.signed));

    // Every change, and the refusals, are admin evidence records.
    let changes: Vec<_> = records(&evidence)
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Admin(a)) => Some(a),
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
    assert_eq!(applied("layanan.register"), 1);
    assert_eq!(applied("layanan.approve"), 1);
    assert_eq!(applied("aplikasi.register"), 1);
    assert_eq!(applied("grant.request"), 1);
    assert_eq!(applied("grant.consent"), 1);
    let approve = changes
        .iter()
        .find(|a| a.action == "layanan.approve" && !a.refused)
        .unwrap();
    assert_eq!(
        (approve.actor.as_str(), approve.ticket.as_str()),
        ("petugas", "KL-G1")
    );
    let first = changes.iter().find(|a| a.action == "opd.put").unwrap();
    assert_eq!(first.ticket, "T-G1");
    assert!(changes
        .iter()
        .any(|a| a.action == "grant.consent" && a.refused && a.actor == "admin-a"));
    assert!(changes
        .iter()
        .any(|a| a.action == "session.sign_in_refused" && a.refused));
    drop(gw);
}
