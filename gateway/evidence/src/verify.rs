//! Offline verification of a log directory: framing, CRC, chain, contiguous sequence numbers,
//! checkpoint Merkle roots, the checkpoint chain, signatures with certificate chains,
//! time-stamp tokens, and an anchored checkpoint against truncation or rollback.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::checkpoint::{digest_of, tsa_imprint};
use super::merkle::{leaf_hash, Frontier, Hash};
use super::schema::{record::Kind, Checkpoint, Record};
use super::segment::{self, chain_hash, parse_frame, GENESIS};
use super::signer::verify_signature;
use super::{tsa, EvidenceError};

/// A checkpoint exported earlier and kept elsewhere, against which truncation, rollback and
/// rewriting are detected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Anchor {
    /// Always `penghubung-evidence-anchor-v1`.
    pub format: String,
    /// Sequence number of the checkpoint record.
    pub sequence: u64,
    /// Tree size the checkpoint covers.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root_hash: String,
    /// The checkpoint record bytes, base64 (authoritative; the fields above are for reading).
    pub record: String,
}

impl Anchor {
    /// Builds an anchor from a checkpoint record's bytes.
    pub fn from_record(bytes: &[u8]) -> Option<Anchor> {
        let record = Record::decode(bytes).ok()?;
        let Some(Kind::Checkpoint(cp)) = &record.kind else {
            return None;
        };
        Some(Anchor {
            format: "penghubung-evidence-anchor-v1".into(),
            sequence: record.sequence,
            tree_size: cp.tree_size,
            root_hash: hex::encode(&cp.root_hash),
            record: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// The tree size and root the anchor commits to, from its record bytes.
    pub fn head(&self) -> Option<(u64, Vec<u8>)> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.record)
            .ok()?;
        match Record::decode(bytes.as_slice()).ok()?.kind {
            Some(Kind::Checkpoint(cp)) => Some((cp.tree_size, cp.root_hash.to_vec())),
            _ => None,
        }
    }
}

/// What to check besides the structure.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Trust anchors (DER) for checkpoint signer chains; `None` checks signatures against the
    /// embedded leaf key only.
    pub trust_anchors: Option<Vec<Vec<u8>>>,
    /// TSA CA certificates (DER); `None` leaves time-stamp tokens unchecked.
    pub tsa_anchors: Option<Vec<Vec<u8>>>,
    /// An anchored checkpoint the log must contain.
    pub anchor: Option<Anchor>,
}

/// Where and why verification stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Segment file.
    pub segment: PathBuf,
    /// Byte offset of the frame.
    pub offset: u64,
    /// Sequence number of the bad record (or the one expected there).
    pub sequence: u64,
    /// What is wrong.
    pub reason: String,
}

/// The verification result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Records read and verified.
    pub records: u64,
    /// Segment files read.
    pub segments: usize,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Tree size of the last verified checkpoint.
    pub covered: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
    /// Things not checked or weak but not wrong.
    pub warnings: Vec<String>,
}

struct State<'o> {
    opts: &'o VerifyOptions,
    report: Report,
    expected: u64,
    chain: Hash,
    frontier: Frontier,
    pending: VecDeque<Hash>,
    previous_digest: Hash,
    anchor_head: Option<(u64, Vec<u8>)>,
    warned_tsa: bool,
    last_time: i64,
}

/// Verifies `dir`, calling `progress(records)` now and then.
pub fn verify_dir(
    dir: &Path,
    opts: &VerifyOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, EvidenceError> {
    let segments =
        segment::list_segments(dir).map_err(|e| EvidenceError::io("list segments", e))?;
    let anchor_head = match &opts.anchor {
        Some(a) => Some(
            a.head()
                .ok_or_else(|| EvidenceError::Config("anchor record is not a checkpoint".into()))?,
        ),
        None => None,
    };
    let mut st = State {
        opts,
        report: Report::default(),
        expected: 1,
        chain: GENESIS,
        frontier: Frontier::default(),
        pending: VecDeque::new(),
        previous_digest: [0; 32],
        anchor_head,
        warned_tsa: false,
        last_time: i64::MIN,
    };
    for (_, path) in &segments {
        st.report.segments += 1;
        let data = std::fs::read(path)
            .map_err(|e| EvidenceError::io(format!("read {}", path.display()), e))?;
        let mut off = 0usize;
        while off < data.len() {
            let fail = |st: &mut State<'_>, reason: String| {
                st.report.problem = Some(Problem {
                    segment: path.clone(),
                    offset: off as u64,
                    sequence: st.expected,
                    reason,
                });
            };
            let frame = match parse_frame(&data[off..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    fail(&mut st, format!("frame: {e}"));
                    return Ok(st.report);
                }
            };
            if let Err(reason) = st.record(frame.record, &frame.chain) {
                fail(&mut st, reason);
                return Ok(st.report);
            }
            off += frame.len;
            if st.report.records.is_multiple_of(1_000_000) {
                progress(st.report.records);
            }
        }
    }
    st.finish();
    Ok(st.report)
}

