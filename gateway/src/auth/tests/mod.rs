//! Tests of the access stages through [`super::AuthRuntime`]: credentials, grants and the
//! error table ([`access`]), the JWT attack set ([`jwt`]), local rate limits and quotas
//! ([`limits`]). Tests that need sockets (JWKS over HTTPS, the shared Redis store) are end to
//! end, in `tests/tests/access.rs`.
#![allow(clippy::unwrap_used)]

mod access;
mod jwt;
mod limits;
mod support;
