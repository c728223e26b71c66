//! The group-commit writer thread and the recovery scan that precedes it.
//!
//! One dedicated OS thread owns the open segment. It takes everything queued, assigns sequence
//! numbers and times, encodes, writes once, `fdatasync`s once, then wakes every waiter.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use prost::Message;
use tokio::sync::oneshot;

use super::merkle::{leaf_hash, Frontier, Hash};
use super::schema::{record::Kind, Admin, Record};
use super::segment::{self, encode_frame, is_torn_tail, parse_frame, GENESIS};
use super::settings::OnFailure;
use super::{checkpoint, EvidenceError, Shared};

/// A request to the writer thread.
pub(crate) enum Msg {
    /// Make this record durable and answer with its sequence number.
    Append(Box<Record>, oneshot::Sender<Result<u64, EvidenceError>>),
    /// Report the tree head over everything durable so far.
    Snapshot(oneshot::Sender<Head>),
    /// Stop after the queued records.
    Stop(oneshot::Sender<()>),
}

/// The tree head at a point between group commits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) tree_size: u64,
    pub(crate) root: Hash,
}

/// Log position and hashes after the last durable frame.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tail {
    pub(crate) sequence: u64,
    pub(crate) chain: Hash,
    pub(crate) frontier: Frontier,
    pub(crate) segment: u64,
    pub(crate) segment_len: u64,
    pub(crate) last_time: i64,
    /// Digest and sequence of the last checkpoint record (zeros/0 before the first).
    pub(crate) last_checkpoint_digest: Hash,
    pub(crate) last_checkpoint_sequence: u64,
    /// Time-stamp binding of the last checkpoint (zeros before the first).
    pub(crate) last_timestamp_binding: Hash,
}

/// What the recovery scan found.
pub(crate) struct Recovered {
    pub(crate) tail: Tail,
    pub(crate) truncated: Option<(PathBuf, u64, u64)>,
}

/// Reads every segment, rebuilding the chain and Merkle frontier; cuts a torn tail off the last
/// segment (keeping the cut bytes in a `.torn` file next to it).
pub(crate) fn recover(dir: &Path) -> Result<Recovered, EvidenceError> {
    let segments =
        segment::list_segments(dir).map_err(|e| EvidenceError::io("list segments", e))?;
    let mut tail = Tail {
        chain: GENESIS,
        ..Tail::default()
    };
    let mut truncated = None;
    let count = segments.len();
    for (i, (num, path)) in segments.iter().enumerate() {
        let data = std::fs::read(path)
            .map_err(|e| EvidenceError::io(format!("read {}", path.display()), e))?;
        let corrupt = |reason: String| EvidenceError::Corrupt {
            path: path.clone(),
            reason,
        };
        let mut off = 0usize;
        loop {
            let rest = &data[off..];
            match parse_frame(rest) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let expect = segment::chain_hash(&tail.chain, frame.record);
                    if expect != frame.chain {
                        return Err(corrupt(format!("chain hash mismatch at byte {off}")));
                    }
                    let record = Record::decode(frame.record)
                        .map_err(|e| corrupt(format!("undecodable record at byte {off}: {e}")))?;
                    if record.sequence != tail.sequence + 1 {
                        return Err(corrupt(format!(
                            "sequence {} follows {} at byte {off}",
                            record.sequence, tail.sequence
                        )));
                    }
                    if let Some(Kind::Checkpoint(cp)) = &record.kind {
                        tail.last_checkpoint_digest = checkpoint::digest_of(&record.node_id, cp);
                        tail.last_checkpoint_sequence = record.sequence;
                        tail.last_timestamp_binding =
                            checkpoint::timestamp_binding(&cp.tsa_status, &cp.timestamp_token);
                    }
                    tail.sequence = record.sequence;
                    tail.last_time = tail.last_time.max(record.time_unix_nanos);
                    tail.chain = frame.chain;
                    tail.frontier.push(leaf_hash(frame.record));
                    off += frame.len;
                }
                Err(err) if i + 1 == count && is_torn_tail(rest, &err) => {
                    let torn = format!("{}.torn-{off}", path.display());
                    std::fs::write(&torn, rest)
                        .map_err(|e| EvidenceError::io("save torn tail", e))?;
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| EvidenceError::io("open for truncation", e))?;
                    file.set_len(off as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| EvidenceError::io("truncate torn tail", e))?;
                    truncated = Some((path.clone(), off as u64, rest.len() as u64));
                    break;
                }
                Err(err) => return Err(corrupt(format!("{err} at byte {off}"))),
            }
        }
        tail.segment = *num;
        tail.segment_len = off as u64;
    }
    Ok(Recovered { tail, truncated })
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) node_id: String,
    pub(crate) segment_size: u64,
    pub(crate) max_batch: usize,
    pub(crate) on_failure: OnFailure,
    pub(crate) file: File,
    pub(crate) tail: Tail,
    pub(crate) shared: Arc<Shared>,
    /// The last write failed: the file may hold bytes past `tail.segment_len`.
    dirty: bool,
    /// Records refused or dropped since the last successful write.
    failed_since_ok: u64,
}

