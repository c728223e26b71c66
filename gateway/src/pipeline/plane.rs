//! What the data side shares across connections: the snapshot in force, the evidence log, the
//! per-source refusal accounting and the shutdown signal. The control side (`control::Gateway`)
//! owns one and swaps snapshots into it; connections and the pipeline only read it.

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::refusals::RefusalGuard;
use crate::snapshot::Snapshot;
use penghubung_evidence::EvidenceLog;

/// The data plane's shared state.
pub struct Plane {
    /// The compiled config snapshot requests use; swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// The evidence log (process-wide; its settings need a restart).
    pub evidence: EvidenceLog,
    /// Per-source accounting of unauthenticated refusals (survives reloads).
    pub refusals: RefusalGuard,
    shutdown_tx: watch::Sender<bool>,
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane").finish_non_exhaustive()
    }
}

impl Plane {
    /// A plane serving `snapshot`, recording into `evidence`.
    pub fn new(snapshot: Snapshot, evidence: EvidenceLog) -> Plane {
        let (shutdown_tx, _) = watch::channel(false);
        Plane {
            snapshot: ArcSwap::from_pointee(snapshot),
            evidence,
            refusals: RefusalGuard::default(),
            shutdown_tx,
        }
    }

    /// Watches for shutdown.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Signals shutdown: listeners stop accepting, connections drain.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
    }
}
