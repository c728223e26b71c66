//! The in-process limiter store: GCRA theoretical arrival times and quota counters in atomics,
//! behind read-mostly sharded maps, so the hot path takes a shared read lock and one CAS.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::time::Instant;

const SHARDS: usize = 32;

#[derive(Default)]
struct Cell {
    /// Theoretical arrival time, nanoseconds since the store's base instant.
    tat: AtomicU64,
    /// Quota state: period index in the high 32 bits, count in the low 32 bits.
    quota: AtomicU64,
}

/// Outcome of one check against a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed; remaining burst, nanoseconds until the burst is full again, quota used.
    Allow {
        remaining: u64,
        reset_ns: u64,
        used: u64,
    },
    /// Rate exceeded; nanoseconds until the next request conforms.
    Rate { retry_ns: u64 },
    /// Quota used up.
    Quota,
}

/// Sharded local store.
pub(crate) struct LocalStore {
    shards: Vec<RwLock<HashMap<String, Arc<Cell>>>>,
    base: Instant,
}

impl LocalStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            base: Instant::now(),
        }
    }

    fn cell(&self, key: &str) -> Option<Arc<Cell>> {
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let shard = self.shards.get((h % SHARDS as u64) as usize)?;
        if let Some(c) = shard.read().get(key) {
            return Some(c.clone());
        }
        Some(shard.write().entry(key.to_owned()).or_default().clone())
    }

    /// GCRA with emission interval `t_ns` and `burst`, then the quota (`qmax` per period `idx`).
    pub fn check(&self, key: &str, t_ns: u64, burst: u64, quota: Option<(u64, u32)>) -> Verdict {
        let Some(cell) = self.cell(key) else {
            return Verdict::Quota;
        };
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut remaining = u64::MAX;
        let mut reset_ns = 0;
        if t_ns > 0 {
            let limit = t_ns.saturating_mul(burst);
            let mut tat = cell.tat.load(Ordering::Acquire);
            loop {
                let new_tat = tat.max(now).saturating_add(t_ns);
                let diff = new_tat - now;
                if diff > limit {
                    return Verdict::Rate {
                        retry_ns: diff - limit,
                    };
                }
                match cell.tat.compare_exchange_weak(
                    tat,
                    new_tat,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        remaining = (limit - diff) / t_ns;
                        reset_ns = diff;
                        break;
                    }
                    Err(cur) => tat = cur,
                }
            }
        }
        let mut used = 0;
        if let Some((qmax, idx)) = quota {
            let mut v = cell.quota.load(Ordering::Acquire);
            loop {
                let count = if (v >> 32) as u32 == idx {
                    v & 0xffff_ffff
                } else {
                    0
                };
                if count >= qmax {
                    return Verdict::Quota;
                }
                let next = (u64::from(idx) << 32) | (count + 1);
                match cell
                    .quota
                    .compare_exchange_weak(v, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        used = count + 1;
                        break;
                    }
                    Err(cur) => v = cur,
                }
            }
        }
        Verdict::Allow {
            remaining,
            reset_ns,
            used,
        }
    }
}
