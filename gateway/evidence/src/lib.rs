//! The evidence log: signed, time-stamped, tamper-evident records of every call (format: proto/README.md).
//!
//! The pipeline calls [`EvidenceLog::append`] before forwarding (request) and after the response
//! (outcome); a failed append means the call is answered 503 and nothing is forwarded. The
//! on-disk format is specified for auditors in `proto/README.md`.

pub mod checkpoint;
pub mod cli;
pub mod commitment;
pub mod decode;
mod error;
pub mod merkle;
pub mod personal;
pub mod pki;
pub mod reason;
pub mod segment;
mod settings;
pub mod signer;
pub mod tsa;
pub mod verify;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

pub use error::EvidenceError;
pub use penghubung_proto::evidence::v1 as schema;
pub use settings::{EvidenceSettings, OnFailure, SignerSettings, TsaPolicy, TsaSettings};

use prost::Message as _;
use schema::{record::Kind, Admin, Record};
use writer::{Msg, Writer};

/// Counters and flags shared by the writer thread, the checkpoint task and the readers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    writable: AtomicBool,
    records: AtomicU64,
    bytes: AtomicU64,
    batches: AtomicU64,
    fsync_nanos: AtomicU64,
    write_errors: AtomicU64,
    dropped: AtomicU64,
    checkpoints: AtomicU64,
    /// Unix seconds of the last checkpoint written (0: none yet).
    last_checkpoint_unix: AtomicI64,
    tsa_ok: AtomicBool,
    /// Unix seconds since the TSA has been failing (0: it is not failing).
    tsa_failing_since: AtomicI64,
    tsa_blocking: AtomicBool,
    /// Unix seconds of the last time-stamp token granted (0: none yet).
    tsa_last_granted_unix: AtomicI64,
    signer_ok: AtomicBool,
    signer_not_after: AtomicI64,
    last_error: parking_lot::Mutex<Option<String>>,
}

/// A point-in-time view of the log's state for `/healthz` and the console.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvidenceHealth {
    /// Evidence is being recorded at all.
    pub enabled: bool,
    /// The last write succeeded.
    pub writable: bool,
    /// The last write or checkpoint error.
    pub last_error: Option<String>,
    /// Records in the log (the last sequence number).
    pub records: u64,
    /// Seconds since the last checkpoint, if any.
    pub last_checkpoint_age_secs: Option<u64>,
    /// The last time-stamp request succeeded (true when no TSA is configured).
    pub tsa_ok: bool,
    /// Appends are refused because the TSA is down past its window (fail-closed policy).
    pub tsa_blocking: bool,
    /// A TSA is configured.
    pub tsa_configured: bool,
    /// Unix seconds of the last time-stamp token granted.
    pub tsa_last_token_unix: Option<i64>,
    /// A checkpoint signer is configured.
    pub signer_configured: bool,
    /// The last checkpoint was signed (false when no signer is configured).
    pub signer_ok: bool,
    /// Unix seconds when the signer certificate expires.
    pub signer_cert_not_after: Option<i64>,
    /// `on_failure = "fail_open"`: records may be lost.
    pub fail_open: bool,
    /// Records accepted without being written (fail-open mode).
    pub dropped_records: u64,
}

