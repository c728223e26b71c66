//! Offline verification of a log directory (`proto/README.md` §6–§8): segment numbering,
//! framing, CRC, chain, strict record decoding, contiguous sequence numbers, checkpoint Merkle
//! roots, the checkpoint chain and time-stamp bindings, signatures with RFC 5280 certificate
//! paths, time-stamp tokens, and an anchored checkpoint against truncation or rollback.
//!
//! [`check_checkpoint`] is the one verdict on a checkpoint's own content; `verify` and
//! `check-bundle` both use it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    digest_of, signed_bytes, timestamp_binding, tsa_imprint, FORMAT_CURRENT, FORMAT_LEGACY,
};
use super::decode::decode_record;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::pki::{self, PathPolicy, Role};
use super::reason::{Failure, Reason};
use super::schema::{record::Kind, Checkpoint, Record};
use super::segment::{self, chain_hash, parse_frame, GENESIS};
use super::signer::verify_signature;
use super::{tsa, EvidenceError};

/// `format` of an anchor file.
pub const ANCHOR_FORMAT: &str = "penghubung-evidence-anchor-v1";
/// Largest accepted |genTime − signed time| of a checkpoint's time-stamp, in seconds.
pub const TIMESTAMP_WINDOW_SECS: i64 = 3600;

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
    /// The checkpoint record bytes, base64 (authoritative; the fields above must agree).
    pub record: String,
}

/// An anchor whose JSON agrees with its record.
#[derive(Debug, Clone)]
struct CheckedAnchor {
    sequence: u64,
    tree_size: u64,
    root: Vec<u8>,
    bytes: Vec<u8>,
}

