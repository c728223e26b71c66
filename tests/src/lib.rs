//! The end-to-end harness: every test that opens a socket lives in `tests/tests/` and uses it.
//!
//! - [`upstream`]: upstream doubles (a recording raw HTTP/1.1 upstream, an HTTP/2 upstream);
//! - [`raw`] and [`h2raw`]: raw HTTP/1.1 and HTTP/2 clients, byte for byte;
//! - [`client`]: hyper HTTP/1.1 and HTTP/2 clients;
//! - [`config`]: the config builders;
//! - [`gateway`]: "start a gateway" (in process, or the binary);
//! - [`evidence`]: reading what the gateway recorded;
//! - [`otlp`]: a real OTLP/gRPC trace receiver (tonic, OpenTelemetry collector protos);
//! - [`pki`], [`testkit`]: the workspace's gateway-independent test support (PKI, temp dirs,
//!   redis-server, the openssl TSA, JWT keys).
//!
//! Where a new test goes, and how to run one: `tests/README.md`.
#![allow(missing_docs, clippy::unwrap_used)]

pub mod client;
pub mod config;
pub mod evidence;
pub mod gateway;
pub mod h2raw;
pub mod otlp;
pub mod process;
pub mod raw;
pub mod soap;
pub mod splp;
pub mod upstream;

pub use penghubung_testkit as testkit;
pub use penghubung_testkit::dir::write_file;
pub use penghubung_testkit::{pki, IO_TIMEOUT};

pub use client::{empty, get, h1, h1_over, h2_over, h2c, Buffered};
pub use config::Cfg;
pub use gateway::Gateway;
pub use raw::{exchange, send_raw, send_raw_for, status_of, RawConn, RawResponse};
pub use upstream::{Behaviour, H2Received, H2Upstream, Received, Upstream};
