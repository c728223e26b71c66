//! Stage 0, `accept`: listeners, TLS, HTTP/1.1 and HTTP/2 connections, connection limits and
//! deadlines, in-flight accounting and the framing scanners' verdicts. The process state that
//! starts listeners and reloads the configuration is in `control`.

mod conn;
mod h1frame;
mod h2flood;
mod hpack;
pub(crate) mod io;
mod scan;

pub(crate) use conn::accept_loop;
