//! A transport wrapper that records activity for the connection watchdog: when bytes last
//! arrived, whether a write is stuck (client not reading), and how many requests are in flight.
//! It also feeds every byte read to the connection's [`Scanner`] (HTTP/1 CL+TE heads, HTTP/2
//! control-frame floods), before hyper sees the bytes.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::scan::{ScanConfig, Scanner};

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
    /// An HTTP/2 trailer section carried a pseudo-header field; reads fail from then on.
    pub h2_malformed: AtomicBool,
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
    }
}

impl<T> TimedIo<T> {
    /// Wraps a transport; `scan` configures the byte scanner.
    pub fn new(inner: T, activity: Arc<Activity>, scan: ScanConfig) -> TimedIo<T> {
        TimedIo {
            inner,
            activity,
            scanner: Scanner::new(scan),
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

impl<T: AsyncWrite> AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Self::track(this.activity, this.inner.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        Self::track(this.activity, this.inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Self::track(this.activity, this.inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