/// Counters of the evidence log (monotonic since the log was opened) with its health, read at
/// scrape time.
#[derive(Debug, Clone, Default)]
pub struct EvidenceStats {
    /// Health, records and dropped records.
    pub health: EvidenceHealth,
    /// Bytes written to segments.
    pub written_bytes: u64,
    /// Group commits (one fsync each).
    pub group_commits: u64,
    /// Seconds spent in group-commit fsyncs.
    pub group_commit_seconds: f64,
    /// Failed writes.
    pub write_errors: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

pub(crate) struct Inner {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    settings: EvidenceSettings,
    checkpointer: checkpoint::Checkpointer,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_checkpoints: tokio::sync::watch::Sender<bool>,
    checkpoint_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The directory's `writer.lock`, locked while this log writes it (released at shutdown).
    lock: parking_lot::Mutex<Option<std::fs::File>>,
}

/// Handle to the evidence log; cheap to clone.
#[derive(Clone)]
pub struct EvidenceLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

impl EvidenceLog {
    /// Opens the log in `settings.dir`: recovers a torn tail, rebuilds the chain and Merkle
    /// frontier, starts the writer thread and the checkpoint task.
    pub async fn open(
        settings: &EvidenceSettings,
        node_id: &str,
    ) -> Result<EvidenceLog, EvidenceError> {
        if !settings.enabled {
            return Ok(Self::disabled());
        }
        if let Some((path, msg)) = settings.validate().into_iter().next() {
            return Err(EvidenceError::Config(format!("evidence.{path}: {msg}")));
        }
        let checkpointer = checkpoint::Checkpointer::load(settings, node_id).await?;
        let dir = settings.dir.clone();
        let (recovered, lock) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| EvidenceError::io("create evidence dir", e))?;
            let lock = lock_dir(&dir)?;
            writer::recover(&dir).map(|r| (r, lock))
        })
        .await
        .map_err(|_| EvidenceError::Stopped)??;
        let shared = Arc::new(Shared {
            writable: AtomicBool::new(true),
            records: AtomicU64::new(recovered.tail.sequence),
            tsa_ok: AtomicBool::new(true),
            ..Shared::default()
        });
        checkpointer.resume(&recovered.tail, &shared);
        let writer = Writer::new(
            &settings.dir,
            node_id,
            settings,
            recovered.tail,
            shared.clone(),
        )?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("evidence-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| EvidenceError::io("spawn evidence writer", e))?;
        let (stop_checkpoints, stop_rx) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            tx,
            shared,
            settings: settings.clone(),
            checkpointer,
            thread: parking_lot::Mutex::new(Some(thread)),
            stop_checkpoints,
            checkpoint_task: parking_lot::Mutex::new(None),
            lock: parking_lot::Mutex::new(Some(lock)),
        });
        let log = EvidenceLog {
            inner: Some(inner.clone()),
        };
        if let Some((path, offset, bytes)) = recovered.truncated {
            let admin = Admin {
                action: "recovery.truncated".into(),
                target: path.display().to_string(),
                detail: format!(
                    "torn tail of {bytes} bytes cut at byte {offset}; kept in {}.torn-{offset}",
                    path.display()
                ),
                ..Admin::default()
            };
            log.append_internal(Record {
                kind: Some(Kind::Admin(admin)),
                ..Record::default()
            })
            .await?;
        }
        let task = tokio::spawn(checkpoint::run_periodic(Arc::downgrade(&inner), stop_rx));
        *inner.checkpoint_task.lock() = Some(task);
        Ok(log)
    }

    /// A log that records nothing: `append` succeeds at once with sequence 0.
    pub fn disabled() -> EvidenceLog {
        EvidenceLog { inner: None }
    }

    /// The directory of the segment files (`None`: evidence is off).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.inner
            .as_ref()
            .map(|inner| inner.settings.dir.as_path())
    }

    /// Whether records are written.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Makes `record` durable and returns its sequence number (filling sequence, time and node
    /// id). An error means the caller must answer 503 and forward nothing.
    pub async fn append(&self, record: Record) -> Result<u64, EvidenceError> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        if inner.shared.tsa_blocking.load(Ordering::Relaxed) {
            return Err(EvidenceError::TsaUnavailable);
        }
        // Leave room for the fields the writer fills in; a reader rejects larger frames.
        if record.encoded_len() > segment::MAX_RECORD_LEN - 1024 {
            return Err(EvidenceError::NotWritable("record too large".into()));
        }
        self.append_internal(record).await
    }

    /// Appends bypassing the TSA gate (checkpoints and maintenance records).
    pub(crate) async fn append_internal(&self, record: Record) -> Result<u64, EvidenceError> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        inner
            .tx
            .send(Msg::Append(Box::new(record), tx))
            .map_err(|_| EvidenceError::Stopped)?;
        rx.await.map_err(|_| EvidenceError::Stopped)?
    }

    /// The tree head over everything durable so far.
    pub(crate) async fn snapshot(&self) -> Result<writer::Head, EvidenceError> {
        let inner = self.inner.as_ref().ok_or(EvidenceError::Stopped)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        inner
            .tx
            .send(Msg::Snapshot(tx))
            .map_err(|_| EvidenceError::Stopped)?;
        rx.await.map_err(|_| EvidenceError::Stopped)
    }

    /// Signs a catalogue revision digest with the configured signer, for
    /// [`signer::PURPOSE_REVISION`] only (the signature is over
    /// `signing_message("catalog-revision", digest)`, never a checkpoint's message). `Ok(None)`
    /// when the log is disabled or no signer is configured.
    pub async fn sign_revision(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<signer::Signed>, EvidenceError> {
        match &self.inner {
            None => Ok(None),
            Some(inner) => {
                inner
                    .checkpointer
                    .sign(signer::PURPOSE_REVISION, digest)
                    .await
            }
        }
    }

    /// Writes a checkpoint now if records were added since the last one; returns its sequence.
    pub async fn checkpoint_now(&self) -> Result<Option<u64>, EvidenceError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        inner
            .checkpointer
            .checkpoint(self, &inner.shared, &inner.settings)
            .await
    }

    /// Current state for health checks.
    pub fn health(&self) -> EvidenceHealth {
        let Some(inner) = &self.inner else {
            return EvidenceHealth {
                enabled: false,
                writable: true,
                last_error: None,
                records: 0,
                last_checkpoint_age_secs: None,
                tsa_ok: true,
                tsa_blocking: false,
                tsa_configured: false,
                tsa_last_token_unix: None,
                signer_configured: false,
                signer_ok: false,
                signer_cert_not_after: None,
                fail_open: false,
                dropped_records: 0,
            };
        };
        let s = &inner.shared;
        let last_cp = s.last_checkpoint_unix.load(Ordering::Relaxed);
        let now = writer::now_nanos() / 1_000_000_000;
        let not_after = s.signer_not_after.load(Ordering::Relaxed);
        EvidenceHealth {
            enabled: true,
            writable: s.writable.load(Ordering::Relaxed),
            last_error: s.last_error.lock().clone(),
            records: s.records.load(Ordering::Relaxed),
            last_checkpoint_age_secs: (last_cp > 0)
                .then(|| now.saturating_sub(last_cp).max(0) as u64),
            tsa_ok: s.tsa_ok.load(Ordering::Relaxed),
            tsa_blocking: s.tsa_blocking.load(Ordering::Relaxed),
            tsa_configured: inner.settings.tsa.is_some(),
            tsa_last_token_unix: Some(s.tsa_last_granted_unix.load(Ordering::Relaxed))
                .filter(|t| *t > 0),
            signer_configured: inner.settings.signer.is_some(),
            signer_ok: s.signer_ok.load(Ordering::Relaxed),
            signer_cert_not_after: (not_after != 0).then_some(not_after),
            fail_open: inner.settings.on_failure == OnFailure::FailOpen,
            dropped_records: s.dropped.load(Ordering::Relaxed),
        }
    }

    /// The log's counters and health for the gateway's telemetry to expose (`/metrics`); the
    /// crate names no metric itself.
    pub fn stats(&self) -> EvidenceStats {
        let health = self.health();
        let mut stats = EvidenceStats {
            health,
            ..EvidenceStats::default()
        };
        if let Some(i) = &self.inner {
            let s = &i.shared;
            stats.written_bytes = s.bytes.load(Ordering::Relaxed);
            stats.group_commits = s.batches.load(Ordering::Relaxed);
            stats.group_commit_seconds = s.fsync_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            stats.write_errors = s.write_errors.load(Ordering::Relaxed);
            stats.checkpoints = s.checkpoints.load(Ordering::Relaxed);
        }
        stats
    }

    /// Writes a final checkpoint, flushes and stops the writer thread and the checkpoint task.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        let _ = inner.stop_checkpoints.send(true);
        let task = inner.checkpoint_task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Err(error) = self.checkpoint_now().await {
            tracing::warn!(%error, "final evidence checkpoint failed");
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if inner.tx.send(Msg::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
        let thread = inner.thread.lock().take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        inner.lock.lock().take();
    }
}

/// Takes the exclusive lock of `dir/writer.lock`: one writer per log (a second gateway, or
/// `penghubung evidence disclose` while the gateway writes, is refused instead of interleaving
/// frames).
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File, EvidenceError> {
    let path = dir.join("writer.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| EvidenceError::io(format!("open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EvidenceError::Config(format!(
            "the evidence log in {} is being written by another process (a running gateway?); \
             one writer per log",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(EvidenceError::io(format!("lock {}", path.display()), e))
        }
    }
}
