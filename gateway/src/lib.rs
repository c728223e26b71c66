//! Penghubung: the regional Sistem Penghubung Layanan gateway.
//!
//! The request pipeline is in [`pipeline`]; stages have modules of their own named after them
//! ([`admit`], [`routing`], [`forward`]); [`server`] accepts connections, [`config`] and
//! [`snapshot`] implement the load → validate → build → swap lifecycle.

pub mod admin;
pub mod admit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod forward;
pub mod identity;
pub mod pipeline;
pub mod routing;
pub mod server;
pub mod snapshot;
pub mod telemetry;
pub mod throttle;
