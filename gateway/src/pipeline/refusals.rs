//! Refusal storms: a bound on what unauthenticated refusals from one source cost.
//!
//! Every refusal is evidence, and evidence is a durable write, so without a bound a client that
//! sends garbage as fast as it can turns each of its requests into an `fdatasync`. Per source
//! (an IPv4 address, an IPv6 /64) and fixed window of `limits.refusal_window_secs`, the first
//! `limits.refusals_per_source` refusals of unauthenticated requests are recorded one by one;
//! the rest of that window's refusals from the source are only counted, and one
//! `refusals_suppressed` record per source and window says how many there were, for which
//! reasons, and between which times. It is written when the window has ended (the sweeper checks
//! every second) and at shutdown, so a storm costs at most `limit + 1` records per window.
//!
//! Once a source is over its limit, a request from it that presents no credential (no
//! `Authorization`, no `apikey`, no client certificate) is answered 429 before admission,
//! routing or authentication run. Requests that present a credential are always authenticated,
//! and a source that had a successful exchange in the current or the previous window is never
//! answered early: an OPD behind NAT shares its address with whatever else runs there, and its
//! working applications must not pay for a broken one.
//!
//! State is process-wide (it survives reloads) and bounded: at most [`MAX_SOURCES`] sources
//! are tracked; beyond that, new sources share one entry, reported as source `*`. Sources
//! quiet for two windows are forgotten by the sweeper.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use penghubung_evidence::schema;

use crate::admit::RequestLimits;

const SHARDS: usize = 16;

/// Most sources tracked at once; later sources share the overflow entry (source `*`).
pub const MAX_SOURCES: usize = 100_000;

/// The tracking key of a source: the IPv4 address, or the IPv6 /64 prefix (an IPv6 client
/// controls the low 64 bits of its address). `None` is the overflow entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey(Option<IpAddr>);

impl SourceKey {
    fn of(ip: IpAddr) -> SourceKey {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
            v4 => v4,
        };
        SourceKey(Some(ip))
    }

    fn label(self) -> String {
        match self.0 {
            Some(IpAddr::V6(v6)) => format!("{v6}/64"),
            Some(v4) => v4.to_string(),
            None => "*".to_owned(),
        }
    }
}

/// What was suppressed from one source in one window.
#[derive(Debug, Default)]
struct Summary {
    window: u64,
    window_secs: u64,
    limit: u64,
    suppressed: u64,
    first_unix_nanos: i64,
    last_unix_nanos: i64,
    first_exchange_id: String,
    last_exchange_id: String,
    reasons: BTreeMap<(&'static str, &'static str, u16), u64>,
}

#[derive(Debug, Default)]
struct Source {
    /// Window index the count belongs to (`u64::MAX`: none yet).
    window: AtomicU64,
    /// Unauthenticated refusals in `window`.
    refused: AtomicU64,
    /// One more than the window index of the last successful exchange (0: none).
    succeeded: AtomicU64,
    /// Suppressed refusals of windows not yet written.
    pending: Mutex<Vec<Summary>>,
}

/// Whether a refusal is recorded one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Write the `refused` record.
    Record,
    /// Counted into the source's `refusals_suppressed` record for this window.
    Suppressed,
}

/// The refusal facts the summary counts.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// Stage that refused.
    pub stage: &'static str,
    /// Reason class.
    pub reason: &'static str,
    /// Status answered (0 when none).
    pub status: u16,
    /// Exchange id (empty for connection-level refusals).
    pub exchange_id: &'a str,
}

/// Per-source refusal accounting (see the module docs).
#[derive(Debug)]
pub struct RefusalGuard {
    shards: Vec<RwLock<HashMap<SourceKey, Arc<Source>>>>,
    tracked: AtomicUsize,
    base: Instant,
    suppressed_total: AtomicU64,
}

impl Default for RefusalGuard {
    fn default() -> Self {
        RefusalGuard {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            tracked: AtomicUsize::new(0),
            base: Instant::now(),
            suppressed_total: AtomicU64::new(0),
        }
    }
}

fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl RefusalGuard {
    fn shard(&self, key: SourceKey) -> &RwLock<HashMap<SourceKey, Arc<Source>>> {
        let index = match key.0 {
            Some(IpAddr::V4(v4)) => u32::from(v4) as usize,
            Some(IpAddr::V6(v6)) => (u128::from(v6) >> 64) as usize,
            None => 0,
        };
        &self.shards[index % SHARDS]
    }

    fn now_secs(&self) -> u64 {
        self.base.elapsed().as_secs()
    }

    fn window_of(&self, limits: &RequestLimits) -> u64 {
        self.now_secs() / limits.refusal_window_secs.max(1)
    }

    fn get(&self, key: SourceKey) -> Option<Arc<Source>> {
        self.shard(key).read().get(&key).cloned()
    }

    fn get_or_insert(&self, key: SourceKey) -> Arc<Source> {
        if let Some(s) = self.get(key) {
            return s;
        }
        let key = if self.tracked.load(Ordering::Relaxed) >= MAX_SOURCES {
            SourceKey(None)
        } else {
            key
        };
        let mut shard = self.shard(key).write();
        shard
            .entry(key)
            .or_insert_with(|| {
                self.tracked.fetch_add(1, Ordering::Relaxed);
                Arc::new(Source {
                    window: AtomicU64::new(u64::MAX),
                    ..Source::default()
                })
            })
            .clone()
    }

    /// When `ip` is over its refusal limit in this window and had no successful exchange in
    /// this or the previous window: how long until the window ends. The caller answers 429
    /// only to requests that present no credential.
    pub fn limited(&self, ip: IpAddr, limits: &RequestLimits) -> Option<Duration> {
        if limits.refusals_per_source == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let source = self.get(SourceKey::of(ip))?;
        let window = self.window_of(limits);
        if source.window.load(Ordering::Relaxed) != window
            || source.refused.load(Ordering::Relaxed) < limits.refusals_per_source
        {
            return None;
        }
        let succeeded = source.succeeded.load(Ordering::Relaxed);
        if succeeded == window + 1 || (window > 0 && succeeded == window) {
            return None;
        }
        let secs = limits.refusal_window_secs.max(1);
        Some(Duration::from_secs(
            (window + 1) * secs - self.now_secs().min((window + 1) * secs),
        ))
    }

    /// A request from `ip` was answered without a refusal: the source is exempt from early
    /// answers for this window and the next. Costs one atomic load when nothing is tracked.
    pub fn succeeded(&self, ip: IpAddr, limits: &RequestLimits) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(source) = self.get(SourceKey::of(ip)) {
            // Written once per window, so a busy source behind NAT does not bounce the line.
            let mark = self.window_of(limits) + 1;
            if source.succeeded.load(Ordering::Relaxed) != mark {
                source.succeeded.store(mark, Ordering::Relaxed);
            }
        }
    }

    /// Counts an unauthenticated refusal from `ip` and says whether it gets a record of its own.
    pub fn refused(&self, ip: IpAddr, limits: &RequestLimits, refusal: Refusal<'_>) -> Disposition {
        if limits.refusals_per_source == 0 {
            return Disposition::Record;
        }
        let source = self.get_or_insert(SourceKey::of(ip));
        let window = self.window_of(limits);
        let previous = source.window.swap(window, Ordering::AcqRel);
        let count = if previous == window {
            source.refused.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            source.refused.store(1, Ordering::Release);
            1
        };
        if count <= limits.refusals_per_source {
            return Disposition::Record;
        }
        self.suppressed_total.fetch_add(1, Ordering::Relaxed);
        let now = unix_nanos();
        let mut pending = source.pending.lock();
        let summary = match pending.iter_mut().position(|s| s.window == window) {
            Some(i) => &mut pending[i],
            None => {
                pending.push(Summary {
                    window,
                    window_secs: limits.refusal_window_secs.max(1),
                    limit: limits.refusals_per_source,
                    first_unix_nanos: now,
                    first_exchange_id: refusal.exchange_id.to_owned(),
                    ..Summary::default()
                });
                let last = pending.len() - 1;
                &mut pending[last]
            }
        };
        summary.suppressed += 1;
        summary.last_unix_nanos = now;
        summary.last_exchange_id = refusal.exchange_id.to_owned();
        *summary
            .reasons
            .entry((refusal.stage, refusal.reason, refusal.status))
            .or_default() += 1;
        Disposition::Suppressed
    }

    /// The counters for `/metrics`: refusals counted into summaries instead of recorded one by
    /// one, and the sources being tracked.
    pub fn stats(&self) -> crate::telemetry::RefusalStats {
        crate::telemetry::RefusalStats {
            suppressed: self.suppressed_total.load(Ordering::Relaxed),
            sources: self.tracked.load(Ordering::Relaxed) as u64,
        }
    }

    /// Summaries of windows that have ended (all of them when `all`), as records to append;
    /// forgets sources quiet for two windows.
    pub fn take_summaries(&self, limits: &RequestLimits, all: bool) -> Vec<schema::Record> {
        let window = self.window_of(limits);
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut forget = Vec::new();
            {
                let map = shard.read();
                for (key, source) in map.iter() {
                    let mut pending = source.pending.lock();
                    let mut i = 0;
                    while i < pending.len() {
                        if all || pending[i].window < window {
                            out.push(summary_record(*key, pending.swap_remove(i)));
                        } else {
                            i += 1;
                        }
                    }
                    let seen = source.window.load(Ordering::Relaxed);
                    let succeeded = source.succeeded.load(Ordering::Relaxed);
                    if pending.is_empty()
                        && seen.saturating_add(2) <= window
                        && succeeded.saturating_add(1) <= window
                    {
                        forget.push(*key);
                    }
                }
            }
            if !forget.is_empty() {
                let mut map = shard.write();
                for key in forget {
                    let idle = map.get(&key).is_some_and(|s| {
                        s.pending.lock().is_empty()
                            && s.window.load(Ordering::Relaxed).saturating_add(2) <= window
                    });
                    if idle && map.remove(&key).is_some() {
                        self.tracked.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        out.sort_by_key(|r| match &r.kind {
            Some(schema::record::Kind::RefusalsSuppressed(s)) => s.first_unix_nanos,
            _ => 0,
        });
        out
    }
}

fn summary_record(key: SourceKey, s: Summary) -> schema::Record {
    let reasons = s
        .reasons
        .into_iter()
        .map(
            |((stage, reason, status), count)| schema::SuppressedReason {
                stage: stage.to_owned(),
                reason_class: reason.to_owned(),
                status: u32::from(status),
                count,
            },
        )
        .collect();
    schema::Record {
        gateway_version: env!("CARGO_PKG_VERSION").into(),
        kind: Some(schema::record::Kind::RefusalsSuppressed(
            schema::RefusalsSuppressed {
                source: key.label(),
                window_secs: s.window_secs,
                recorded: s.limit,
                suppressed: s.suppressed,
                first_unix_nanos: s.first_unix_nanos,
                last_unix_nanos: s.last_unix_nanos,
                first_exchange_id: s.first_exchange_id,
                last_exchange_id: s.last_exchange_id,
                limit: s.limit,
                reasons,
            },
        )),
        ..Default::default()
    }
}

/// A refusal answered by hyper's HTTP/1 parser (400, 431, ...), which the transport rewrote
/// into a problem response with an exchange id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParserRefusal {
    /// The exchange id sent to the client.
    pub exchange_id: String,
    /// The status sent.
    pub status: u16,
    /// The reason code sent (`headers_too_large`, `uri_too_long`, `http_parse`, ...).
    pub reason: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(n: u64) -> RequestLimits {
        RequestLimits {
            refusals_per_source: n,
            refusal_window_secs: 3600,
            ..RequestLimits::default()
        }
    }

    fn refusal(id: &str) -> Refusal<'_> {
        Refusal {
            stage: "authenticate",
            reason: "credential_missing",
            status: 401,
            exchange_id: id,
        }
    }

    #[test]
    fn beyond_the_limit_refusals_are_counted_into_one_summary() {
        let guard = RefusalGuard::default();
        let l = limits(3);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        assert_eq!(guard.limited(ip, &l), None);
        for i in 0..3 {
            assert_eq!(
                guard.refused(ip, &l, refusal(&i.to_string())),
                Disposition::Record
            );
        }
        assert!(guard.limited(ip, &l).is_some());
        for i in 3..10 {
            assert_eq!(
                guard.refused(ip, &l, refusal(&i.to_string())),
                Disposition::Suppressed
            );
        }
        // Another source is not affected.
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(guard.limited(other, &l), None);
        assert_eq!(guard.refused(other, &l, refusal("o")), Disposition::Record);
        // The window has not ended: nothing to write yet, until shutdown takes everything.
        assert!(guard.take_summaries(&l, false).is_empty());
        let records = guard.take_summaries(&l, true);
        assert_eq!(records.len(), 1);
        let Some(schema::record::Kind::RefusalsSuppressed(s)) = &records[0].kind else {
            panic!("not a summary");
        };
        assert_eq!(s.source, "192.0.2.7");
        assert_eq!((s.recorded, s.suppressed, s.limit), (3, 7, 3));
        assert_eq!(
            (s.first_exchange_id.as_str(), s.last_exchange_id.as_str()),
            ("3", "9")
        );
        assert_eq!(s.reasons.len(), 1);
        assert_eq!(s.reasons[0].count, 7);
        assert!(guard.take_summaries(&l, true).is_empty());
        assert_eq!(guard.stats().suppressed, 7);
    }

    #[test]
    fn a_source_with_a_successful_exchange_is_never_answered_early() {
        let guard = RefusalGuard::default();
        let l = limits(2);
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        for _ in 0..5 {
            guard.refused(ip, &l, refusal(""));
        }
        assert!(guard.limited(ip, &l).is_some());
        guard.succeeded(ip, &l);
        assert_eq!(guard.limited(ip, &l), None);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_prefix() {
        let guard = RefusalGuard::default();
        let l = limits(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(guard.refused(a, &l, refusal("")), Disposition::Record);
        assert_eq!(guard.refused(b, &l, refusal("")), Disposition::Suppressed);
        assert_eq!(guard.refused(c, &l, refusal("")), Disposition::Record);
        let records = guard.take_summaries(&l, true);
        let Some(schema::record::Kind::RefusalsSuppressed(s)) = &records[0].kind else {
            panic!("not a summary");
        };
        assert_eq!(s.source, "2001:db8:1:2::/64");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let guard = RefusalGuard::default();
        let l = limits(0);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..1000 {
            assert_eq!(guard.refused(ip, &l, refusal("")), Disposition::Record);
        }
        assert_eq!(guard.limited(ip, &l), None);
    }
}
