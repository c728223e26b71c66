//! A transport wrapper that records activity for the connection watchdog: when bytes last
//! arrived, whether a write is stuck (client not reading), and how many requests are in flight.
//! It also feeds every byte read to the connection's [`Scanner`] (HTTP/1 CL+TE heads, HTTP/2
//! control-frame floods), before hyper sees the bytes.
//!
//! On the way out it replaces the bare error heads hyper's HTTP/1 parser writes on its own
//! (`400`/`431`/`414` with an empty body, before the pipeline ever sees a request) with the
//! gateway's problem response: an exchange id header and a `problem+json` body with its reason
//! code, like every other refusal. The connection's error path then records and logs the
//! refusal under that exchange id ([`Activity::parser_refusal`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::scan::{ScanConfig, Scanner};
pub use crate::pipeline::refusals::ParserRefusal;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since process start (monotonic), never 0.
pub fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Shared activity state of one connection.
#[derive(Debug, Default)]
pub struct Activity {
    /// When bytes last arrived (ms since process start).
    pub last_read_ms: AtomicU64,
    /// Since when a write has been pending (0 when not blocked).
    pub write_blocked_since_ms: AtomicU64,
    /// Requests whose responses are not finished.
    pub in_flight: AtomicUsize,
    /// Total bytes received.
    pub bytes_read: AtomicU64,
    /// Requests the service has started on this connection.
    pub requests: AtomicU64,
    /// One more than the index of the first HTTP/1 request head that carried both
    /// `Content-Length` and `Transfer-Encoding` (0: none seen).
    pub cl_te_head: AtomicU64,
    /// The HTTP/2 control-frame budget was exceeded; reads fail from then on.
    pub h2_flood: AtomicBool,
    /// An error response hyper's HTTP/1 parser wrote itself, as rewritten (see
    /// [`parser_error_status`]): the connection's error path records and logs it.
    pub parser_refusal: parking_lot::Mutex<Option<ParserRefusal>>,
    /// An HTTP/2 trailer section carried a pseudo-header field; reads fail from then on.
    pub h2_malformed: AtomicBool,
}

/// The status of `buf` if it is exactly an error response head written by hyper's HTTP/1
/// parser itself: a whole `HTTP/1.x 4xx/5xx` head, with `content-length: 0`, without the
/// exchange id header that every response the pipeline produces carries.
pub fn parser_error_status(buf: &[u8]) -> Option<u16> {
    if buf.len() < 16
        || !(buf.starts_with(b"HTTP/1.1 ") || buf.starts_with(b"HTTP/1.0 "))
        || !matches!(buf.get(9), Some(b'4' | b'5'))
        || !buf.ends_with(b"\r\n\r\n")
        || buf.len() > 1024
    {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if head.matches("\r\n\r\n").count() != 1
        || !head.contains("\r\ncontent-length: 0\r\n")
        || head.contains(crate::identity::EXCHANGE_ID.as_str())
    {
        return None;
    }
    head.get(9..12)?.parse().ok()
}

/// The problem response that replaces hyper's bare error head for `status`.
fn problem_head(status: u16, exchange_id: &str, reason: &'static str) -> Vec<u8> {
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let refusal = crate::error::GatewayError::Connection {
        status: code,
        reason,
    };
    let response = crate::error::rescue(&refusal, exchange_id, crate::error::FaultStyle::Problem);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or("Error"),
        response.body().len()
    );
    for (name, value) in response.headers() {
        // The connection header is written first, above.
        if name == http::header::CONNECTION {
            continue;
        }
        if let Ok(v) = value.to_str() {
            out.push_str(name.as_str());
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(response.body());
    bytes
}

impl Activity {
    /// A fresh state, counting the connection as active now.
    pub fn new() -> Arc<Activity> {
        let a = Activity::default();
        a.last_read_ms.store(now_ms(), Ordering::Relaxed);
        Arc::new(a)
    }

    /// Counts a request the service starts; returns its 0-based index on the connection.
    /// HTTP/1 requests on one connection are handled strictly in order, so for HTTP/1 this is
    /// the index of its head among the heads the scanner saw.
    pub fn next_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::AcqRel)
    }

    /// Whether the HTTP/1 request with this index (or an earlier one) carried both
    /// `Content-Length` and `Transfer-Encoding`.
    pub fn content_length_with_transfer_encoding(&self, index: u64) -> bool {
        let flagged = self.cl_te_head.load(Ordering::Acquire);
        flagged != 0 && index.saturating_add(1) >= flagged
    }
}

/// Decrements `in_flight` when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// Counts one request in flight.
    pub fn new(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_read_ms.store(now_ms(), Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The transport with activity recording.
    pub struct TimedIo<T> {
        #[pin]
        inner: T,
        activity: Arc<Activity>,
        scanner: Scanner,
        // A replacement for hyper's own error head: bytes, how many are written, and how many
        // bytes of hyper's write it stands for.
        rewrite: Option<(Vec<u8>, usize, usize)>,
    }
}

impl<T> TimedIo<T> {
    /// Wraps a transport; `scan` configures the byte scanner.
    pub fn new(inner: T, activity: Arc<Activity>, scan: ScanConfig) -> TimedIo<T> {
        TimedIo {
            inner,
            activity,
            scanner: Scanner::new(scan),
            rewrite: None,
        }
    }
}

fn flood_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "HTTP/2 control frame budget exceeded",
    )
}

fn malformed_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "HTTP/2 pseudo-header field in a trailer section",
    )
}