impl Anchor {
    /// Builds an anchor from a checkpoint record's bytes.
    pub fn from_record(bytes: &[u8]) -> Option<Anchor> {
        let record = decode_record(bytes).ok()?.record;
        let Some(Kind::Checkpoint(cp)) = &record.kind else {
            return None;
        };
        Some(Anchor {
            format: ANCHOR_FORMAT.into(),
            sequence: record.sequence,
            tree_size: cp.tree_size,
            root_hash: hex::encode(&cp.root_hash),
            record: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// The tree size and root the anchor commits to, from its record bytes.
    pub fn head(&self) -> Option<(u64, Vec<u8>)> {
        self.check().ok().map(|a| (a.tree_size, a.root))
    }

    fn check(&self) -> Result<CheckedAnchor, Failure> {
        let bad = |d: &str| Failure::new(Reason::Anchor, d.to_owned());
        if self.format != ANCHOR_FORMAT {
            return Err(bad("anchor format is not penghubung-evidence-anchor-v1"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.record)
            .map_err(|_| bad("anchor record is not base64"))?;
        let record = decode_record(&bytes)
            .map_err(|f| bad(&format!("anchor record: {f}")))?
            .record;
        let Some(Kind::Checkpoint(cp)) = &record.kind else {
            return Err(bad("anchor record is not a checkpoint"));
        };
        if record.sequence != self.sequence
            || cp.tree_size != self.tree_size
            || !self
                .root_hash
                .eq_ignore_ascii_case(&hex::encode(&cp.root_hash))
        {
            return Err(bad(
                "anchor JSON (sequence, tree_size, root_hash) disagrees with its record",
            ));
        }
        Ok(CheckedAnchor {
            sequence: record.sequence,
            tree_size: cp.tree_size,
            root: cp.root_hash.to_vec(),
            bytes,
        })
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
    /// CRLs (DER) for the signer's certificate path.
    pub signer_crls: Vec<Vec<u8>>,
    /// CRLs (DER) for the TSA's certificate path.
    pub tsa_crls: Vec<Vec<u8>>,
    /// Accepted signer extended key usages (dotted OIDs); empty means
    /// [`pki::default_signer_ekus`].
    pub signer_ekus: Vec<String>,
    /// Accepted TSA policy OIDs (dotted); empty accepts any policy.
    pub tsa_policies: Vec<String>,
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
    /// The stable reason class.
    pub class: Reason,
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

/// The policies derived from [`VerifyOptions`], built once.
#[derive(Debug, Clone)]
pub struct CheckContext {
    signer: Option<PathPolicy>,
    tsa: Option<PathPolicy>,
    tsa_policies: Vec<Vec<u8>>,
}

impl CheckContext {
    /// Parses the options (OIDs); an error names the bad option.
    pub fn new(opts: &VerifyOptions) -> Result<Self, EvidenceError> {
        let ekus = if opts.signer_ekus.is_empty() {
            pki::default_signer_ekus()
        } else {
            opts.signer_ekus.clone()
        };
        let signer = opts
            .trust_anchors
            .as_ref()
            .map(|a| PathPolicy::signer(a.clone(), opts.signer_crls.clone(), &ekus))
            .transpose()
            .map_err(EvidenceError::Config)?;
        let tsa = opts
            .tsa_anchors
            .as_ref()
            .map(|a| PathPolicy::tsa(a.clone(), opts.tsa_crls.clone()));
        let tsa_policies = opts
            .tsa_policies
            .iter()
            .map(|o| {
                pki::oid_der(o).ok_or_else(|| EvidenceError::Config(format!("not an OID: {o:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            signer,
            tsa,
            tsa_policies,
        })
    }
}

/// Notes from checking one checkpoint that are not failures.
#[derive(Debug, Clone, Default)]
pub struct CheckpointNotes {
    /// The checkpoint digest.
    pub digest: Hash,
    /// Its time-stamp binding (covered by the next format-2 checkpoint).
    pub binding: Hash,
    /// The checkpoint has no time-stamp token.
    pub no_token: bool,
    /// Tokens were present but not checked (no TSA CA given).
    pub token_unchecked: bool,
    /// Format 0 (legacy).
    pub legacy: bool,
}

/// The verdict on one checkpoint's own content (`proto/README.md` §5–§6): format, signature,
/// signer certificate path at the signed time, status/token rules and the time-stamp token.
/// Links to the previous checkpoint are checked by the log verifier.
pub fn check_checkpoint(
    ctx: &CheckContext,
    node_id: &str,
    cp: &Checkpoint,
) -> Result<CheckpointNotes, Failure> {
    if cp.format != FORMAT_CURRENT && cp.format != FORMAT_LEGACY {
        return Err(Failure::new(
            Reason::Downgrade,
            format!("unknown checkpoint format {}", cp.format),
        ));
    }
    if cp.root_hash.len() != 32 || cp.previous_checkpoint_sha256.len() != 32 {
        return Err(Failure::new(
            Reason::Merkle,
            "root or previous digest is not 32 bytes",
        ));
    }
    if cp.format == FORMAT_CURRENT && cp.previous_timestamp_sha256.len() != 32 {
        return Err(Failure::new(
            Reason::CheckpointLink,
            "previous_timestamp_sha256 is not 32 bytes",
        ));
    }
    let digest = digest_of(node_id, cp);
    let at = cp.signed_time_unix_nanos.div_euclid(1_000_000_000);
    if cp.signature.is_empty() {
        if ctx.signer.is_some() {
            return Err(Failure::new(Reason::Unsigned, "checkpoint is not signed"));
        }
    } else {
        let leaf = cp
            .signer_certificate_chain
            .first()
            .ok_or_else(|| Failure::new(Reason::Signature, "no signer certificate"))?;
        verify_signature(
            &cp.signature_algorithm,
            &signed_bytes(cp, &digest),
            &cp.signature,
            leaf,
        )
        .map_err(|e| Failure::new(Reason::Signature, e))?;
        if let Some(policy) = &ctx.signer {
            let chain: Vec<&[u8]> = cp
                .signer_certificate_chain
                .iter()
                .map(|c| c.as_ref())
                .collect();
            pki::validate(&chain, policy, Role::Signer, at)?;
        }
    }
    // Status/token rules.
    let status = cp.tsa_status.as_str();
    let known = status == "granted" || status == "disabled" || status.starts_with("unavailable: ");
    if !known {
        return Err(Failure::new(
            Reason::TimestampStatus,
            format!("unknown tsa_status {status:?}"),
        ));
    }
    let has_token = !cp.timestamp_token.is_empty();
    if (status == "granted") != has_token {
        return Err(Failure::new(
            Reason::TimestampStatus,
            format!(
                "tsa_status {status:?} with {} time-stamp token",
                if cp.timestamp_token.is_empty() {
                    "no"
                } else {
                    "a"
                }
            ),
        ));
    }
    if !cp.timestamp_token.is_empty() && cp.signature.is_empty() {
        return Err(Failure::new(
            Reason::TimestampStatus,
            "time-stamp token on an unsigned checkpoint",
        ));
    }
    let mut notes = CheckpointNotes {
        digest,
        binding: timestamp_binding(&cp.tsa_status, &cp.timestamp_token),
        no_token: cp.timestamp_token.is_empty(),
        legacy: cp.format == FORMAT_LEGACY,
        ..CheckpointNotes::default()
    };
    if !cp.timestamp_token.is_empty() {
        match &ctx.tsa {
            Some(policy) => {
                let imprint = tsa_imprint(&digest, &cp.signature);
                let info = tsa::verify_token_with(
                    &cp.timestamp_token,
                    &imprint,
                    policy,
                    &ctx.tsa_policies,
                    None,
                )?;
                if (info.gen_time_unix - at).abs() > TIMESTAMP_WINDOW_SECS {
                    return Err(Failure::new(
                        Reason::TimestampWindow,
                        format!(
                            "time-stamp {} is more than {TIMESTAMP_WINDOW_SECS} s from the signed time",
                            info.gen_time
                        ),
                    ));
                }
            }
            None => notes.token_unchecked = true,
        }
    }
    Ok(notes)
}

struct State {
    ctx: CheckContext,
    report: Report,
    expected: u64,
    chain: Hash,
    frontier: Frontier,
    pending: VecDeque<Hash>,
    previous_digest: Hash,
    previous_binding: Hash,
    seen_current: bool,
    anchor: Option<CheckedAnchor>,
    tsa_given: bool,
    warned_tsa: bool,
    legacy_checkpoints: u64,
    unknown_fields: Vec<String>,
    last_checkpoint: Option<(u64, bool, String)>,
    last_time: i64,
}

fn fail_report(report: &mut Report, segment: PathBuf, offset: u64, sequence: u64, f: Failure) {
    report.problem = Some(Problem {
        segment,
        offset,
        sequence,
        class: f.reason,
        reason: f.detail,
    });
}

/// Verifies `dir`, calling `progress(records)` now and then.
pub fn verify_dir(
    dir: &Path,
    opts: &VerifyOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Report, EvidenceError> {
    let ctx = CheckContext::new(opts)?;
    let segments =
        segment::list_segments(dir).map_err(|e| EvidenceError::io("list segments", e))?;
    let mut st = State {
        ctx,
        report: Report::default(),
        expected: 1,
        chain: GENESIS,
        frontier: Frontier::default(),
        pending: VecDeque::new(),
        previous_digest: [0; 32],
        previous_binding: [0; 32],
        seen_current: false,
        anchor: None,
        tsa_given: opts.tsa_anchors.is_some(),
        warned_tsa: false,
        legacy_checkpoints: 0,
        unknown_fields: Vec::new(),
        last_checkpoint: None,
        last_time: i64::MIN,
    };
    if let Some(a) = &opts.anchor {
        match a.check() {
            Ok(a) => st.anchor = Some(a),
            Err(f) => {
                fail_report(&mut st.report, PathBuf::new(), 0, 0, f);
                return Ok(st.report);
            }
        }
    }
    for (i, (num, path)) in segments.iter().enumerate() {
        if *num != i as u64 + 1 {
            let f = Failure::new(
                Reason::SegmentGap,
                format!(
                    "segment {} where {} was expected (segments start at 1 without gaps)",
                    num,
                    i + 1
                ),
            );
            fail_report(&mut st.report, path.clone(), 0, st.expected, f);
            return Ok(st.report);
        }
        st.report.segments += 1;
        let data = std::fs::read(path)
            .map_err(|e| EvidenceError::io(format!("read {}", path.display()), e))?;
        let mut off = 0usize;
        while off < data.len() {
            let frame = match parse_frame(&data[off..]) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let class = if matches!(e, segment::FrameError::BadCrc) {
                        Reason::Crc
                    } else {
                        Reason::Frame
                    };
                    let f = Failure::new(class, format!("frame: {e}"));
                    fail_report(&mut st.report, path.clone(), off as u64, st.expected, f);
                    return Ok(st.report);
                }
            };
            if let Err(f) = st.record(frame.record, &frame.chain) {
                fail_report(&mut st.report, path.clone(), off as u64, st.expected, f);
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

impl State {
    fn record(&mut self, bytes: &[u8], stored_chain: &Hash) -> Result<(), Failure> {
        let chain = chain_hash(&self.chain, bytes);
        if &chain != stored_chain {
            return Err(Failure::new(Reason::Chain, "chain hash mismatch: a record before this point was modified, deleted, inserted or reordered"));
        }
        let decoded = decode_record(bytes)?;
        for u in decoded.unknown_fields {
            if !self.unknown_fields.contains(&u) {
                self.unknown_fields.push(u);
            }
        }
        let record = decoded.record;
        if record.sequence != self.expected {
            return Err(Failure::new(
                Reason::Sequence,
                format!(
                    "sequence number {} where {} was expected (deleted, duplicated or reordered record)",
                    record.sequence, self.expected
                ),
            ));
        }
        if record.time_unix_nanos < self.last_time {
            return Err(Failure::new(Reason::Time, "record time goes backwards"));
        }
        self.last_time = record.time_unix_nanos;
        self.chain = chain;
        self.pending.push_back(leaf_hash(bytes));
        if let Some(Kind::Checkpoint(cp)) = &record.kind {
            self.checkpoint(&record, cp)?;
        }
        self.expected += 1;
        self.report.records += 1;
        if let Some(a) = &self.anchor {
            if record.sequence == a.sequence && bytes != a.bytes.as_slice() {
                return Err(Failure::new(
                    Reason::Anchor,
                    format!(
                        "record #{} differs from the anchored checkpoint record: the log was rewritten",
                        a.sequence
                    ),
                ));
            }
            if self.report.records == a.tree_size {
                let mut f = self.frontier.clone();
                self.pending.iter().for_each(|h| f.push(*h));
                if f.root().as_slice() != a.root.as_slice() {
                    return Err(Failure::new(
                        Reason::Anchor,
                        format!(
                            "records 1..{} do not match the anchored checkpoint: the log was rewritten",
                            a.tree_size
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, record: &Record, cp: &Checkpoint) -> Result<(), Failure> {
        let size = cp.tree_size;
        if size < self.frontier.size() || size >= record.sequence {
            return Err(Failure::new(
                Reason::Merkle,
                format!("checkpoint tree size {size} out of order"),
            ));
        }
        while self.frontier.size() < size {
            let h = self.pending.pop_front().ok_or_else(|| {
                Failure::new(Reason::Merkle, "checkpoint covers records not seen")
            })?;
            self.frontier.push(h);
        }
        if self.frontier.root().as_slice() != cp.root_hash.as_ref() {
            return Err(Failure::new(
                Reason::Merkle,
                format!("checkpoint Merkle root does not match records 1..{size}"),
            ));
        }
        if cp.previous_checkpoint_sha256.as_ref() != self.previous_digest.as_slice() {
            return Err(Failure::new(
                Reason::CheckpointLink,
                "checkpoint does not link to the previous checkpoint",
            ));
        }
        if cp.format == FORMAT_LEGACY && self.seen_current {
            return Err(Failure::new(
                Reason::Downgrade,
                "legacy-format checkpoint after a format-2 checkpoint",
            ));
        }
        if cp.format == FORMAT_CURRENT {
            self.seen_current = true;
            if cp.previous_timestamp_sha256.as_ref() != self.previous_binding.as_slice() {
                return Err(Failure::new(
                    Reason::CheckpointLink,
                    "previous_timestamp_sha256 does not bind the previous checkpoint's time-stamp status and token",
                ));
            }
        }
        let notes = check_checkpoint(&self.ctx, &record.node_id, cp)?;
        if notes.legacy {
            self.legacy_checkpoints += 1;
        }
        if notes.no_token && self.tsa_given {
            self.report.warnings.push(format!(
                "checkpoint #{} has no time-stamp ({})",
                record.sequence, cp.tsa_status
            ));
        }
        if notes.token_unchecked && !self.warned_tsa {
            self.warned_tsa = true;
            self.report
                .warnings
                .push("time-stamp tokens not checked (no TSA CA given)".into());
        }
        self.previous_digest = notes.digest;
        self.previous_binding = notes.binding;
        self.last_checkpoint = Some((record.sequence, notes.no_token, cp.tsa_status.clone()));
        self.report.checkpoints += 1;
        self.report.covered = size;
        Ok(())
    }

    fn finish(&mut self) {
        if let Some(a) = self.anchor.clone() {
            if self.report.records < a.sequence {
                let records = self.report.records;
                fail_report(
                    &mut self.report,
                    PathBuf::new(),
                    0,
                    self.expected,
                    Failure::new(
                        Reason::Truncated,
                        format!(
                            "log ends at record {} but the anchored checkpoint is record {}: truncated or rolled back",
                            records, a.sequence
                        ),
                    ),
                );
                return;
            }
        }
        if self.ctx.signer.is_none() {
            self.report
                .warnings
                .push("signer certificate chains not checked (no trust CA given)".into());
        }
        if self.legacy_checkpoints > 0 {
            self.report.warnings.push(format!(
                "legacy-signature: {} checkpoints use format 0 and are signed without a purpose tag",
                self.legacy_checkpoints
            ));
            self.report.warnings.push(format!(
                "legacy-timestamp-binding: the time-stamp status and token of {} format-0 checkpoints are not bound by the next checkpoint's digest",
                self.legacy_checkpoints
            ));
        }
        if !self.unknown_fields.is_empty() {
            self.report.warnings.push(format!(
                "unknown fields (ignored, covered by the hashes): {}",
                self.unknown_fields.join(", ")
            ));
        }
        if let Some((seq, true, status)) = &self.last_checkpoint {
            self.report.warnings.push(format!(
                "the last checkpoint #{seq} has no time-stamp ({status}) and no later checkpoint binds that status: a stripped token cannot be told from a TSA outage"
            ));
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
            let record = decode_record(frame.record)
                .map_err(|e| EvidenceError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
                .record;
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
