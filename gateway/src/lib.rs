//! Penghubung: the regional Sistem Penghubung Layanan gateway.
//!
//! The request pipeline is in `pipeline`; stages have modules of their own named after them
//! ([`admit`], [`routing`], `auth` for authenticate and authorize, `throttle`, `dispatch` for
//! dispatch); [`server`] accepts connections, [`config`] and [`snapshot`] implement the
//! load → validate → build → swap lifecycle, and [`control`] holds the process state, starts
//! listeners and reloads. No top-level module imports another that imports it back (`layering`).
//!
//! Public are only the modules the binary, the end-to-end tests, the benches and the fuzz
//! targets use; everything else is private to the crate and tested beside its code.

mod admin;
pub mod admit;
mod auth;
mod catalog;
pub mod cli;
pub mod config;
pub mod control;
mod dispatch;
mod error;
pub mod health;
pub mod identity;
#[cfg(test)]
mod layering;
mod peering;
mod pipeline;
pub mod privacy;
pub mod routing;
pub mod server;
pub mod snapshot;
mod stage;
pub mod telemetry;
mod throttle;
mod tls;
