//! `penghubung evidence …` subcommands as plain functions (clap wiring lives in `main.rs`).
//! Results go to stdout, progress to stderr.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use base64::Engine as _;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::checkpoint::{digest_of, tsa_imprint};
use super::merkle::{inclusion_proof, leaf_hash, verify_inclusion, Hash};
use super::schema::{record::Kind, Record};
use super::signer::{load_pem_certificates, verify_signature};
use super::tsa;
use super::verify::{scan, verify_dir, Anchor, VerifyOptions};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// `evidence verify`: prints a summary or the first bad record and why; `Ok(false)` if bad.
pub fn verify(
    dir: &Path,
    trust_ca: Option<&Path>,
    anchor: Option<&Path>,
    tsa_ca: Option<&Path>,
) -> anyhow::Result<bool> {
    let opts = VerifyOptions {
        trust_anchors: trust_ca.map(load_pem_certificates).transpose()?,
        tsa_anchors: tsa_ca.map(load_pem_certificates).transpose()?,
        anchor: anchor
            .map(|p| -> anyhow::Result<Anchor> {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("read anchor {}", p.display()))?;
                Ok(serde_json::from_str(&text)?)
            })
            .transpose()?,
    };
    let started = Instant::now();
    let mut progress = |n: u64| {
        let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprintln!("verified {n} records ({rate:.0}/s)");
    };
    let report = verify_dir(dir, &opts, &mut progress)?;
    for w in &report.warnings {
        println!("warning: {w}");
    }
    match &report.problem {
        Some(p) => {
            let place = if p.segment.as_os_str().is_empty() {
                "end of log".to_owned()
            } else {
                format!("{} byte {}", p.segment.display(), p.offset)
            };
            println!("FAILED at record #{} ({place}): {}", p.sequence, p.reason);
            println!("{} records verified before the failure", report.records);
            Ok(false)
        }
        None => {
            println!(
                "OK: {} records in {} segments, {} checkpoints, records 1..{} covered by the last checkpoint",
                report.records, report.segments, report.checkpoints, report.covered
            );
            Ok(true)
        }
    }
}

/// `evidence show` lives in its own module: a readable table or JSON Lines.
#[path = "show.rs"]
pub mod show;

/// One record in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Its sequence number.
    pub sequence: u64,
    /// The record bytes as written, base64.
    pub record: String,
    /// RFC 9162 inclusion proof of leaf `sequence - 1` in the checkpoint's tree, hex.
    pub inclusion_proof: Vec<String>,
}

/// A self-contained proof of one exchange (`evidence export`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    /// Always `penghubung-evidence-bundle-v1`.
    pub format: String,
    /// The exchange.
    pub exchange_id: String,
    /// Its records.
    pub records: Vec<BundleRecord>,
    /// The checkpoint record (with signature, certificate chain and time-stamp token), base64.
    pub checkpoint: String,
}

