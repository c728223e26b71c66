//! Checkpoints: a signed, time-stamped RFC 9162 tree head appended to the log every few seconds
//! and on shutdown.
//!
//! Format 2 (current, `proto/README.md` §5): the digest is `SHA-256(DOMAIN_V2 ‖ u32 BE
//! len(node_id) ‖ node_id ‖ u64 BE tree_size ‖ root ‖ previous digest ‖ i64 BE
//! signed_time_unix_nanos ‖ previous time-stamp binding)`; the signer signs
//! [`signing_message`]`(PURPOSE_CHECKPOINT, digest)` and the TSA time-stamps
//! `SHA-256(digest ‖ signature)`. Format 0 (legacy, written before format 2 existed) has the
//! [`DOMAIN`] digest without the binding, signed bare.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::merkle::{sha256, Hash};
use super::schema::{record::Kind, Checkpoint, Record};
use super::signer::{not_after, Signed, Signer};
use super::tsa::TsaClient;
use super::writer::{now_nanos, Tail};
use super::{EvidenceError, EvidenceLog, EvidenceSettings, Inner, Shared, TsaPolicy};

/// Domain separation prefix of the legacy (format 0) checkpoint digest.
pub const DOMAIN: &[u8] = b"penghubung.evidence.v1.checkpoint\n";
/// Domain separation prefix of the format 2 checkpoint digest.
pub const DOMAIN_V2: &[u8] = b"penghubung.evidence.v2.checkpoint\n";
/// Domain separation prefix of the time-stamp binding.
pub const DOMAIN_TIMESTAMP: &[u8] = b"penghubung.evidence.v2.timestamp\n";
/// Prefix of every message the signer signs (format 2).
pub const SIGNATURE_DOMAIN: &[u8] = b"penghubung.signature.v1\n";
/// The purpose tag of checkpoint signatures.
pub const PURPOSE_CHECKPOINT: &str = "checkpoint";
/// The current checkpoint format.
pub const FORMAT_CURRENT: u32 = 2;
/// The legacy checkpoint format (field absent).
pub const FORMAT_LEGACY: u32 = 0;

/// The legacy (format 0) checkpoint digest over its fields.
pub fn digest(
    node_id: &str,
    tree_size: u64,
    root: &[u8],
    previous: &[u8],
    signed_time: i64,
) -> Hash {
    sha256(&digest_input(
        DOMAIN,
        node_id,
        tree_size,
        root,
        previous,
        signed_time,
    ))
}

fn digest_input(
    domain: &[u8],
    node_id: &str,
    tree_size: u64,
    root: &[u8],
    previous: &[u8],
    signed_time: i64,
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(domain.len() + node_id.len() + 4 + 8 + 64 + 8 + 32);
    buf.extend_from_slice(domain);
    buf.extend_from_slice(&(node_id.len() as u32).to_be_bytes());
    buf.extend_from_slice(node_id.as_bytes());
    buf.extend_from_slice(&tree_size.to_be_bytes());
    buf.extend_from_slice(root);
    buf.extend_from_slice(previous);
    buf.extend_from_slice(&signed_time.to_be_bytes());
    buf
}

/// The format 2 checkpoint digest: the legacy fields under [`DOMAIN_V2`], then the previous
/// checkpoint's time-stamp binding.
pub fn digest_v2(
    node_id: &str,
    tree_size: u64,
    root: &[u8],
    previous: &[u8],
    signed_time: i64,
    previous_timestamp: &[u8],
) -> Hash {
    let mut buf = digest_input(DOMAIN_V2, node_id, tree_size, root, previous, signed_time);
    buf.extend_from_slice(previous_timestamp);
    sha256(&buf)
}

/// The checkpoint digest of a stored checkpoint, by its format (`None`: unknown format).
pub fn digest_of(node_id: &str, cp: &Checkpoint) -> Hash {
    if cp.format == FORMAT_CURRENT {
        digest_v2(
            node_id,
            cp.tree_size,
            &cp.root_hash,
            &cp.previous_checkpoint_sha256,
            cp.signed_time_unix_nanos,
            &cp.previous_timestamp_sha256,
        )
    } else {
        digest(
            node_id,
            cp.tree_size,
            &cp.root_hash,
            &cp.previous_checkpoint_sha256,
            cp.signed_time_unix_nanos,
        )
    }
}

/// The time-stamp binding of a checkpoint: `SHA-256(DOMAIN_TIMESTAMP ‖ u32 BE len(status) ‖
/// status ‖ u32 BE len(token) ‖ token)`, covered by the next checkpoint's digest.
pub fn timestamp_binding(status: &str, token: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(DOMAIN_TIMESTAMP.len() + 8 + status.len() + token.len());
    buf.extend_from_slice(DOMAIN_TIMESTAMP);
    buf.extend_from_slice(&(status.len() as u32).to_be_bytes());
    buf.extend_from_slice(status.as_bytes());
    buf.extend_from_slice(&(token.len() as u32).to_be_bytes());
    buf.extend_from_slice(token);
    sha256(&buf)
}

