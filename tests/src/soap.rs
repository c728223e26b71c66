//! A real SOAP back end for the SOAP tests: the npm `soap` package (node-soap) running
//! `tests/soap-server/server.js` on 127.0.0.1. `tests/run.sh` installs it (`npm ci` in
//! `tests/soap-server`); without it the tests fail and say how to install it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One node-soap server; killed when dropped.
pub struct SoapServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every envelope it received, one JSON line each (`xml`, `soapaction`, `content_type`).
    pub log: PathBuf,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl SoapServer {
    /// Starts a server answering SOAP 1.1 (`v12 = false`) or SOAP 1.2.
    pub async fn start(v12: bool) -> SoapServer {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("soap-server");
        assert!(
            root.join("node_modules/soap").is_dir(),
            "the SOAP test back end is not installed: run `npm ci --prefix tests/soap-server` \
             (tests/run.sh does), with node and npm from the distribution's packages"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        std::fs::write(&log, "").unwrap();
        let mut command = Command::new("node");
        command.arg(root.join("server.js")).arg(&log);
        if v12 {
            command.arg("1.2");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("`node` runs (install nodejs)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .expect("the SOAP server prints its port")
        .unwrap();
        let port: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        let port = port["port"].as_u64().expect("port") as u16;
        SoapServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            _child: child,
            _dir: dir,
        }
    }

    /// The envelopes received so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
