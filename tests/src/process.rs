//! The gateway binary as a child process (`penghubung run -c FILE`), for tests that need real
//! signals, `kill -9` or the binary's own logging: started and waited for until `/ready`, killed
//! on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::gateway::gateway_binary;
use crate::raw::read_response;

/// The running gateway process; killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Starts `penghubung run -c config`, stderr appended to `log`, and waits until the admin
    /// listener at `admin` answers `GET /ready` with 200 (10 s at most).
    pub async fn start(config: &Path, admin: SocketAddr, log: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(gateway_binary())
            .args(["run", "-c"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut p = Proc(child);
        for _ in 0..500 {
            if let Some(status) = p.0.try_wait().unwrap() {
                panic!("gateway exited early: {status}");
            }
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), async {
                let mut s = tokio::net::TcpStream::connect(admin).await?;
                tokio::io::AsyncWriteExt::write_all(
                    &mut s,
                    b"GET /ready HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n",
                )
                .await?;
                Ok::<_, std::io::Error>(read_response(&mut s, Duration::from_secs(2)).await)
            })
            .await
            {
                if r.status == 200 {
                    return p;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("gateway not ready within 10 s");
    }

    /// SIGHUP, then waits until `log` says the configuration was reloaded (5 s at most).
    pub async fn reload(&self, log: &Path) {
        let before = std::fs::read_to_string(log).unwrap_or_default();
        let done = |text: &str| text.matches("configuration reloaded").count();
        self.signal("HUP");
        for _ in 0..500 {
            let now = std::fs::read_to_string(log).unwrap_or_default();
            if done(&now) > done(&before) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no reload logged after SIGHUP:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// SIGTERM and wait: the gateway drains and writes its final checkpoint.
    pub fn stop(mut self) {
        self.signal("TERM");
        let _ = self.0.wait();
    }

    /// Sends `SIG<name>` with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }
}