/// What the signer signs for `purpose`: `SIGNATURE_DOMAIN ‖ u8 len(purpose) ‖ purpose ‖
/// digest` (`None` for an empty or over-long purpose tag).
pub fn signing_message(purpose: &str, digest: &[u8; 32]) -> Option<Vec<u8>> {
    let len = u8::try_from(purpose.len()).ok().filter(|l| *l > 0)?;
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 1 + purpose.len() + 32);
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.push(len);
    m.extend_from_slice(purpose.as_bytes());
    m.extend_from_slice(digest);
    Some(m)
}

/// The bytes a checkpoint's signature is over: the purpose-tagged message (format 2) or the
/// bare digest (legacy).
pub fn signed_bytes(cp: &Checkpoint, digest: &Hash) -> Vec<u8> {
    if cp.format == FORMAT_CURRENT {
        signing_message(PURPOSE_CHECKPOINT, digest).unwrap_or_default()
    } else {
        digest.to_vec()
    }
}

/// The message imprint sent to the TSA: one `SHA-256` over `digest ‖ signature`.
pub fn tsa_imprint(digest: &Hash, signature: &[u8]) -> Hash {
    let mut buf = digest.to_vec();
    buf.extend_from_slice(signature);
    sha256(&buf)
}

#[derive(Debug, Default)]
struct State {
    previous: Hash,
    previous_timestamp: Hash,
    last_sequence: u64,
}

/// Builds checkpoints; one at a time.
pub(crate) struct Checkpointer {
    node_id: String,
    signer: Signer,
    tsa: Option<TsaClient>,
    state: tokio::sync::Mutex<State>,
}

impl Checkpointer {
    /// Signs `digest` for `purpose` with the configured signer (`None`: no signer).
    pub(crate) async fn sign(
        &self,
        purpose: &str,
        digest: &[u8; 32],
    ) -> Result<Option<Signed>, EvidenceError> {
        self.signer.sign(purpose, digest).await
    }

