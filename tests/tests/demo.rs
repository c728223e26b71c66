//! `penghubung demo` as a new user meets it: start it, make requests, stop it with Ctrl-C
//! (SIGINT), then run the evidence commands exactly as it printed them, from the same directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use penghubung_e2e::gateway::gateway_binary;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn call(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\n{headers}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("x-penghubung-exchange-id: "))
        .unwrap_or_default()
        .to_owned();
    (status, id)
}

#[test]
fn demo_prints_evidence_commands_that_work_as_printed() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (listen, admin) = (free_port(), free_port());
    let listen_addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    let mut demo = Command::new(gateway_binary())
        .args(["demo", "--listen", &listen_addr.to_string()])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .current_dir(workspace)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = demo.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let started = Instant::now();
    while !printed.iter().any(|l: &String| l.contains("check-bundle")) {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => printed.push(line),
            Err(_) => {
                let _ = demo.kill();
                panic!("the demo printed no evidence commands: {printed:#?}");
            }
        }
    }
    let text = printed.join("\n");

    // What a new user tries.
    assert_eq!(call(listen_addr, "/demo/hello", "").0, 200);
    assert_eq!(call(listen_addr, "/penduduk/3201010101010001", "").0, 401);
    let (status, granted) = call(
        listen_addr,
        "/penduduk/3201010101010001",
        "apikey: kunci-demo-opd-bkd\r\n",
    );
    assert_eq!(status, 200);
    assert!(!granted.is_empty());

    // Ctrl-C: the gateway drains and writes a final signed checkpoint.
    let status = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = demo.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "demo exit: {exit}");

    // The printed commands, run exactly as printed from the same directory.
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("After Ctrl-C"))
        .skip(1)
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(commands.len(), 4, "{text}");
    // From a clone, the binary is named by its path relative to where the user is.
    for c in &commands {
        assert!(c.starts_with("target/debug/penghubung evidence "), "{c}");
    }
    for c in &commands {
        let out = Command::new("sh")
            .args(["-c", c])
            .current_dir(workspace)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{c}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if c.contains("evidence verify") {
            // The demo has no TSA: verify warns that the last checkpoint's missing time-stamp
            // is not bound by a later one, and still says OK.
            assert!(stdout.lines().any(|l| l.starts_with("OK:")), "{stdout}");
        }
        if c.contains("evidence show") {
            assert!(stdout.contains(&granted), "the granted call is in the log");
            assert!(stdout.contains("signed=ecdsa-p256-sha256"), "{stdout}");
            assert!(!stdout.contains("signed=no"), "every checkpoint is signed");
        }
    }
    // The last record is covered by the final checkpoint (the verify summary says so).
    let verify = commands.iter().find(|c| c.contains("verify")).unwrap();
    let out = Command::new("sh")
        .args(["-c", verify])
        .current_dir(workspace)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("OK:"))
        .unwrap_or_default()
        .to_string();
    let records: u64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        summary.contains(&format!("records 1..{} covered", records - 1)),
        "{summary}"
    );
    // The signer key was readable by its owner only, and the demo's signer is gone.
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("Evidence log: "))
        .map(|e| Path::new(e).parent().unwrap().join("signer/key.pem"))
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let _ = std::fs::remove_dir_all(key.parent().unwrap().parent().unwrap());
}