impl State<'_> {
    fn record(&mut self, bytes: &[u8], stored_chain: &Hash) -> Result<(), String> {
        let chain = chain_hash(&self.chain, bytes);
        if &chain != stored_chain {
            return Err("chain hash mismatch: a record before this point was modified, deleted, inserted or reordered".into());
        }
        let record = Record::decode(bytes).map_err(|e| format!("record does not decode: {e}"))?;
        if record.sequence != self.expected {
            return Err(format!(
                "sequence number {} where {} was expected (deleted, duplicated or reordered record)",
                record.sequence, self.expected
            ));
        }
        if record.time_unix_nanos < self.last_time {
            return Err("record time goes backwards".into());
        }
        self.last_time = record.time_unix_nanos;
        self.chain = chain;
        self.pending.push_back(leaf_hash(bytes));
        if let Some(Kind::Checkpoint(cp)) = &record.kind {
            self.checkpoint(&record, cp)?;
        }
        self.expected += 1;
        self.report.records += 1;
        if let Some((size, root)) = &self.anchor_head {
            if self.report.records == *size {
                let mut f = self.frontier.clone();
                self.pending.iter().for_each(|h| f.push(*h));
                if f.root().as_slice() != root.as_slice() {
                    return Err(format!(
                        "records 1..{size} do not match the anchored checkpoint: the log was rewritten"
                    ));
                }
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, record: &Record, cp: &Checkpoint) -> Result<(), String> {
        let size = cp.tree_size;
        if size < self.frontier.size() || size >= record.sequence {
            return Err(format!("checkpoint tree size {size} out of order"));
        }
        while self.frontier.size() < size {
            let h = self
                .pending
                .pop_front()
                .ok_or("checkpoint covers records not seen")?;
            self.frontier.push(h);
        }
        if self.frontier.root().as_slice() != cp.root_hash.as_ref() {
            return Err(format!(
                "checkpoint Merkle root does not match records 1..{size}"
            ));
        }
        if cp.previous_checkpoint_sha256.as_ref() != self.previous_digest.as_slice() {
            return Err("checkpoint does not link to the previous checkpoint".into());
        }
        let digest = digest_of(&record.node_id, cp);
        let at = cp.signed_time_unix_nanos.div_euclid(1_000_000_000);
        match (&self.opts.trust_anchors, cp.signature.is_empty()) {
            (Some(_), true) => return Err("checkpoint is not signed".into()),
            (Some(anchors), false) => {
                verify_signature(
                    &cp.signature_algorithm,
                    &digest,
                    &cp.signature,
                    &cp.signer_certificate_chain,
                    anchors,
                    at,
                )?;
            }
            (None, false) => {
                // Without a trust anchor, check at least the signature with the embedded leaf.
                let leaf: Vec<Vec<u8>> = cp
                    .signer_certificate_chain
                    .iter()
                    .take(1)
                    .map(|c| c.to_vec())
                    .collect();
                verify_signature(
                    &cp.signature_algorithm,
                    &digest,
                    &cp.signature,
                    &leaf,
                    &leaf,
                    at,
                )?;
            }
            (None, true) => {}
        }
        match (&self.opts.tsa_anchors, cp.timestamp_token.is_empty()) {
            (Some(anchors), false) => {
                let imprint = tsa_imprint(&digest, &cp.signature);
                let info = tsa::verify_token(&cp.timestamp_token, &imprint, anchors, None)?;
                let signed = cp.signed_time_unix_nanos.div_euclid(1_000_000_000);
                if (info.gen_time_unix - signed).abs() > 3600 {
                    return Err(format!(
                        "time-stamp {} is far from the signed time",
                        info.gen_time
                    ));
                }
            }
            (Some(_), true) => self.report.warnings.push(format!(
                "checkpoint #{} has no time-stamp ({})",
                record.sequence, cp.tsa_status
            )),
            (None, false) if !self.warned_tsa => {
                self.warned_tsa = true;
                self.report
                    .warnings
                    .push("time-stamp tokens not checked (no TSA CA given)".into());
            }
            (None, _) => {}
        }
        self.previous_digest = digest;
        self.report.checkpoints += 1;
        self.report.covered = size;
        Ok(())
    }

    fn finish(&mut self) {
        if let Some((size, _)) = &self.anchor_head {
            if self.report.records < *size {
                self.report.problem = Some(Problem {
                    segment: PathBuf::new(),
                    offset: 0,
                    sequence: self.expected,
                    reason: format!(
                        "log ends at record {} but the anchored checkpoint covers {size}: truncated or rolled back",
                        self.report.records
                    ),
                });
                return;
            }
        }
        if self.opts.trust_anchors.is_none() {
            self.report
                .warnings
                .push("signer certificate chains not checked (no trust CA given)".into());
        }
        let uncovered = self.report.records.saturating_sub(self.report.covered);
        if uncovered > 1 {
            self.report.warnings.push(format!(
                "{uncovered} records after the last checkpoint are not covered by a signature"
            ));
        }
    }
}

/// One record read back with its place in the log.
#[derive(Debug)]
pub struct Scanned<'a> {
    /// The record bytes as written.
    pub bytes: &'a [u8],
    /// The decoded record.
    pub record: Record,
}

/// Calls `f` for every readable record in order; stops at the first damaged frame, or when `f`
/// returns false.
pub fn scan(dir: &Path, f: &mut dyn FnMut(Scanned<'_>) -> bool) -> Result<(), EvidenceError> {
    for (_, path) in
        segment::list_segments(dir).map_err(|e| EvidenceError::io("list segments", e))?
    {
        let data = std::fs::read(&path)
            .map_err(|e| EvidenceError::io(format!("read {}", path.display()), e))?;
        let mut off = 0;
        while let Ok(Some(frame)) = parse_frame(&data[off..]) {
            off += frame.len;
            let record = Record::decode(frame.record).map_err(|e| EvidenceError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if !f(Scanned {
                bytes: frame.record,
                record,
            }) {
                return Ok(());
            }
        }
    }
    Ok(())
}