/// `evidence export --exchange ID`: writes a bundle covering the exchange's records with the
/// first checkpoint after them.
pub fn export(dir: &Path, exchange_id: &str, out: &Path) -> anyhow::Result<()> {
    let mut leaves: Vec<Hash> = Vec::new();
    let mut wanted: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut found: Option<(Vec<u8>, u64)> = None;
    scan(dir, &mut |s| {
        leaves.push(leaf_hash(s.bytes));
        if s.record.exchange_id == exchange_id {
            wanted.push((s.record.sequence, s.bytes.to_vec()));
        }
        if let (Some(Kind::Checkpoint(cp)), Some((last, _))) = (&s.record.kind, wanted.last()) {
            if cp.tree_size >= *last {
                found = Some((s.bytes.to_vec(), cp.tree_size));
                return false;
            }
        }
        true
    })?;
    anyhow::ensure!(!wanted.is_empty(), "no records of exchange {exchange_id}");
    let (checkpoint, size) =
        found.context("no checkpoint covers the exchange yet; retry after the next checkpoint")?;
    let tree = leaves
        .get(..size as usize)
        .context("log shorter than the checkpoint")?;
    let records = wanted
        .into_iter()
        .map(|(seq, bytes)| BundleRecord {
            sequence: seq,
            record: B64.encode(bytes),
            inclusion_proof: inclusion_proof(tree, seq as usize - 1)
                .iter()
                .map(hex::encode)
                .collect(),
        })
        .collect();
    let bundle = Bundle {
        format: "penghubung-evidence-bundle-v1".into(),
        exchange_id: exchange_id.to_owned(),
        records,
        checkpoint: B64.encode(checkpoint),
    };
    std::fs::write(out, serde_json::to_vec_pretty(&bundle)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `evidence check-bundle`: verifies inclusion proofs, the checkpoint signature (and chain to
/// `trust_ca`) and, with `tsa_ca`, the time-stamp token. `Ok(false)` if anything fails.
pub fn check_bundle(
    file: &Path,
    trust_ca: Option<&Path>,
    tsa_ca: Option<&Path>,
) -> anyhow::Result<bool> {
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(file)?)?;
    match check_bundle_inner(&bundle, trust_ca, tsa_ca)? {
        Ok(summary) => {
            println!("OK: {summary}");
            Ok(true)
        }
        Err(why) => {
            println!("FAILED: {why}");
            Ok(false)
        }
    }
}

fn check_bundle_inner(
    b: &Bundle,
    trust_ca: Option<&Path>,
    tsa_ca: Option<&Path>,
) -> anyhow::Result<Result<String, String>> {
    let cp_record = Record::decode(B64.decode(&b.checkpoint)?.as_slice())?;
    let Some(Kind::Checkpoint(cp)) = &cp_record.kind else {
        return Ok(Err("bundle checkpoint is not a checkpoint".into()));
    };
    let digest = digest_of(&cp_record.node_id, cp);
    let at = cp.signed_time_unix_nanos.div_euclid(1_000_000_000);
    let anchors = match trust_ca {
        Some(p) => load_pem_certificates(p)?,
        None => cp
            .signer_certificate_chain
            .iter()
            .take(1)
            .map(|c| c.to_vec())
            .collect(),
    };
    let chain: Vec<&[u8]> = cp
        .signer_certificate_chain
        .iter()
        .map(|c| c.as_ref())
        .collect();
    if let Err(e) = verify_signature(
        &cp.signature_algorithm,
        &digest,
        &cp.signature,
        &chain,
        &anchors,
        at,
    ) {
        return Ok(Err(e));
    }
    if let Some(p) = tsa_ca {
        let imprint = tsa_imprint(&digest, &cp.signature);
        if let Err(e) = tsa::verify_token(
            &cp.timestamp_token,
            &imprint,
            &load_pem_certificates(p)?,
            None,
        ) {
            return Ok(Err(e));
        }
    }
    let mut root = [0u8; 32];
    if cp.root_hash.len() != 32 {
        return Ok(Err("bad root hash".into()));
    }
    root.copy_from_slice(&cp.root_hash);
    for r in &b.records {
        let bytes = B64.decode(&r.record)?;
        let record = Record::decode(bytes.as_slice())?;
        if record.sequence != r.sequence || record.exchange_id != b.exchange_id {
            return Ok(Err(format!(
                "record #{} does not belong to the bundle",
                r.sequence
            )));
        }
        let proof = r
            .inclusion_proof
            .iter()
            .map(|h| hex::decode(h).ok().and_then(|v| <Hash>::try_from(v).ok()))
            .collect::<Option<Vec<Hash>>>()
            .context("bad proof hash")?;
        if r.sequence == 0
            || !verify_inclusion(
                &leaf_hash(&bytes),
                r.sequence - 1,
                cp.tree_size,
                &proof,
                &root,
            )
        {
            return Ok(Err(format!(
                "record #{} is not in the checkpointed log",
                r.sequence
            )));
        }
    }
    Ok(Ok(format!(
        "{} records of exchange {} included in checkpoint #{} (tree size {})",
        b.records.len(),
        b.exchange_id,
        cp_record.sequence,
        cp.tree_size
    )))
}

/// `evidence anchor`: exports the latest checkpoint as an anchor file to keep elsewhere.
pub fn anchor(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let mut last: Option<Vec<u8>> = None;
    scan(dir, &mut |s| {
        if matches!(s.record.kind, Some(Kind::Checkpoint(_))) {
            last = Some(s.bytes.to_vec());
        }
        true
    })?;
    let bytes = last.context("the log has no checkpoint yet")?;
    let anchor = Anchor::from_record(&bytes).context("bad checkpoint record")?;
    std::fs::write(out, serde_json::to_vec_pretty(&anchor)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!(
        "anchored checkpoint #{} (tree size {}, root {})",
        anchor.sequence, anchor.tree_size, anchor.root_hash
    );
    Ok(())
}