impl Writer {
    /// Opens (or creates) the current segment for writing.
    pub(crate) fn new(
        dir: &Path,
        node_id: &str,
        settings: &super::EvidenceSettings,
        mut tail: Tail,
        shared: Arc<Shared>,
    ) -> Result<Self, EvidenceError> {
        if tail.segment == 0 {
            tail.segment = 1;
        }
        let file = open_segment(dir, tail.segment)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            node_id: node_id.to_owned(),
            segment_size: settings.segment_size_bytes,
            max_batch: settings.max_batch_records.max(1),
            on_failure: settings.on_failure,
            file,
            tail,
            shared,
            dirty: false,
            failed_since_ok: 0,
        })
    }

    /// The thread body: group commits until `Stop` or until every sender is gone.
    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        let mut batch = Vec::new();
        let mut snapshots = Vec::new();
        let mut stop = None;
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(r, tx) => batch.push((*r, tx)),
                    Msg::Snapshot(tx) => snapshots.push(tx),
                    Msg::Stop(tx) => stop = Some(tx),
                }
                if batch.len() >= self.max_batch || stop.is_some() {
                    break;
                }
                // Empty or disconnected: commit what we have.
                next = rx.try_recv().ok();
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch));
            }
            for tx in snapshots.drain(..) {
                let _ = tx.send(Head {
                    tree_size: self.tail.frontier.size(),
                    root: self.tail.frontier.root(),
                });
            }
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
                return;
            }
        }
    }

    fn commit(&mut self, mut batch: Vec<(Record, oneshot::Sender<Result<u64, EvidenceError>>)>) {
        let started = Instant::now();
        if self.failed_since_ok > 0 {
            // Leave a trace in the log itself of the records that never made it.
            let (tx, _rx) = oneshot::channel();
            let admin = Admin {
                action: "evidence.write_recovered".into(),
                detail: format!(
                    "records_not_written={} on_failure={:?}",
                    self.failed_since_ok, self.on_failure
                ),
                ..Admin::default()
            };
            batch.insert(
                0,
                (
                    Record {
                        kind: Some(Kind::Admin(admin)),
                        ..Record::default()
                    },
                    tx,
                ),
            );
        }
        let result = self.write_batch(&mut batch);
        self.shared
            .fsync_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok((tail, first_seq, bytes)) => {
                self.tail = tail;
                self.dirty = false;
                self.failed_since_ok = 0;
                self.shared.writable.store(true, Ordering::Relaxed);
                self.shared
                    .records
                    .store(self.tail.sequence, Ordering::Relaxed);
                self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
                for (i, (_, tx)) in batch.into_iter().enumerate() {
                    let _ = tx.send(Ok(first_seq + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = batch.len(), "evidence write failed");
                self.dirty = true;
                self.failed_since_ok += batch.len() as u64;
                self.shared.writable.store(false, Ordering::Relaxed);
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                *self.shared.last_error.lock() = Some(e.to_string());
                for (_, tx) in batch {
                    let answer = match self.on_failure {
                        OnFailure::FailClosed => Err(EvidenceError::NotWritable(e.to_string())),
                        OnFailure::FailOpen => {
                            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                            Ok(0)
                        }
                    };
                    let _ = tx.send(answer);
                }
            }
        }
    }

    /// Encodes and writes the batch; the new tail is returned, never stored, so a failure leaves
    /// the state at the last durable frame.
    fn write_batch(
        &mut self,
        batch: &mut [(Record, oneshot::Sender<Result<u64, EvidenceError>>)],
    ) -> Result<(Tail, u64, u64), EvidenceError> {
        if self.dirty {
            // A failed write may have left part of a frame behind: cut back to the last durable end.
            self.file
                .set_len(self.tail.segment_len)
                .map_err(|e| EvidenceError::io("truncate after failed write", e))?;
        }
        let mut tail = self.tail.clone();
        let first_seq = tail.sequence + 1;
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut scratch = Vec::with_capacity(512);
        for (record, _) in batch.iter_mut() {
            tail.sequence += 1;
            tail.last_time = now_nanos().max(tail.last_time);
            record.sequence = tail.sequence;
            record.time_unix_nanos = tail.last_time;
            if record.node_id.is_empty() {
                record.node_id.clone_from(&self.node_id);
            }
            if record.gateway_version.is_empty() {
                record.gateway_version = env!("CARGO_PKG_VERSION").to_owned();
            }
            scratch.clear();
            record
                .encode(&mut scratch)
                .map_err(|e| EvidenceError::NotWritable(format!("encode: {e}")))?;
            tail.chain = encode_frame(&mut buf, &scratch, &tail.chain);
            tail.frontier.push(leaf_hash(&scratch));
            if let Some(Kind::Checkpoint(cp)) = &record.kind {
                tail.last_checkpoint_digest = checkpoint::digest_of(&record.node_id, cp);
                tail.last_checkpoint_sequence = record.sequence;
                tail.last_timestamp_binding =
                    checkpoint::timestamp_binding(&cp.tsa_status, &cp.timestamp_token);
            }
        }
        if tail.segment_len > 0 && tail.segment_len + buf.len() as u64 > self.segment_size {
            // Frames never straddle segments. The rotation is durable on its own.
            let next = self.tail.segment + 1;
            self.file = open_segment(&self.dir, next)?;
            self.tail.segment = next;
            self.tail.segment_len = 0;
            self.dirty = false;
            tail.segment = next;
            tail.segment_len = 0;
        }
        self.file
            .write_all_at(&buf, tail.segment_len)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| EvidenceError::io("write segment", e))?;
        tail.segment_len += buf.len() as u64;
        Ok((tail, first_seq, buf.len() as u64))
    }
}

fn open_segment(dir: &Path, index: u64) -> Result<File, EvidenceError> {
    let path = segment::segment_path(dir, index);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| EvidenceError::io(format!("open {}", path.display()), e))?;
    // The new directory entry must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EvidenceError::io("sync evidence directory", e))?;
    Ok(file)
}

/// Now, UTC nanoseconds since the epoch.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
