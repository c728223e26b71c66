//! A circuit breaker per peer: closed → (N consecutive failures) → open (calls refused at once,
//! the client gets a clean 503) → after the open time, half-open (one probe call goes through)
//! → closed on its success, open again on its failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// Calls are refused until the instant.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    open_until: Instant,
}

/// The breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    inner: Mutex<Inner>,
    /// Times the circuit opened.
    pub opened: AtomicU64,
    /// Calls refused while open.
    pub refused: AtomicU64,
}

/// Permission to make one call; report how it went with [`Breaker::record`].
#[derive(Debug)]
pub struct Permit {
    probe: bool,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                open_until: Instant::now(),
            }),
            opened: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// Whether a call may go now.
    pub fn admit(&self) -> Option<Permit> {
        let mut inner = self.inner.lock();
        match inner.state {
            State::Closed => Some(Permit { probe: false }),
            State::Open if Instant::now() >= inner.open_until => {
                inner.state = State::HalfOpen;
                Some(Permit { probe: true })
            }
            State::Open | State::HalfOpen => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Reports the outcome of a permitted call.
    pub fn record(&self, permit: Permit, ok: bool) {
        let mut inner = self.inner.lock();
        if ok {
            inner.failures = 0;
            if permit.probe || inner.state == State::HalfOpen {
                inner.state = State::Closed;
                tracing::info!("peer circuit closed: the probe call succeeded");
            }
            return;
        }
        inner.failures = inner.failures.saturating_add(1);
        if permit.probe || (inner.state == State::Closed && inner.failures >= self.threshold) {
            inner.state = State::Open;
            inner.open_until = Instant::now() + self.open_for;
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(failures = inner.failures, "peer circuit open");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_refuses_probes_and_recovers() {
        let b = Breaker::new(2, Duration::from_millis(30));
        let p = b.admit().expect("closed");
        b.record(p, false);
        assert_eq!(b.state(), State::Closed);
        let p = b.admit().expect("closed");
        b.record(p, false);
        assert_eq!(b.state(), State::Open);
        assert!(b.admit().is_none());
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit().expect("half-open lets one probe through");
        assert!(b.admit().is_none(), "only one probe at a time");
        b.record(probe, false);
        assert_eq!(b.state(), State::Open);
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit().expect("half-open again");
        b.record(probe, true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.opened.load(Ordering::Relaxed), 2);
    }
}
