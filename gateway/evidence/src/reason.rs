//! Stable reason classes of verification failures and warnings.
//!
//! Each class has a fixed kebab-case name printed by the CLI (`FAILED [class] …`) and listed in
//! `proto/README.md` §12 with the conformance vectors, so another verifier can be compared
//! class by class. Names are never renamed or reused.

use serde::Serialize;

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// Why a log, bundle or anchor does not verify.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every class, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The stable name printed by the CLI and used in the specification.
            pub fn name(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }
        }
    };
}

reasons! {
    /// A frame is cut short or has an impossible length.
    Frame = "frame",
    /// A frame's CRC-32C does not match.
    Crc = "crc",
    /// A stored chain hash does not match.
    Chain = "chain",
    /// A sequence number is not the previous one plus 1.
    Sequence = "sequence",
    /// A record's time goes backwards.
    Time = "time",
    /// Segment files do not start at 1 or have a gap.
    SegmentGap = "segment-gap",
    /// A record is not valid protobuf.
    Decode = "decode",
    /// A record has no `kind`.
    Kindless = "kindless",
    /// A record carries a oneof member or a singular field more than once.
    DuplicateField = "duplicate-field",
    /// A record's kind is not one this verifier knows.
    UnknownKind = "unknown-kind",
    /// A checkpoint's tree size or Merkle root does not match the records.
    Merkle = "merkle",
    /// A checkpoint does not link to the previous one (digest or time-stamp binding).
    CheckpointLink = "checkpoint-link",
    /// A legacy checkpoint follows a current one, or the format version is unknown.
    Downgrade = "downgrade",
    /// A checkpoint is unsigned where a signature is required.
    Unsigned = "unsigned",
    /// A checkpoint signature does not verify.
    Signature = "signature",
    /// A certificate chain does not validate (RFC 5280 path validation).
    CertificatePath = "certificate-path",
    /// A certificate lacks the required key usage or extended key usage.
    CertificateUsage = "certificate-usage",
    /// A certificate is not valid at the time it was used.
    CertificateExpired = "certificate-expired",
    /// A certificate is revoked by a given CRL.
    CertificateRevoked = "certificate-revoked",
    /// `tsa_status` and `timestamp_token` contradict each other.
    TimestampStatus = "timestamp-status",
    /// A time-stamp token does not verify (imprint, signature, chain, policy).
    Timestamp = "timestamp",
    /// A time-stamp token lacks an ESS signingCertificate(V2) bound to the TSA certificate.
    TimestampEss = "timestamp-ess",
    /// A time-stamp's genTime is outside the window around the signed time.
    TimestampWindow = "timestamp-window",
    /// An anchor file disagrees with its record or with the log.
    Anchor = "anchor",
    /// The log ends before the anchored checkpoint: truncated or rolled back.
    Truncated = "truncated",
    /// A bundle is not well-formed JSON, base64 or hex.
    BundleMalformed = "bundle-malformed",
    /// A bundle has no records.
    BundleEmpty = "bundle-empty",
    /// A bundle holds a record of another exchange.
    BundleForeign = "bundle-foreign",
    /// A bundle lacks a record of its exchange, or its records are out of order.
    BundleIncomplete = "bundle-incomplete",
    /// A bundle record's inclusion proof does not verify.
    BundleProof = "bundle-proof",
    /// A personal-data disclosure does not open a commitment of its bundle (proto/README.md §16).
    Disclosure = "disclosure",
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure: its class and a readable explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The stable class.
    pub reason: Reason,
    /// What exactly is wrong.
    pub detail: String,
}

impl Failure {
    /// A failure of class `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}", self.reason, self.detail)
    }
}
