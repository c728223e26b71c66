//! `penghubung evidence …` subcommands as plain functions (clap wiring lives in `main.rs`).
//! Results go to stdout, progress to stderr.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::decode::decode_record;
use super::merkle::{inclusion_proof, leaf_hash, verify_inclusion, Hash};
use super::reason::{Failure, Reason};
use super::schema::record::Kind;
use super::signer::load_pem_certificates;
use super::verify::{check_checkpoint, scan, verify_dir, Anchor, CheckContext, VerifyOptions};

/// `format` of a bundle file.
pub const BUNDLE_FORMAT: &str = "penghubung-evidence-bundle-v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads every DER CRL of PEM files (`-----BEGIN X509 CRL-----`) or DER files.
pub fn load_crls(paths: &[std::path::PathBuf]) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject as _;
    let mut out = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).with_context(|| format!("read CRL {}", p.display()))?;
        if bytes.first() == Some(&0x30) {
            out.push(bytes);
            continue;
        }
        for crl in rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&bytes) {
            out.push(
                crl.with_context(|| format!("parse CRL {}", p.display()))?
                    .to_vec(),
            );
        }
    }
    Ok(out)
}

/// Certificate and policy options of `verify` and `check-bundle`, as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct TrustArgs {
    /// PEM trust anchors of the checkpoint signer.
    pub trust_ca: Option<std::path::PathBuf>,
    /// PEM trust anchors of the TSA.
    pub tsa_ca: Option<std::path::PathBuf>,
    /// CRLs for the signer path.
    pub crls: Vec<std::path::PathBuf>,
    /// CRLs for the TSA path.
    pub tsa_crls: Vec<std::path::PathBuf>,
    /// Accepted signer EKUs (dotted); empty = defaults.
    pub ekus: Vec<String>,
    /// Accepted TSA policies (dotted); empty = any.
    pub tsa_policies: Vec<String>,
}

impl TrustArgs {
    /// Loads the files into [`VerifyOptions`].
    pub fn options(&self) -> anyhow::Result<VerifyOptions> {
        Ok(VerifyOptions {
            trust_anchors: self
                .trust_ca
                .as_deref()
                .map(load_pem_certificates)
                .transpose()?,
            tsa_anchors: self
                .tsa_ca
                .as_deref()
                .map(load_pem_certificates)
                .transpose()?,
            anchor: None,
            signer_crls: load_crls(&self.crls)?,
            tsa_crls: load_crls(&self.tsa_crls)?,
            signer_ekus: self.ekus.clone(),
            tsa_policies: self.tsa_policies.clone(),
        })
    }
}

/// `evidence verify`: prints a summary or the first bad record and why; `Ok(false)` if bad.
pub fn verify(
    dir: &Path,
    trust_ca: Option<&Path>,
    anchor: Option<&Path>,
    tsa_ca: Option<&Path>,
) -> anyhow::Result<bool> {
    let args = TrustArgs {
        trust_ca: trust_ca.map(Path::to_path_buf),
        tsa_ca: tsa_ca.map(Path::to_path_buf),
        ..TrustArgs::default()
    };
    verify_with(dir, &args, anchor)
}