impl<T: AsyncRead> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if this.activity.h2_flood.load(Ordering::Relaxed) {
            return Poll::Ready(Err(flood_error()));
        }
        if this.activity.h2_malformed.load(Ordering::Relaxed) {
            return Poll::Ready(Err(malformed_error()));
        }
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            let now = now_ms();
            this.activity.last_read_ms.store(now, Ordering::Relaxed);
            this.activity
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
            if !this.scanner.is_off() {
                // Scanned before hyper can parse them: see `h1frame` for why this is in time.
                let fresh = buf.filled().get(before..).unwrap_or_default();
                let findings = this.scanner.feed(fresh, now);
                if let Some(index) = findings.cl_te_head {
                    let _ = this.activity.cl_te_head.compare_exchange(
                        0,
                        index.saturating_add(1),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    );
                }
                if findings.h2_flood {
                    this.activity.h2_flood.store(true, Ordering::Relaxed);
                    buf.set_filled(before);
                    return Poll::Ready(Err(flood_error()));
                }
                if findings.h2_malformed {
                    // Before hyper sees the trailer section: the request never completes.
                    this.activity.h2_malformed.store(true, Ordering::Relaxed);
                    buf.set_filled(before);
                    return Poll::Ready(Err(malformed_error()));
                }
            }
        }
        result
    }
}

impl<T: AsyncWrite> TimedIo<T> {
    fn track<R>(activity: &Activity, poll: Poll<R>) -> Poll<R> {
        match poll {
            Poll::Pending => {
                let _ = activity.write_blocked_since_ms.compare_exchange(
                    0,
                    now_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => {
                if activity.write_blocked_since_ms.load(Ordering::Relaxed) != 0 {
                    activity.write_blocked_since_ms.store(0, Ordering::Relaxed);
                }
            }
        }
        poll
    }
}

impl<T: AsyncWrite> TimedIo<T> {
    /// Starts replacing hyper's own error head (`buf`, `len` bytes of hyper's write) with a
    /// problem response when `buf` is one; returns whether it did.
    fn start_rewrite(
        activity: &Activity,
        rewrite: &mut Option<(Vec<u8>, usize, usize)>,
        buf: &[u8],
        len: usize,
    ) -> bool {
        if rewrite.is_some() || activity.in_flight.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let Some(status) = parser_error_status(buf) else {
            return false;
        };
        let exchange_id = uuid::Uuid::now_v7().to_string();
        let reason = crate::error::parser_reason(status);
        *rewrite = Some((problem_head(status, &exchange_id, reason), 0, len));
        *activity.parser_refusal.lock() = Some(ParserRefusal {
            exchange_id,
            status,
            reason,
        });
        true
    }

    /// Writes the pending replacement; ready with hyper's byte count once all of it is out.
    fn drive_rewrite(
        mut inner: Pin<&mut T>,
        activity: &Activity,
        rewrite: &mut Option<(Vec<u8>, usize, usize)>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        while let Some((bytes, written, stands_for)) = rewrite.as_mut() {
            let rest = bytes.get(*written..).unwrap_or_default();
            if rest.is_empty() {
                let n = *stands_for;
                *rewrite = None;
                return Poll::Ready(Ok(n));
            }
            match Self::track(activity, inner.as_mut().poll_write(cx, rest)) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<T: AsyncWrite> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        if this.rewrite.is_some()
            || Self::start_rewrite(this.activity, this.rewrite, buf, buf.len())
        {
            return Self::drive_rewrite(this.inner, this.activity, this.rewrite, cx);
        }
        Self::track(this.activity, this.inner.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        if this.rewrite.is_some() {
            match Self::drive_rewrite(this.inner.as_mut(), this.activity, this.rewrite, cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Self::track(this.activity, this.inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        if this.rewrite.is_some() {
            match Self::drive_rewrite(this.inner.as_mut(), this.activity, this.rewrite, cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        this.inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        if this.rewrite.is_some() {
            return Self::drive_rewrite(this.inner, this.activity, this.rewrite, cx);
        }
        // Only an error status line can be one of hyper's own refusals: a 1xx-3xx head (every
        // answer the pipeline forwards) is written as it is, without joining the slices.
        let first = bufs.iter().find(|b| !b.is_empty());
        if first.is_some_and(|b| b.starts_with(b"HTTP/1.") && matches!(b.get(9), Some(b'4' | b'5')))
        {
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if total <= 1024 {
                let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                if Self::start_rewrite(this.activity, this.rewrite, &joined, total) {
                    return Self::drive_rewrite(this.inner, this.activity, this.rewrite, cx);
                }
            }
        }
        Self::track(this.activity, this.inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_bare_error_heads_are_rewritten() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 22:00:00 GMT\r\n\r\n";
        assert_eq!(parser_error_status(hyper), Some(431));
        // The pipeline's responses carry the exchange id; upstream successes are not errors;
        // a head with a body following is not hyper's.
        let ours =
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-penghubung-exchange-id: x\r\n\r\n";
        assert_eq!(parser_error_status(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parser_error_status(ok), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parser_error_status(with_body), None);
        let body_chunk = b"some body bytes";
        assert_eq!(parser_error_status(body_chunk), None);
        let replaced =
            String::from_utf8(problem_head(431, "abc", "headers_too_large")).unwrap_or_default();
        assert!(replaced.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(replaced.contains("\r\nx-penghubung-exchange-id: abc\r\n"));
        assert!(replaced.contains("\"reason\":\"headers_too_large\""));
    }
}
