//! A transport wrapper that records activity for the connection watchdog: when bytes last
//! arrived, whether a write is stuck (client not reading), and how many requests are in flight.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
}

impl Activity {
    /// A fresh state, counting the connection as active now.
    pub fn new() -> Arc<Activity> {
        let a = Activity::default();
        a.last_read_ms.store(now_ms(), Ordering::Relaxed);
        Arc::new(a)
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
    }
}

impl<T> TimedIo<T> {
    /// Wraps a transport.
    pub fn new(inner: T, activity: Arc<Activity>) -> TimedIo<T> {
        TimedIo { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for TimedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.activity
                .last_read_ms
                .store(now_ms(), Ordering::Relaxed);
            this.activity
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
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
