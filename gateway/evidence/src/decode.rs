//! Strict decoding of stored records (`proto/README.md` §3.1).
//!
//! prost accepts a record with no `kind`, with two members of the `kind` oneof (the last wins)
//! and with unknown members; a verifier must not. Before handing the bytes to prost, the
//! top-level fields (and those of a `Checkpoint`) are walked on the wire:
//! - field numbers 10 to 49 are reserved for the `kind` oneof: exactly one must be present, it
//!   must be one of [`KNOWN_KINDS`] (adding a kind = adding its number there and to the
//!   schema), and it must appear once;
//! - a known singular field appearing twice is an error (protobuf would silently keep the last);
//! - any other unknown field is reported as a warning (a newer writer may have added it; it is
//!   covered by the hashes anyway);
//! - groups (wire types 3 and 4), field number 0 and truncated fields are errors.
//!
//! Non-canonical encodings (over-long varints, fields out of order) are accepted: the record is
//! hashed and signed exactly as stored, never re-encoded.

use prost::Message as _;

use crate::reason::{Failure, Reason};
use crate::schema::{record::Kind, Record};

/// Field numbers reserved for `Record.kind`.
pub const KIND_RANGE: std::ops::RangeInclusive<u32> = 10..=49;

/// The `Record.kind` members this verifier knows: (field number, name).
pub const KNOWN_KINDS: &[(u32, &str)] = &[
    (10, "request"),
    (11, "outcome"),
    (12, "refused"),
    (13, "admin"),
    (14, "checkpoint"),
    (20, "refusals_suppressed"),
];

/// Singular (non-repeated) top-level fields of `Record` besides the kind.
const RECORD_SINGULAR: &[u32] = &[1, 2, 3, 4, 5, 6, 7];
/// Fields of `Checkpoint`: singular ones, and the repeated certificate chain.
const CHECKPOINT_SINGULAR: &[u32] = &[1, 2, 3, 4, 5, 7, 8, 9, 10, 11];
const CHECKPOINT_REPEATED: &[u32] = &[6];

/// A strictly decoded record.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The record.
    pub record: Record,
    /// Unknown fields seen, as `Record.N` or `Checkpoint.N`.
    pub unknown_fields: Vec<String>,
}

struct Field<'a> {
    number: u32,
    wire_type: u8,
    payload: &'a [u8],
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The top-level fields of a protobuf message, in wire order.
fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>, Failure> {
    let bad = |d: &str| Failure::new(Reason::Decode, d.to_owned());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos).ok_or_else(|| bad("truncated field key"))?;
        let number = u32::try_from(key >> 3).map_err(|_| bad("field number out of range"))?;
        let wire_type = (key & 7) as u8;
        if number == 0 {
            return Err(bad("field number 0"));
        }
        let start = pos;
        match wire_type {
            0 => {
                varint(buf, &mut pos).ok_or_else(|| bad("truncated varint"))?;
            }
            1 => pos = pos.checked_add(8).ok_or_else(|| bad("overflow"))?,
            5 => pos = pos.checked_add(4).ok_or_else(|| bad("overflow"))?,
            2 => {
                let len = varint(buf, &mut pos).ok_or_else(|| bad("truncated length"))?;
                let len = usize::try_from(len).map_err(|_| bad("length out of range"))?;
                pos = pos.checked_add(len).ok_or_else(|| bad("overflow"))?;
            }
            _ => return Err(bad("groups and invalid wire types are not allowed")),
        }
        if pos > buf.len() {
            return Err(bad("truncated field"));
        }
        let payload = if wire_type == 2 {
            let mut p = start;
            varint(buf, &mut p).ok_or_else(|| bad("truncated length"))?;
            &buf[p..pos]
        } else {
            &buf[start..pos]
        };
        out.push(Field {
            number,
            wire_type,
            payload,
        });
    }
    Ok(out)
}

