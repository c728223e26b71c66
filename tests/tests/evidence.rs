//! End-to-end tests of the evidence log through the real gateway: request and outcome records of
//! a forwarded exchange, refusal records (including the ones hyper answers itself), fail-closed
//! behaviour on a really full disk, the outcome held back until durable, and `kill -9` under load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use penghubung_e2e::config::{access_config, AccessOpts, KEY, KEY_NO_GRANT};
use penghubung_e2e::evidence::{kind, records};
use penghubung_e2e::gateway::{gateway_binary, Gateway};
use penghubung_e2e::process::Proc;
use penghubung_e2e::raw::{admin, get, read_response, request, request_bytes, send, RawResponse};
use penghubung_e2e::testkit::dir::temp_dir;
use penghubung_e2e::testkit::pki::signer_files;
use penghubung_e2e::testkit::{free_port, poll};
use penghubung_e2e::upstream::{Upstream, SLOW_LEN};
use penghubung_evidence::schema::record::Kind;
use penghubung_evidence::verify::{verify_dir, VerifyOptions};
use sha2::Digest as _;

fn sha(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_is_recorded_request_then_outcome_and_exports() {
    let dir = temp_dir("exchange");
    let pki_dir = temp_dir("exchange-pki");
    let pki = signer_files(pki_dir.path(), false);
    let up = Upstream::echo().await;
    let signer = format!(
        "[evidence.signer]\nmode = \"key_file\"\nkey = \"{}\"\ncertificate_chain = \"{}\"\n",
        pki.key.display(),
        pki.chain.display()
    );
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(dir.path()),
            evidence_extra: &signer,
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    let addr = gw.addr;

    let body = b"{\"nik\":\"3201010101010001\"}";
    let r = send(
        addr,
        "POST",
        "data.test",
        "/data/penduduk",
        &[("apikey", KEY), ("content-type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete);
    let id = r.exchange_id();
    assert_eq!(up.last().body, body);

    let records = records(dir.path());
    let mine: Vec<_> = records.iter().filter(|r| r.exchange_id == id).collect();
    assert_eq!(
        mine.iter().map(|r| kind(r)).collect::<Vec<_>>(),
        ["request", "outcome"],
        "request then outcome for {id}"
    );
    let Some(Kind::Request(q)) = &mine[0].kind else {
        unreachable!()
    };
    assert_eq!(q.body_sha256.to_vec(), sha(body));
    assert_eq!(q.body_length, body.len() as u64);
    assert_eq!(q.method, "POST");
    assert_eq!(q.host, "data.test");
    assert_eq!(q.canonical_path, "/data/penduduk");
    let c = q.consumer.as_ref().unwrap();
    assert_eq!(c.application, "simpeg");
    assert_eq!(c.opd, "bkd");
    assert_eq!(c.credential_kind, "apikey");
    assert_eq!(q.grant_id, "simpeg-data");
    assert_eq!(q.tujuan, "Tujuan uji data");
    assert_eq!(q.provider.as_ref().unwrap().service_id, "data");
    let Some(Kind::Outcome(o)) = &mine[1].kind else {
        unreachable!()
    };
    assert_eq!(o.request_sequence, mine[0].sequence);
    assert!(mine[1].sequence > mine[0].sequence);
    assert_eq!(o.status, 200);
    assert_eq!(o.outcome_class, "ok");
    assert_eq!(o.response_sha256.to_vec(), sha(&r.body));
    assert_eq!(o.response_length, r.body.len() as u64);

    gw.state().evidence.checkpoint_now().await.unwrap();
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    assert!(report.checkpoints >= 1);

    let out = pki_dir.path().join("bundle.json");
    penghubung_evidence::cli::export(dir.path(), &id, &out).unwrap();
    assert!(penghubung_evidence::cli::check_bundle(&out, Some(&pki.ca), None).unwrap());
    // The bundle proves exactly this exchange: a record edited in it no longer checks.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    bundle["records"][1]["record"] = bundle["records"][0]["record"].clone();
    std::fs::write(&out, bundle.to_string()).unwrap();
    assert!(!penghubung_evidence::cli::check_bundle(&out, Some(&pki.ca), None).unwrap());
    gw.shutdown().await;
}

fn refused_of(dir: &Path, id: &str) -> penghubung_evidence::schema::Refused {
    let all = records(dir);
    let mine: Vec<_> = all.iter().filter(|r| r.exchange_id == id).collect();
    assert_eq!(mine.len(), 1, "one record for refused exchange {id}");
    match &mine[0].kind {
        Some(Kind::Refused(x)) => x.clone(),
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_recorded_with_stage_reason_and_status() {
    let dir = temp_dir("refusals");
    let up = Upstream::echo().await;
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    let addr = gw.addr;
    // Unsigned checkpoints (no signer configured) are not a degradation of a healthy node.
    let h: serde_json::Value = serde_json::from_slice(&gw.admin_raw("/health").await.body).unwrap();
    assert_eq!(h["status"], "ok", "{h}");

    let cases: Vec<(RawResponse, u16, &str, &str)> = vec![
        (
            get(addr, "open.test", "/open/a%2Fb", &[]).await,
            400,
            "admit",
            "path_ambiguous",
        ),
        (
            get(addr, "open.test", "/open/admin/x", &[]).await,
            403,
            "route",
            "route_denied",
        ),
        (
            get(addr, "unknown.test", "/open/x", &[]).await,
            421,
            "admit",
            "unknown_host",
        ),
        (
            get(addr, "data.test", "/data/x", &[]).await,
            401,
            "authenticate",
            "credential_missing",
        ),
        (
            get(addr, "data.test", "/data/x", &[("apikey", KEY_NO_GRANT)]).await,
            403,
            "authorize",
            "grant_missing",
        ),
    ];
    assert_eq!(up.count(), 0, "no refused request reaches the upstream");
    for (resp, status, stage, reason) in &cases {
        assert_eq!(resp.status, *status, "{}", resp.text());
        let x = refused_of(dir.path(), &resp.exchange_id());
        assert_eq!(
            (x.stage.as_str(), x.reason_class.as_str(), x.status),
            (*stage, *reason, u32::from(*status))
        );
    }
    let x = refused_of(dir.path(), &cases[4].0.exchange_id());
    assert_eq!(x.consumer.as_ref().unwrap().application, "lain");

    // Rate limited: 2/s, so within a few quick requests one is refused.
    let mut limited = None;
    for _ in 0..6 {
        let r = get(addr, "limited.test", "/limited/x", &[("apikey", KEY)]).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 200);
    }
    let r = limited.expect("a 429 within 6 requests at 2/s");
    let x = refused_of(dir.path(), &r.exchange_id());
    assert_eq!(
        (x.stage.as_str(), x.reason_class.as_str(), x.status),
        ("throttle", "rate_limited", 429)
    );
    assert_eq!(x.grant_id, "simpeg-limited");
    assert_eq!(x.tujuan, "Tujuan uji limited");

    // A head hyper refuses itself: no pipeline runs, yet the refusal is recorded (async).
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
    )
    .await
    .unwrap();
    let r = read_response(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(r.status, 400);
    let found = poll(250, || {
        records(dir.path()).into_iter().find_map(|r| match r.kind {
            Some(Kind::Refused(x)) if x.peer_address == local => Some(x),
            _ => None,
        })
    })
    .await
    .expect("accept-stage refusal recorded within 5 s");
    assert_eq!(
        (
            found.stage.as_str(),
            found.reason_class.as_str(),
            found.status
        ),
        ("accept", "http_parse", 400)
    );
    gw.shutdown().await;
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A small tmpfs mounted on a fresh directory; unmounted on drop.
struct Tmpfs(penghubung_e2e::testkit::dir::TempDir);

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("not root: cannot mount a tmpfs".into());
        }
        let d = temp_dir(tag);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(d.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(d))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    /// Writes a filler file until the file system refuses (ENOSPC).
    fn fill(&self) -> std::path::PathBuf {
        let p = self.path().join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0xaau8; 4096];
        for _ in 0..100_000 {
            if let Err(e) = f.write_all(&block).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
                // Single bytes, to use up any partial page as well.
                while f.write_all(&[0]).and_then(|()| f.flush()).is_ok() {}
                return p;
            }
        }
        panic!("tmpfs never filled");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a gateway still holding the log open (after a failed assertion) must not keep it.
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// A gateway (access config, echo upstream) whose evidence log lives on a 512 KiB tmpfs of its
/// own; `None`, after printing SKIPPED for `test`, where mounting is not permitted.
async fn gateway_on_tmpfs(test: &str, tag: &str) -> Option<(Tmpfs, Upstream, Gateway)> {
    let fs = match Tmpfs::mount(tag, "512k") {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            return None;
        }
    };
    let up = Upstream::echo().await;
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(fs.path()),
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    Some((fs, up, gw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_fails_closed_and_recovers() {
    let Some((fs, up, gw)) =
        gateway_on_tmpfs("full_disk_fails_closed_and_recovers", "fulldisk").await
    else {
        return;
    };
    let (addr, admin_addr) = (gw.addr, gw.admin);
    assert_eq!(get(addr, "open.test", "/open/a", &[]).await.status, 200);
    assert_eq!(admin(admin_addr, "/ready").await.status, 200);

    let filler = fs.fill();
    // The segment's last page may still hold a record or two; within a few requests the disk
    // refuses, and that request is answered 503 with nothing forwarded.
    let mut refused = false;
    for i in 0..50 {
        let before = up.count();
        let r = get(addr, "open.test", &format!("/open/full-{i}"), &[]).await;
        if r.status == 503 {
            assert_eq!(up.count(), before, "nothing forwarded without evidence");
            refused = true;
            break;
        }
        // Where the disk fills depends on how many bytes the records before took: when the
        // request record still fits and the outcome does not, the response is cut (no status
        // line) instead of answered; the next request is then refused before forwarding.
        if r.status == 0 {
            continue;
        }
        assert_eq!(r.status, 200);
    }
    assert!(refused, "a full evidence disk must refuse requests");
    assert_eq!(admin(admin_addr, "/ready").await.status, 503);
    let before = up.count();
    let r = get(
        addr,
        "open.test",
        "/open/still-full-with-a-longer-path",
        &[],
    )
    .await;
    assert_eq!(
        (r.status, up.count()),
        (503, before),
        "still full: still refused"
    );

    std::fs::remove_file(&filler).unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if get(addr, "open.test", "/open/after", &[]).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "requests succeed again once space is freed");
    assert_eq!(admin(admin_addr, "/ready").await.status, 200);
    gw.shutdown().await;
    let report = verify_dir(fs.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
    // Every exchange the upstream saw has its request record.
    let recorded: HashSet<String> = records(fs.path())
        .into_iter()
        .filter_map(|r| match r.kind {
            Some(Kind::Request(q)) => Some(q.canonical_path),
            _ => None,
        })
        .collect();
    for s in up.requests().iter() {
        assert!(
            recorded.contains(&s.target),
            "{} forwarded unrecorded",
            s.target
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_not_durable_means_response_never_completes() {
    let Some((fs, up, gw)) = gateway_on_tmpfs(
        "outcome_not_durable_means_response_never_completes",
        "outcome",
    )
    .await
    else {
        return;
    };
    let addr = gw.addr;
    let evidence = gw.state().evidence.clone();

    let slow = tokio::spawn(async move { get(addr, "open.test", "/open/slow", &[]).await });
    // The upstream has sent half of its body: the request record is durable.
    tokio::time::timeout(Duration::from_secs(10), up.slow_started().acquire())
        .await
        .unwrap()
        .unwrap()
        .forget();
    let filler = fs.fill();
    // Use up the room left in the segment's last page with the smallest records there are
    // (connection-level refusals), until one of them cannot be written.
    let mut full = false;
    for _ in 0..500 {
        let before = evidence.health().records;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\nBad\r\n\r\n")
            .await
            .unwrap();
        let _ = read_response(&mut s, Duration::from_secs(10)).await;
        let settled = poll(250, || {
            let h = evidence.health();
            (h.records > before || !h.writable).then_some(h.writable)
        })
        .await
        .expect("refusal written or failed within 5 s");
        if !settled {
            full = true;
            break;
        }
    }
    assert!(full, "the evidence disk never filled");
    up.release();
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "the head was already sent");
    assert!(
        !r.complete && r.body.len() < SLOW_LEN,
        "a response whose outcome is not durable must not complete ({} of {SLOW_LEN} bytes)",
        r.body.len()
    );

    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for _ in 0..50 {
        if get(addr, "open.test", "/open/after", &[]).await.status == 200 {
            recovered = true;
            break;
        }
    }
    assert!(recovered);
    gw.shutdown().await;
    let report = verify_dir(fs.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
}

/// Appends the first half of the last frame of the last segment, as a torn write would (a
/// SIGKILL rarely interrupts a `write(2)` to a regular file; a power loss can).
fn tear_tail(dir: &Path) {
    use penghubung_evidence::segment::{list_segments, parse_frame};
    let (_, path) = list_segments(dir).unwrap().pop().expect("a segment");
    let data = std::fs::read(&path).unwrap();
    let (mut off, mut last) = (0, 0..0);
    while let Ok(Some(f)) = parse_frame(&data[off..]) {
        last = off..off + f.len;
        off += f.len;
    }
    if off != data.len() {
        return; // the kill itself interrupted a multi-page write: already torn
    }
    let half = &data[last.start..last.start + last.len() / 2];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(half).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_exchange() {
    let dir = temp_dir("kill9");
    let work = temp_dir("kill9-work");
    let up = Upstream::echo().await;
    let (listen, admin_port) = (free_port(), free_port());
    let listen_addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let text = access_config(
        up.addr,
        &AccessOpts {
            listen: listen_addr.to_string(),
            admin: admin_addr.to_string(),
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    );
    let config_file = work.path().join("gateway.toml");
    std::fs::write(&config_file, text).unwrap();
    let log = work.path().join("gateway.log");

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut rounds_with_acks = 0;
    for round in 0..4u64 {
        let proc = Proc::start(&config_file, admin_addr, &log).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..8 {
            let (acked, stop) = (acknowledged.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut mine = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100_000 {
                    n += 1;
                    let body = format!("round {round} client {c} request {n}");
                    let req = request_bytes(
                        "POST",
                        "data.test",
                        &format!("/data/r{round}/c{c}/{n}"),
                        &[("apikey", KEY)],
                        body.as_bytes(),
                    );
                    let attempt = tokio::time::timeout(Duration::from_secs(5), async {
                        let mut s = tokio::net::TcpStream::connect(listen_addr).await.ok()?;
                        tokio::io::AsyncWriteExt::write_all(&mut s, &req)
                            .await
                            .ok()?;
                        Some(read_response(&mut s, Duration::from_secs(5)).await)
                    })
                    .await;
                    if let Ok(Some(r)) = attempt {
                        let expected = format!("echo:/data/r{round}/c{c}/{n}:{}", body.len());
                        if r.status == 200 && r.complete && r.body == expected.as_bytes() {
                            acked.lock().push(r.exchange_id());
                            mine += 1;
                        }
                    }
                }
                mine
            }));
        }
        // Kill at a random moment of the load (between 150 and 650 ms in).
        let wait = 150 + rand::random::<u64>() % 500;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(wait) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pid = proc.0.id();
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acks = 0;
        for c in clients {
            acks += c.await.unwrap();
        }
        if acks > 0 {
            rounds_with_acks += 1;
        }
        drop(proc);
        if round % 2 == 1 {
            tear_tail(dir.path());
        }
    }
    assert!(rounds_with_acks >= 3, "load actually ran in most rounds");

    // One more start recovers the last torn tail (then it is killed again, idle).
    let proc = Proc::start(&config_file, admin_addr, &log).await;
    drop(proc);

    let mut kinds: std::collections::HashMap<String, (bool, bool)> = Default::default();
    for r in records(dir.path()) {
        let e = kinds.entry(r.exchange_id.clone()).or_default();
        match r.kind {
            Some(Kind::Request(_)) => e.0 = true,
            Some(Kind::Outcome(_)) => e.1 = true,
            _ => {}
        }
    }
    let acked = acknowledged.lock().clone();
    assert!(!acked.is_empty());
    for id in &acked {
        assert_eq!(
            kinds.get(id),
            Some(&(true, true)),
            "acknowledged exchange {id} lacks its request or outcome record"
        );
    }
    let out = Command::new(gateway_binary())
        .args(["evidence", "verify"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "evidence verify failed: {}{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let torn = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().contains(".torn"))
        })
        .count();
    assert!(torn >= 2, "the torn tails were cut off on restart ({torn})");
    println!(
        "kill -9: {} acknowledged exchanges over 4 rounds, all recorded; {torn} torn tails recovered",
        acked.len()
    );
}

/// SIGTERM and SIGINT drain the gateway and then write a final checkpoint: every record the
/// process wrote is covered by a checkpoint when it exits (checkpoints are otherwise hourly in
/// this config, so only the shutdown checkpoint can cover them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_write_a_final_checkpoint_covering_the_last_records() {
    for signal in ["TERM", "INT"] {
        let dir = temp_dir(&format!("final-checkpoint-{signal}"));
        let work = temp_dir(&format!("final-checkpoint-{signal}-work"));
        let up = Upstream::echo().await;
        let (listen, admin_port) = (free_port(), free_port());
        let listen_addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        let text = access_config(
            up.addr,
            &AccessOpts {
                listen: listen_addr.to_string(),
                admin: admin_addr.to_string(),
                evidence: Some(dir.path()),
                ..AccessOpts::default()
            },
        );
        let config_file = work.path().join("gateway.toml");
        std::fs::write(&config_file, text).unwrap();
        let log = work.path().join("gateway.log");
        let mut proc = Proc::start(&config_file, admin_addr, &log).await;
        for n in 0..5 {
            let r = send(
                listen_addr,
                "POST",
                "data.test",
                &format!("/data/{n}"),
                &[("apikey", KEY)],
                b"x",
            )
            .await;
            assert_eq!(r.status, 200);
        }
        // A refusal too: the last record before the signal is a `refused` one.
        let r = send(listen_addr, "GET", "data.test", "/data/x", &[], b"").await;
        assert_eq!(r.status, 401);
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &proc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        let exit = loop {
            if let Some(exit) = proc.0.try_wait().unwrap() {
                break exit;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "gateway did not stop after SIG{signal}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(exit.success(), "SIG{signal}: exit status {exit}");

        let all = records(dir.path());
        let last_data = all
            .iter()
            .filter(|r| !matches!(r.kind, Some(Kind::Checkpoint(_))))
            .map(|r| r.sequence)
            .max()
            .unwrap();
        assert!(all
            .iter()
            .any(|r| r.sequence == last_data && matches!(r.kind, Some(Kind::Refused(_)))));
        let covered = all
            .iter()
            .filter_map(|r| match &r.kind {
                Some(Kind::Checkpoint(c)) => Some(c.tree_size),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        assert!(
            covered >= last_data,
            "SIG{signal}: the last record ({last_data}) is not covered by a checkpoint (latest covers {covered})\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
        assert!(report.problem.is_none(), "{report:?}");
    }
}

/// A refusal carries the query and header digests a request record carries, so the refusal of
/// a request can be tied to the request (and to a later, accepted retry of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_request_digests_of_request_records() {
    let dir = temp_dir("refusal-digests");
    let up = Upstream::echo().await;
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    let addr = gw.addr;
    let headers = |key: Option<&'static str>| {
        let mut h = vec![
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "simpeg/2.1"),
        ];
        if let Some(k) = key {
            h.push(("apikey", k));
        }
        h
    };
    let path = "/data/penduduk?nik=3201010101010001&page=2";
    let body = b"{}";
    let ok = send(addr, "POST", "data.test", path, &headers(Some(KEY)), body).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let missing = send(addr, "POST", "data.test", path, &headers(None), body).await;
    assert_eq!(missing.status, 401);
    let no_grant = send(
        addr,
        "POST",
        "data.test",
        path,
        &headers(Some(KEY_NO_GRANT)),
        body,
    )
    .await;
    assert_eq!(no_grant.status, 403);
    let other_query = send(
        addr,
        "POST",
        "data.test",
        "/data/penduduk?nik=1",
        &headers(None),
        body,
    )
    .await;
    assert_eq!(other_query.status, 401);
    let no_query = get(addr, "data.test", "/data/penduduk", &[]).await;
    assert_eq!(no_query.status, 401);

    let request = records(dir.path())
        .into_iter()
        .find_map(|r| match r.kind {
            Some(Kind::Request(q)) if r.exchange_id == ok.exchange_id() => Some(q),
            _ => None,
        })
        .expect("the request record");
    assert_eq!(
        request.query_sha256.to_vec(),
        sha(b"nik=3201010101010001&page=2")
    );
    assert_eq!(request.headers_sha256.len(), 32);
    for refused in [&missing, &no_grant] {
        let x = refused_of(dir.path(), &refused.exchange_id());
        assert_eq!(x.query_sha256, request.query_sha256, "{x:?}");
        // The credential is not a digested header: the same request with or without it
        // has the same header digest.
        assert_eq!(x.headers_sha256, request.headers_sha256, "{x:?}");
    }
    let x = refused_of(dir.path(), &other_query.exchange_id());
    assert_eq!(x.query_sha256.to_vec(), sha(b"nik=1"));
    assert_eq!(x.headers_sha256, request.headers_sha256);
    let x = refused_of(dir.path(), &no_query.exchange_id());
    assert!(x.query_sha256.is_empty());
    assert_eq!(x.headers_sha256.len(), 32);
    assert_ne!(x.headers_sha256, request.headers_sha256);
    gw.shutdown().await;
}

/// A refusal storm from one source is durable but bounded: `limits.refusals_per_source`
/// refusals are recorded one by one, the rest are counted into one `refusals_suppressed`
/// record; credential-less requests beyond the limit are answered 429 before authentication,
/// while requests presenting a credential are still authenticated and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_storm_is_recorded_as_a_bounded_summary() {
    let dir = temp_dir("refusal-storm");
    let up = Upstream::echo().await;
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    )
    .replace(
        "[evidence]",
        "[limits]\nrefusals_per_source = 5\nrefusal_window_secs = 3600\n\n[evidence]",
    );
    let gw = Gateway::start(&text).await;
    let addr = gw.addr;
    let mut recorded_ids = Vec::new();
    for _ in 0..5 {
        let r = get(addr, "data.test", "/data/x", &[]).await;
        assert_eq!(r.status, 401);
        recorded_ids.push(r.exchange_id());
    }
    for _ in 0..5 {
        let r = get(addr, "data.test", "/data/x", &[]).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert!(r.header("retry-after").is_some());
    }
    assert_eq!(up.count(), 0);
    // A credential is still checked: a wrong key is refused by authentication, a right one
    // passes although the source is over its limit.
    for _ in 0..2 {
        let r = get(addr, "data.test", "/data/x", &[("apikey", "wrong-key-000")]).await;
        assert_eq!(r.status, 401);
    }
    let ok = get(addr, "data.test", "/data/x", &[("apikey", KEY)]).await;
    assert_eq!(ok.status, 200);
    // After a successful exchange the source is not answered early any more (NAT).
    for _ in 0..2 {
        let r = get(addr, "data.test", "/data/x", &[]).await;
        assert_eq!(r.status, 401);
    }
    let open = get(addr, "open.test", "/open/x", &[]).await;
    assert_eq!(open.status, 200);
    gw.shutdown().await;

    let all = records(dir.path());
    let refused: Vec<_> = all
        .iter()
        .filter(|r| matches!(r.kind, Some(Kind::Refused(_))))
        .map(|r| r.exchange_id.clone())
        .collect();
    assert_eq!(
        refused, recorded_ids,
        "only the first five refusals are recorded alone"
    );
    let summaries: Vec<_> = all
        .iter()
        .filter_map(|r| match &r.kind {
            Some(Kind::RefusalsSuppressed(s)) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let s = &summaries[0];
    assert_eq!(s.source, "127.0.0.1");
    assert_eq!((s.recorded, s.suppressed, s.limit), (5, 9, 5));
    let reasons: Vec<_> = s
        .reasons
        .iter()
        .map(|r| (r.stage.as_str(), r.reason_class.as_str(), r.status, r.count))
        .collect();
    assert_eq!(
        reasons,
        [
            ("admit", "source_refusals_limited", 429, 5),
            ("authenticate", "apikey_unknown", 401, 2),
            ("authenticate", "credential_missing", 401, 2),
        ]
    );
    let report = verify_dir(dir.path(), &VerifyOptions::default(), &mut |_| {}).unwrap();
    assert!(report.problem.is_none(), "{report:?}");
}

/// With the default limits, a source whose requests authenticate is never limited, however
/// many refusals come from the same address (an OPD behind NAT with one broken application).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_refusal_limits_never_limit_a_source_that_authenticates() {
    let up = Upstream::echo().await;
    let gw = Gateway::start(&access_config(up.addr, &AccessOpts::default())).await;
    let addr = gw.addr;
    for n in 0..300 {
        let r = get(addr, "data.test", "/data/x", &[]).await;
        assert!(matches!(r.status, 401 | 429), "{}", r.status);
        if n % 10 == 0 {
            let r = get(addr, "data.test", "/data/x", &[("apikey", KEY)]).await;
            assert_eq!(r.status, 200, "request {n}");
            let r = get(addr, "open.test", "/open/x", &[]).await;
            assert_eq!(r.status, 200, "request {n}");
        }
    }
    gw.shutdown().await;
}

/// `evidence show`: a readable table, `--format json` with hex digests and RFC 3339 times,
/// `--since/--until` in RFC 3339 or Unix nanoseconds, a quiet end when the pipe closes, and
/// exit 1 for an exchange the log does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_show_prints_a_table_and_json_and_survives_a_closed_pipe() {
    let dir = temp_dir("show");
    let up = Upstream::echo().await;
    let text = access_config(
        up.addr,
        &AccessOpts {
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    );
    let gw = Gateway::start(&text).await;
    let addr = gw.addr;
    let mut ids = Vec::new();
    for n in 0..300 {
        let r = send(
            addr,
            "POST",
            "data.test",
            &format!("/data/{n}"),
            &[("apikey", KEY)],
            b"abc",
        )
        .await;
        assert_eq!(r.status, 200);
        ids.push(r.exchange_id());
    }
    let refused = get(addr, "data.test", "/data/x", &[]).await;
    assert_eq!(refused.status, 401);
    gw.shutdown().await;

    let show = |args: &[&str]| {
        Command::new(gateway_binary())
            .args(["evidence", "show"])
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    // Table: a header line, then one line per record, no Rust Debug output.
    let out = show(&["--exchange", &ids[0]]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("SEQ") && lines[0].contains("EXCHANGE"));
    assert!(lines[1].contains(" request ") && lines[1].contains("POST data.test/data/0"));
    assert!(lines[2].contains(" outcome ") && lines[2].contains("200 ok"));
    assert!(!text.contains("Some(") && !text.contains("b\""), "{text}");
    let out = show(&["--exchange", &refused.exchange_id()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("401 authenticate/credential_missing"),
        "{text}"
    );

    // JSON Lines: hex digests, RFC 3339 times.
    let out = show(&["--format", "json", "--exchange", &ids[1]]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["kind"], "request");
    assert_eq!(
        records[0]["request"]["body_sha256"],
        hex::encode(sha(b"abc")),
        "{}",
        records[0]
    );
    let time = records[0]["time"].as_str().unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{time}");

    // --since/--until accept RFC 3339 and Unix nanoseconds alike.
    let nanos = records[0]["time_unix_nanos"].as_i64().unwrap();
    for since in [time.to_owned(), nanos.to_string()] {
        let out = show(&["--format", "json", "--since", &since, "--until", &since]);
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "since == until selects nothing");
        let out = show(&["--format", "json", "--since", &since]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.lines().count() >= 2 * 299);
        assert!(!text.contains(&ids[0]));
    }
    let out = show(&["--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));

    // Unknown exchange: says so, exit 1.
    let out = show(&["--exchange", "01890000-0000-7000-8000-000000000000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record of exchange"));

    // A closed pipe ends the listing quietly (no panic, no error message).
    for format in ["table", "json"] {
        let mut child = Command::new(gateway_binary())
            .args(["evidence", "show", "--format", format])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.status.success(), "{format}: {:?} {stderr}", out.status);
    }
}

/// A refusal hyper's parser answers (431) gets an access-log line with the exchange id the
/// client saw in the problem response, like every other exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_refusals_get_an_access_log_line_with_their_exchange_id() {
    let dir = temp_dir("parser-access-log");
    let work = temp_dir("parser-access-log-work");
    let up = Upstream::echo().await;
    let (listen, admin_port) = (free_port(), free_port());
    let listen_addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let text = access_config(
        up.addr,
        &AccessOpts {
            listen: listen_addr.to_string(),
            admin: admin_addr.to_string(),
            evidence: Some(dir.path()),
            ..AccessOpts::default()
        },
    )
    .replace(
        "[evidence]",
        "[log]\naccess_log = true\njson = true\n\n[evidence]",
    );
    let config_file = work.path().join("gateway.toml");
    std::fs::write(&config_file, text).unwrap();
    let log = work.path().join("gateway.log");
    let proc = Proc::start(&config_file, admin_addr, &log).await;
    let big = format!(
        "GET /open/x HTTP/1.1\r\nHost: open.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let r = request(listen_addr, big.as_bytes()).await;
    assert_eq!(r.status, 431);
    let id = r.exchange_id();
    assert!(!id.is_empty());
    let line = poll(250, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("penghubung::access") && l.contains(&id))
            .map(str::to_owned)
    })
    .await
    .expect("an access-log line for the 431");
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["fields"]["status"], 431, "{line}");
    assert_eq!(entry["fields"]["reason"], "headers_too_large", "{line}");
    drop(proc);
}

/// A registry change whose `admin` record cannot be made durable (the evidence disk is full)
/// is refused with 503 and nothing is applied: no revision, no change in the catalogue, and
/// the same for a reload and for a change over gRPC (UNAVAILABLE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_refused_and_not_applied_when_the_evidence_log_is_full() {
    let test = "a_change_is_refused_and_not_applied_when_the_evidence_log_is_full";
    let fs = match Tmpfs::mount("changefull", "512k") {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[evidence]\ndir = \"{}\"\ncheckpoint_interval_secs = 3600\n\n[[listener]]\nname = \"main\"\naddress = \"127.0.0.1:0\"\n\n[admin]\naddress = \"127.0.0.1:0\"\nregistry = \"{}\"\ncatalogue = \"registry\"\n",
        fs.path().display(),
        dir.path().join("registry.db").display()
    );
    let gw = Gateway::start_in(dir, &text).await;
    let auth = format!("Bearer {}", gw.token);
    let post = |code: &str| {
        let body = format!(
            "{{\"code\":\"{code}\",\"name\":\"OPD {code}\",\"domain\":\"{code}.contoh.go.id\"}}"
        );
        let auth = auth.clone();
        async move {
            send(
                gw.admin,
                "POST",
                "admin",
                "/api/v1/opd",
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    assert_eq!(post("satu").await.status, 200);
    let catalogue = || gw.admin_raw("/api/v1/catalogue");
    let filler = fs.fill();
    // The segment's last page may still take a record or two; then the disk refuses.
    let mut refused = None;
    for i in 0..50 {
        let before = catalogue().await.text();
        let r = post(&format!("opd{i}")).await;
        if r.status == 503 {
            refused = Some((r, before));
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (r, before) = refused.expect("a full evidence disk refuses changes");
    assert!(r.text().contains("not applied"), "{}", r.text());
    assert_eq!(catalogue().await.text(), before, "nothing applied");
    // The same over gRPC: UNAVAILABLE, nothing applied.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.admin))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = penghubung_proto::admin::v1::admin_client::AdminClient::new(channel);
    let mut call = tonic::Request::new(penghubung_proto::admin::v1::Opd {
        code: "grpc".into(),
        name: "OPD grpc".into(),
        domain: "grpc.contoh.go.id".into(),
    });
    call.metadata_mut()
        .insert("authorization", auth.parse().unwrap());
    let e = grpc.put_opd(call).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e}");
    assert_eq!(catalogue().await.text(), before, "nothing applied");
    let (code, body) = gw.reload().await;
    assert_ne!(code, 200, "{body}");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(catalogue().await.text(), before);
    assert_eq!(
        post("dua").await.status,
        200,
        "applied once the log takes it"
    );
    gw.shutdown().await;
}