/// `evidence verify` with every option.
pub fn verify_with(dir: &Path, args: &TrustArgs, anchor: Option<&Path>) -> anyhow::Result<bool> {
    let mut opts = args.options()?;
    opts.anchor = anchor
        .map(|p| -> anyhow::Result<Anchor> {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read anchor {}", p.display()))?;
            Ok(serde_json::from_str(&text)?)
        })
        .transpose()?;
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
            println!(
                "FAILED [{}] at record #{} ({place}): {}",
                p.class, p.sequence, p.reason
            );
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

/// `evidence export --exchange ID`: writes a bundle with every record of the exchange and the
/// first checkpoint whose tree covers all of them.
pub fn export(dir: &Path, exchange_id: &str, out: &Path) -> anyhow::Result<()> {
    let mut leaves: Vec<Hash> = Vec::new();
    let mut wanted: Vec<(u64, Vec<u8>)> = Vec::new();
    scan(dir, &mut |s| {
        leaves.push(leaf_hash(s.bytes));
        if s.record.exchange_id == exchange_id {
            wanted.push((s.record.sequence, s.bytes.to_vec()));
        }
        true
    })?;
    let last = wanted
        .last()
        .map(|w| w.0)
        .with_context(|| format!("no records of exchange {exchange_id}"))?;
    let mut found: Option<(Vec<u8>, u64)> = None;
    scan(dir, &mut |s| {
        if let Some(Kind::Checkpoint(cp)) = &s.record.kind {
            if cp.tree_size >= last {
                found = Some((s.bytes.to_vec(), cp.tree_size));
                return false;
            }
        }
        true
    })?;
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
        format: BUNDLE_FORMAT.into(),
        exchange_id: exchange_id.to_owned(),
        records,
        checkpoint: B64.encode(checkpoint),
    };
    std::fs::write(out, serde_json::to_vec_pretty(&bundle)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// `evidence check-bundle`: verifies the bundle (see [`check_bundle_value`]). `Ok(false)` if
/// anything fails.
pub fn check_bundle(
    file: &Path,
    trust_ca: Option<&Path>,
    tsa_ca: Option<&Path>,
) -> anyhow::Result<bool> {
    let args = TrustArgs {
        trust_ca: trust_ca.map(Path::to_path_buf),
        tsa_ca: tsa_ca.map(Path::to_path_buf),
        ..TrustArgs::default()
    };
    check_bundle_with(file, &args)
}

/// `evidence check-bundle` with every option.
pub fn check_bundle_with(file: &Path, args: &TrustArgs) -> anyhow::Result<bool> {
    let opts = args.options()?;
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let verdict = check_bundle_bytes(&bytes, &opts)?;
    for w in &verdict.warnings {
        println!("warning: {w}");
    }
    match verdict.result {
        Ok(summary) => {
            println!("OK: {summary}");
            Ok(true)
        }
        Err(f) => {
            println!("FAILED {f}");
            Ok(false)
        }
    }
}

/// `evidence check-bundle --disclosure FILE…`: verifies the bundle, then each personal-data
/// disclosure against the bundle's records (proto/README.md §16). `Ok(false)` if anything
/// fails.
pub fn check_bundle_disclosures(
    file: &Path,
    args: &TrustArgs,
    disclosures: &[std::path::PathBuf],
) -> anyhow::Result<bool> {
    if !check_bundle_with(file, args)? {
        return Ok(false);
    }
    let bytes = std::fs::read(file).with_context(|| format!("read {}", file.display()))?;
    let bundle: Bundle = serde_json::from_slice(&bytes)?;
    for path in disclosures {
        let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        match check_disclosure(&bundle, &text) {
            Ok(()) => println!("OK: disclosure {} opens its commitment", path.display()),
            Err(f) => {
                println!("FAILED {f} ({})", path.display());
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Checks one disclosure (JSON bytes) against the records of a bundle that passed
/// [`check_bundle_value`].
pub fn check_disclosure(bundle: &Bundle, disclosure: &[u8]) -> Result<(), Failure> {
    let fail = |d: String| Failure::new(Reason::Disclosure, d);
    let d: crate::personal::PersonalDisclosure = serde_json::from_slice(disclosure)
        .map_err(|e| fail(format!("not a disclosure file: {e}")))?;
    if d.exchange_id != bundle.exchange_id {
        return Err(fail(format!(
            "the disclosure is about exchange {:?}, the bundle about {:?}",
            d.exchange_id, bundle.exchange_id
        )));
    }
    let r = bundle
        .records
        .iter()
        .find(|r| r.sequence == d.record_sequence)
        .ok_or_else(|| {
            fail(format!(
                "record #{} is not in the bundle",
                d.record_sequence
            ))
        })?;
    let bytes = B64
        .decode(&r.record)
        .map_err(|e| fail(format!("record #{} is not base64: {e}", r.sequence)))?;
    let record = decode_record(&bytes)?.record;
    crate::personal::verify_disclosure(&d, r.sequence, &record).map_err(fail)
}

/// The verdict on a bundle.
#[derive(Debug, Clone)]
pub struct BundleVerdict {
    /// A summary, or the failure.
    pub result: Result<String, Failure>,
    /// Warnings (no time-stamp, unchecked parts).
    pub warnings: Vec<String>,
}

/// Checks bundle JSON bytes; `Err` only for bad options.
pub fn check_bundle_bytes(bytes: &[u8], opts: &VerifyOptions) -> anyhow::Result<BundleVerdict> {
    let ctx = CheckContext::new(opts)?;
    let mut warnings = Vec::new();
    let result = match serde_json::from_slice::<Bundle>(bytes) {
        Ok(b) => check_bundle_value(&b, &ctx, opts, &mut warnings),
        Err(e) => Err(Failure::new(
            Reason::BundleMalformed,
            format!("bundle is not bundle JSON: {e}"),
        )),
    };
    Ok(BundleVerdict { result, warnings })
}

/// The bundle rules of `proto/README.md` §8: the checkpoint passes [`check_checkpoint`] (the
/// same verdict as `verify`), and the records are a non-empty, strictly increasing, complete
/// set of records of the bundle's exchange, each proven in the checkpoint's tree.
pub fn check_bundle_value(
    b: &Bundle,
    ctx: &CheckContext,
    opts: &VerifyOptions,
    warnings: &mut Vec<String>,
) -> Result<String, Failure> {
    let malformed = |d: String| Failure::new(Reason::BundleMalformed, d);
    if b.format != BUNDLE_FORMAT {
        return Err(malformed(format!("format is not {BUNDLE_FORMAT}")));
    }
    if b.exchange_id.is_empty() {
        return Err(Failure::new(
            Reason::BundleForeign,
            "bundle names no exchange",
        ));
    }
    let cp_bytes = B64
        .decode(&b.checkpoint)
        .map_err(|e| malformed(format!("checkpoint is not base64: {e}")))?;
    let cp_decoded = decode_record(&cp_bytes)?;
    let mut unknown = cp_decoded.unknown_fields;
    let cp_record = cp_decoded.record;
    let Some(Kind::Checkpoint(cp)) = &cp_record.kind else {
        return Err(malformed("bundle checkpoint is not a checkpoint".into()));
    };
    if cp.tree_size >= cp_record.sequence {
        return Err(Failure::new(
            Reason::Merkle,
            "checkpoint tree size is not below its own sequence number",
        ));
    }
    let notes = check_checkpoint(ctx, &cp_record.node_id, cp)?;
    if opts.trust_anchors.is_none() {
        warnings.push("signer certificate chain not checked (no trust CA given)".into());
    }
    if notes.no_token {
        warnings.push(format!(
            "the checkpoint has no time-stamp ({}): its time rests on the signer alone",
            cp.tsa_status
        ));
    } else if notes.token_unchecked {
        warnings.push("time-stamp token not checked (no TSA CA given)".into());
    }
    if notes.legacy {
        warnings.push(
            "legacy-signature: the checkpoint uses format 0 and is signed without a purpose tag"
                .into(),
        );
    }
    if b.records.is_empty() {
        return Err(Failure::new(Reason::BundleEmpty, "bundle has no records"));
    }
    let mut root = [0u8; 32];
    root.copy_from_slice(&cp.root_hash);
    let mut previous = 0u64;
    let mut requests = Vec::new();
    let mut outcomes = Vec::new();
    let mut refused = false;
    for r in &b.records {
        let bytes = B64
            .decode(&r.record)
            .map_err(|e| malformed(format!("record #{} is not base64: {e}", r.sequence)))?;
        let decoded = decode_record(&bytes)?;
        unknown.extend(decoded.unknown_fields);
        let record = decoded.record;
        if record.sequence != r.sequence {
            return Err(malformed(format!(
                "record #{} holds sequence {}",
                r.sequence, record.sequence
            )));
        }
        if record.exchange_id != b.exchange_id {
            return Err(Failure::new(
                Reason::BundleForeign,
                format!(
                    "record #{} belongs to exchange {:?}, not {:?}",
                    r.sequence, record.exchange_id, b.exchange_id
                ),
            ));
        }
        if r.sequence <= previous {
            return Err(Failure::new(
                Reason::BundleIncomplete,
                format!("record #{} is out of order or repeated", r.sequence),
            ));
        }
        previous = r.sequence;
        match &record.kind {
            Some(Kind::Request(_)) => requests.push(record.sequence),
            Some(Kind::Outcome(o)) => outcomes.push(o.request_sequence),
            Some(Kind::Refused(_)) => refused = true,
            _ => {}
        }
        let proof = r
            .inclusion_proof
            .iter()
            .map(|h| hex::decode(h).ok().and_then(|v| <Hash>::try_from(v).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| malformed(format!("record #{}: bad proof hash", r.sequence)))?;
        if r.sequence == 0
            || !verify_inclusion(
                &leaf_hash(&bytes),
                r.sequence - 1,
                cp.tree_size,
                &proof,
                &root,
            )
        {
            return Err(Failure::new(
                Reason::BundleProof,
                format!("record #{} is not in the checkpointed log", r.sequence),
            ));
        }
    }
    if requests.is_empty() && !refused {
        return Err(Failure::new(
            Reason::BundleIncomplete,
            "bundle has neither the request nor the refusal of its exchange",
        ));
    }
    if let Some(o) = outcomes.iter().find(|o| !requests.contains(o)) {
        return Err(Failure::new(
            Reason::BundleIncomplete,
            format!("an outcome names request #{o}, which is not in the bundle"),
        ));
    }
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        warnings.push(format!(
            "unknown fields (ignored, covered by the hashes): {}",
            unknown.join(", ")
        ));
    }
    if !requests.is_empty() && outcomes.is_empty() {
        warnings.push("the bundle holds a request without an outcome (the call may not have finished before the checkpoint)".into());
    }
    Ok(format!(
        "{} records of exchange {} included in checkpoint #{} (tree size {})",
        b.records.len(),
        b.exchange_id,
        cp_record.sequence,
        cp.tree_size
    ))
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