fn check_message(
    buf: &[u8],
    name: &str,
    singular: &[u32],
    repeated: &[u32],
    unknown: &mut Vec<String>,
) -> Result<Vec<(u32, Vec<u8>)>, Failure> {
    let mut seen: Vec<u32> = Vec::new();
    let mut kinds = Vec::new();
    for f in fields(buf)? {
        if name == "Record" && KIND_RANGE.contains(&f.number) {
            if !KNOWN_KINDS.iter().any(|(n, _)| *n == f.number) {
                return Err(Failure::new(
                    Reason::UnknownKind,
                    format!("record kind field {} is not known", f.number),
                ));
            }
            if f.wire_type != 2 {
                return Err(Failure::new(Reason::Decode, "kind is not a message"));
            }
            kinds.push((f.number, f.payload.to_vec()));
            continue;
        }
        if singular.contains(&f.number) {
            if seen.contains(&f.number) {
                return Err(Failure::new(
                    Reason::DuplicateField,
                    format!("{name} field {} appears twice", f.number),
                ));
            }
            seen.push(f.number);
        } else if !repeated.contains(&f.number) {
            let u = format!("{name}.{}", f.number);
            if !unknown.contains(&u) {
                unknown.push(u);
            }
        }
    }
    Ok(kinds)
}

/// Decodes `bytes` as a `Record` under the strict rules of the module doc.
pub fn decode_record(bytes: &[u8]) -> Result<Decoded, Failure> {
    let mut unknown_fields = Vec::new();
    let kinds = check_message(bytes, "Record", RECORD_SINGULAR, &[], &mut unknown_fields)?;
    match kinds.as_slice() {
        [] => return Err(Failure::new(Reason::Kindless, "record has no kind")),
        [(14, payload)] => {
            check_message(
                payload,
                "Checkpoint",
                CHECKPOINT_SINGULAR,
                CHECKPOINT_REPEATED,
                &mut unknown_fields,
            )?;
        }
        [_] => {}
        _ => {
            return Err(Failure::new(
                Reason::DuplicateField,
                format!(
                    "record carries {} members of the kind oneof (fields {:?})",
                    kinds.len(),
                    kinds.iter().map(|k| k.0).collect::<Vec<_>>()
                ),
            ))
        }
    }
    let record = Record::decode(bytes)
        .map_err(|e| Failure::new(Reason::Decode, format!("record does not decode: {e}")))?;
    if record.kind.is_none() {
        return Err(Failure::new(Reason::Kindless, "record has no kind"));
    }
    Ok(Decoded {
        record,
        unknown_fields,
    })
}

/// The name of a decoded record's kind.
pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Request(_) => "request",
        Kind::Outcome(_) => "outcome",
        Kind::Refused(_) => "refused",
        Kind::Admin(_) => "admin",
        Kind::Checkpoint(_) => "checkpoint",
        Kind::RefusalsSuppressed(_) => "refusals_suppressed",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema::Admin;

    fn admin() -> Vec<u8> {
        Record {
            sequence: 1,
            kind: Some(Kind::Admin(Admin::default())),
            ..Record::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn strict_rules() {
        assert!(decode_record(&admin()).is_ok());
        let kindless = Record {
            sequence: 1,
            ..Record::default()
        }
        .encode_to_vec();
        assert_eq!(
            decode_record(&kindless).unwrap_err().reason,
            Reason::Kindless
        );
        let mut twice = admin();
        twice.extend_from_slice(&[0x6a, 0x00]); // field 13 (admin) again
        assert_eq!(
            decode_record(&twice).unwrap_err().reason,
            Reason::DuplicateField
        );
        let mut other = admin();
        other.extend_from_slice(&[0x5a, 0x00]); // field 11 (outcome) too
        assert_eq!(
            decode_record(&other).unwrap_err().reason,
            Reason::DuplicateField
        );
        let mut unknown_kind = kindless.clone();
        unknown_kind.extend_from_slice(&[0xfa, 0x02, 0x00]); // field 47, length 0
        assert_eq!(
            decode_record(&unknown_kind).unwrap_err().reason,
            Reason::UnknownKind
        );
        let mut seq_twice = admin();
        seq_twice.extend_from_slice(&[0x08, 0x05]);
        assert_eq!(
            decode_record(&seq_twice).unwrap_err().reason,
            Reason::DuplicateField
        );
        let mut extra = admin();
        extra.extend_from_slice(&[0xa0, 0x06, 0x01]); // field 100, varint
        let d = decode_record(&extra).unwrap();
        assert_eq!(d.unknown_fields, vec!["Record.100".to_owned()]);
        assert_eq!(decode_record(&[0x0b]).unwrap_err().reason, Reason::Decode);
        assert_eq!(
            decode_record(&[0x12, 0x05]).unwrap_err().reason,
            Reason::Decode
        );
    }
}
