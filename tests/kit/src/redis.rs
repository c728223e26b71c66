//! A real `redis-server` on a free loopback port, without persistence, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `redis-server`.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts one and waits until it accepts connections (from its own log line, not a sleep).
    pub fn start() -> RedisServer {
        let port = crate::free_port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        for line in lines.by_ref() {
            if line.unwrap().contains("Ready to accept connections") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        RedisServer { child, port }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server now (to test its loss); waits until it is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
