//! Redis over TLS (`rediss://`, rustls) with an ACL user: a real `redis-server` started with
//! `--tls-port` and test certificates, the default user off, and a password from a file.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use penghubung::cli::{secret_form, SecretCommand};
use penghubung_e2e::pki::Pki;
use penghubung_e2e::{exchange, write_file, Behaviour, Cfg, Gateway, Upstream};

/// A TLS-only `redis-server` on a free loopback port, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    fn start(dir: &Path, pki: &Pki, password: &str) -> TlsRedis {
        let cert = write_file(dir, "redis.pem", &pki.server.cert_pem);
        let key = write_file(dir, "redis.key", &pki.server.key_pem);
        let ca = write_file(dir, "redis-ca.pem", &pki.ca_pem);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args(["--tls-auth-clients", "no"])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                "penghubung",
                "on",
                &format!(">{password}"),
                "~*",
                "+@all",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let mut log = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("Ready to accept connections") {
                break;
            }
            log.push(line);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "redis-server did not start: {log:#?}"
        );
        std::thread::spawn(move || lines.for_each(drop));
        TlsRedis { child, port }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose token endpoint is limited to 2 requests a minute per source address,
/// counted in the shared Redis (`on_unavailable = "deny"`: without Redis, 503).
async fn gateway(up: &Upstream, dir: &Path, redis: &TlsRedis, password: &str) -> Gateway {
    let pw = write_file(
        dir,
        &format!("redis-password-{}", rand_suffix()),
        &format!("{password}\n"),
    );
    let hash = secret_form(&SecretCommand::ClientSecret, "s3cret").unwrap();
    let text = Cfg::new(&[up.addr])
        .tail(&format!(
            r#"
[redis]
url = "rediss://localhost:{port}/0"
ca = {ca:?}
username = "penghubung"
password_file = {pw:?}
key_prefix = "e2e-tls-{suffix}:"
timeout_ms = 2000
on_unavailable = "deny"

[auth.token_endpoint]
enabled = true
per_source_rate = "2/min"
per_client_rate = "100/min"

[[opd]]
id = "bkd"
name = "BKD"

[[application]]
id = "simpeg"
opd = "bkd"
name = "SIMPEG"

[application.credentials]
client_id = "simpeg-client"
client_secret_hash = "{hash}"
"#,
            port = redis.port,
            ca = dir.join("redis-ca.pem").display().to_string(),
            pw = pw.display().to_string(),
            suffix = std::process::id(),
        ))
        .render();
    Gateway::start(&text).await
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

async fn token_status(gw: &Gateway) -> u16 {
    let body = "grant_type=client_credentials&client_id=nobody&client_secret=x";
    let request = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    exchange(gw.addr, request.as_bytes()).await.unwrap().status
}

/// Two gateways share one limit through `rediss://` as an ACL user; a wrong password gets
/// no access (and `deny` then refuses with 503).
#[tokio::test]
async fn limits_are_shared_through_redis_over_tls_with_an_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let redis = TlsRedis::start(dir.path(), &pki, "kata-sandi-redis");
    let up = Upstream::start("a", Behaviour::Ok).await;
    let a = gateway(&up, dir.path(), &redis, "kata-sandi-redis").await;
    let b = gateway(&up, dir.path(), &redis, "kata-sandi-redis").await;
    assert_eq!(
        token_status(&a).await,
        401,
        "the request passed the shared limit"
    );
    assert_eq!(token_status(&b).await, 401);
    assert_eq!(
        token_status(&a).await,
        429,
        "the budget of 2/min is shared by both nodes through Redis"
    );
    let (_, health) = a.admin_get("/health").await;
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["auth"]["redis_reachable"], true, "{health}");

    let wrong = gateway(&up, dir.path(), &redis, "salah").await;
    assert_eq!(
        token_status(&wrong).await,
        503,
        "a wrong ACL password must not reach the shared store"
    );
}
