//! What the operator sets for stage 1, `admit`: the `[limits]` and `[headers]` tables.

use serde::{Deserialize, Serialize};

/// The `[headers]` table: identity headers of *other* gateways that the gateway strips from every
/// request before it goes upstream.
///
/// The gateway always removes its own namespace (`x-penghubung-*`), hop-by-hop headers and the
/// forwarding headers it sets itself (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, client
/// certificate headers); that list is fixed. Back ends that used to sit behind another gateway
/// or an authenticating proxy often trust further names as "the user is already
/// authenticated"; a client must never be able to send one through this gateway. Those names
/// are this configurable list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderSettings {
    /// Request header names stripped from every request, case-insensitive; a trailing `*`
    /// matches every name with that prefix (`x-consumer-*`). Default: `x-remote-user`,
    /// `remote-user`, `x-authenticated-user`, `x-authenticated-*`, `x-forwarded-user`,
    /// `x-auth-request-*`, `x-consumer-*`, `x-userinfo`, `x-jwt-assertion`. Setting a list
    /// replaces the default; `[]` strips none of them.
    pub strip_identity: Vec<String>,
    /// Entries of `strip_identity` that are kept when the client connection presented a
    /// verified TLS client certificate (a peer gateway such as the provincial bus or SPLP
    /// that asserts the caller, e.g. WSO2's `X-JWT-Assertion`). Each must also be listed in
    /// `strip_identity`. Default: `x-jwt-assertion`.
    pub verified_peer_may_send: Vec<String>,
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            strip_identity: [
                "x-remote-user",
                "remote-user",
                "x-authenticated-user",
                "x-authenticated-*",
                "x-forwarded-user",
                "x-auth-request-*",
                "x-consumer-*",
                "x-userinfo",
                "x-jwt-assertion",
            ]
            .map(String::from)
            .to_vec(),
            verified_peer_may_send: vec!["x-jwt-assertion".into()],
        }
    }
}

/// Request limits and deadlines. Defaults follow the issue: 64 KiB head, 8 KiB URI, 10 MiB body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Largest request header section in bytes (431 beyond).
    pub header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub header_count: usize,
    /// Longest request target in bytes (414 beyond).
    pub uri_bytes: usize,
    /// Largest request body in bytes (413 beyond); a route may lower or raise it.
    pub body_bytes: u64,
    /// Total time from a request's first byte to the end of its head, in seconds. For a new
    /// connection it runs from accept (TLS handshake included) to the end of the first request
    /// head: a connection that sends nothing, or too little, is closed then, not at the idle
    /// timeout. (HTTP/2: the first stream must have opened by then.)
    pub header_read_timeout_secs: u64,
    /// Total time to receive a request body, in seconds (408 beyond).
    pub body_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// A client that does not take response bytes for this many seconds is cut off.
    pub send_timeout_secs: u64,
    /// HTTP/2: concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest decoded header list in bytes.
    pub h2_max_header_list_bytes: u32,
    /// HTTP/2: streams reset by the client before being answered, tolerated per connection
    /// (rapid-reset protection; beyond it the connection gets GOAWAY).
    pub h2_max_pending_reset_streams: usize,
    /// HTTP/2: PING and SETTINGS frames (without ACK) a client may send per second (sliding
    /// one-second window); beyond it the connection is closed. Default 100: clients send a
    /// handful (one SETTINGS at start, keep-alive PINGs every few seconds).
    pub h2_max_control_frames_per_sec: u32,
    /// How long a shutting-down gateway lets requests in flight finish, in seconds.
    pub drain_timeout_secs: u64,
    /// Unauthenticated refusals per source address (IPv4 address, IPv6 /64) and window that are
    /// recorded one by one; beyond it, further refusals from the source in that window are
    /// summed into one `refusals_suppressed` evidence record, and a request from the source
    /// that presents no credential is answered 429 before any other stage runs. A source that
    /// had a successful exchange in the current or the previous window is never answered
    /// early (OPDs sit behind NAT). `0` turns both off: every refusal is then a record.
    pub refusals_per_source: u64,
    /// Length of the refusal window, in seconds (see `refusals_per_source`).
    pub refusal_window_secs: u64,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            header_bytes: 64 * 1024,
            header_count: 100,
            uri_bytes: 8 * 1024,
            body_bytes: 10 * 1024 * 1024,
            header_read_timeout_secs: 30,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            send_timeout_secs: 30,
            h2_max_concurrent_streams: 100,
            h2_max_header_list_bytes: 64 * 1024,
            h2_max_pending_reset_streams: 20,
            h2_max_control_frames_per_sec: 100,
            drain_timeout_secs: 30,
            refusals_per_source: 100,
            refusal_window_secs: 10,
        }
    }
}