    /// Loads the signer and the TSA trust anchors.
    pub(crate) async fn load(
        settings: &EvidenceSettings,
        node_id: &str,
    ) -> Result<Self, EvidenceError> {
        let signer = Signer::from_settings(settings.signer.as_ref())?;
        let tsa = settings.tsa.as_ref().map(TsaClient::new).transpose()?;
        Ok(Self {
            node_id: node_id.to_owned(),
            signer,
            tsa,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Continues the checkpoint chain found by the recovery scan.
    pub(crate) fn resume(&self, tail: &Tail, shared: &Shared) {
        if let Ok(mut st) = self.state.try_lock() {
            st.previous = tail.last_checkpoint_digest;
            st.previous_timestamp = tail.last_timestamp_binding;
            st.last_sequence = tail.last_checkpoint_sequence;
        }
        shared
            .signer_not_after
            .store(self.signer.not_after().unwrap_or(0), Ordering::Relaxed);
    }

    /// Writes a checkpoint if anything but the last checkpoint was appended since.
    pub(crate) async fn checkpoint(
        &self,
        log: &EvidenceLog,
        shared: &Shared,
        settings: &EvidenceSettings,
    ) -> Result<Option<u64>, EvidenceError> {
        let mut st = self.state.lock().await;
        let head = log.snapshot().await?;
        // While the TSA gate is closed, keep trying so the gate can reopen.
        if head.tree_size <= st.last_sequence && !shared.tsa_blocking.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let signed_time = now_nanos();
        let digest = digest_v2(
            &self.node_id,
            head.tree_size,
            &head.root,
            &st.previous,
            signed_time,
            &st.previous_timestamp,
        );
        let signed = match self.signer.sign(PURPOSE_CHECKPOINT, &digest).await {
            Ok(s) => {
                shared.signer_ok.store(s.is_some(), Ordering::Relaxed);
                if let Some(t) = s
                    .as_ref()
                    .and_then(|s| s.chain.first())
                    .and_then(|c| not_after(c))
                {
                    shared.signer_not_after.store(t, Ordering::Relaxed);
                }
                s
            }
            Err(e) => {
                shared.signer_ok.store(false, Ordering::Relaxed);
                *shared.last_error.lock() = Some(e.to_string());
                return Err(e);
            }
        };
        let mut cp = Checkpoint {
            tree_size: head.tree_size,
            root_hash: head.root.to_vec().into(),
            previous_checkpoint_sha256: st.previous.to_vec().into(),
            signed_time_unix_nanos: signed_time,
            tsa_status: "disabled".into(),
            format: FORMAT_CURRENT,
            previous_timestamp_sha256: st.previous_timestamp.to_vec().into(),
            ..Checkpoint::default()
        };
        if let Some(s) = signed {
            cp.signature = s.signature.into();
            cp.signature_algorithm = s.algorithm;
            cp.signer_certificate_chain = s.chain.into_iter().map(Into::into).collect();
        }
        if let (Some(tsa), false) = (&self.tsa, cp.signature.is_empty()) {
            let imprint = tsa_imprint(&digest, &cp.signature);
            match tsa.timestamp(&imprint).await {
                Ok(token) => {
                    cp.timestamp_token = token.into();
                    cp.tsa_status = "granted".into();
                    shared
                        .tsa_last_granted_unix
                        .store(now_nanos() / 1_000_000_000, Ordering::Relaxed);
                    shared.tsa_ok.store(true, Ordering::Relaxed);
                    shared.tsa_failing_since.store(0, Ordering::Relaxed);
                    shared.tsa_blocking.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "time-stamp request failed");
                    cp.tsa_status = format!("unavailable: {e}");
                    self.note_tsa_failure(shared, settings);
                }
            }
        }
        let binding = timestamp_binding(&cp.tsa_status, &cp.timestamp_token);
        let record = Record {
            node_id: self.node_id.clone(),
            kind: Some(Kind::Checkpoint(cp)),
            ..Record::default()
        };
        let seq = log.append_internal(record).await?;
        st.previous = digest;
        st.previous_timestamp = binding;
        st.last_sequence = seq;
        shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        shared
            .last_checkpoint_unix
            .store(now_nanos() / 1_000_000_000, Ordering::Relaxed);
        Ok(Some(seq))
    }

    fn note_tsa_failure(&self, shared: &Shared, settings: &EvidenceSettings) {
        shared.tsa_ok.store(false, Ordering::Relaxed);
        let now = now_nanos() / 1_000_000_000;
        let since = match shared.tsa_failing_since.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        if let Some(tsa) = &settings.tsa {
            let past_window = now.saturating_sub(since) >= tsa.unreachable_window_secs as i64;
            if past_window && tsa.policy == TsaPolicy::FailClosed {
                shared.tsa_blocking.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// The periodic checkpoint loop; ends when `stop` turns true or every handle is dropped (it
/// holds only a weak reference, so dropping the log stops the writer too).
pub(crate) async fn run_periodic(inner: Weak<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(secs) = inner
        .upgrade()
        .map(|i| i.settings.checkpoint_interval_secs.max(1))
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let log = EvidenceLog { inner: Some(inner) };
        if let Err(error) = log.checkpoint_now().await {
            tracing::warn!(%error, "evidence checkpoint failed");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::digest::{digest as ring_digest, SHA256};

    /// The constructions of `proto/README.md` §5.1, spelled out byte by byte.
    #[test]
    fn digests_follow_the_specification() {
        let (node, size, root, prev, time, prev_ts) =
            ("node-a", 7u64, [1u8; 32], [2u8; 32], -5i64, [3u8; 32]);
        let mut d = b"penghubung.evidence.v2.checkpoint\n".to_vec();
        assert_eq!(d.len(), 34);
        d.extend_from_slice(&[0, 0, 0, 6]);
        d.extend_from_slice(b"node-a");
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        d.extend_from_slice(&root);
        d.extend_from_slice(&prev);
        d.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]);
        d.extend_from_slice(&prev_ts);
        let expected = ring_digest(&SHA256, &d);
        let got = digest_v2(node, size, &root, &prev, time, &prev_ts);
        assert_eq!(got.as_slice(), expected.as_ref());

        let mut legacy = b"penghubung.evidence.v1.checkpoint\n".to_vec();
        legacy.extend_from_slice(&d[34..d.len() - 32]);
        assert_eq!(
            digest(node, size, &root, &prev, time).as_slice(),
            ring_digest(&SHA256, &legacy).as_ref()
        );

        let mut t = b"penghubung.evidence.v2.timestamp\n".to_vec();
        assert_eq!(t.len(), 33);
        t.extend_from_slice(&[0, 0, 0, 7]);
        t.extend_from_slice(b"granted");
        t.extend_from_slice(&[0, 0, 0, 2, 0x30, 0x00]);
        assert_eq!(
            timestamp_binding("granted", &[0x30, 0x00]).as_slice(),
            ring_digest(&SHA256, &t).as_ref()
        );

        let mut m = b"penghubung.signature.v1\n".to_vec();
        assert_eq!(m.len(), 24);
        m.push(10);
        m.extend_from_slice(b"checkpoint");
        m.extend_from_slice(&got);
        assert_eq!(signing_message(PURPOSE_CHECKPOINT, &got).unwrap(), m);
        assert_eq!(signing_message("", &got), None);

        let mut i = got.to_vec();
        i.extend_from_slice(&[9, 9]);
        assert_eq!(
            tsa_imprint(&got, &[9, 9]).as_slice(),
            ring_digest(&SHA256, &i).as_ref()
        );
    }
}
