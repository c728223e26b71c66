//! Test support shared by every test crate of the workspace, with no dependency on the gateway:
//! temporary directories ([`dir`]), a test PKI made at run time ([`pki`]), JWT signing keys
//! ([`jwt`]), secrets as the config stores them ([`secret`]), a real `redis-server`
//! ([`redis`]) and a real RFC 3161 time-stamping authority (`openssl ts`, [`tsa`]).
//!
//! Where a new test goes, and how to run one: `tests/README.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dir;
pub mod jwt;
pub mod pki;
pub mod redis;
pub mod secret;
pub mod tsa;

use std::time::Duration;

/// Default bound for any single network wait in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A free loopback port (bound, then released for the caller to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms up to `tries` times until it returns `Some`.
pub async fn poll<T>(tries: usize, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..tries {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
