//! Redaction-proof commitments for JSON bodies of personal-data services.
//!
//! Every scalar (and every empty array/object) of the body is a leaf at its RFC 6901 JSON
//! pointer `p` with canonical value `v` (its compact serde_json encoding):
//! `salt = HMAC-SHA256(secret, exchange_id ‖ 0x00 ‖ p)`,
//! `leaf = SHA-256(salt ‖ u32 BE len(p) ‖ p ‖ u32 BE len(v) ‖ v)`.
//! Leaves are sorted by pointer (bytewise) and combined with RFC 9162 hashing (each leaf value
//! is hashed again as a Merkle leaf). The root goes into `Request.body_commitment_root`; a
//! [`Disclosure`] later proves one field without revealing the others.

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::merkle::{inclusion_proof, leaf_hash, root_of, sha256, verify_inclusion, Hash};

/// Proof that one field had one value in a committed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// JSON pointer of the field.
    pub pointer: String,
    /// Canonical (compact JSON) value; `None` when the pointer is not a leaf of the body.
    pub value: Option<String>,
    /// The field's salt, hex.
    pub salt: String,
    /// Position of the leaf among the sorted leaves.
    pub index: u64,
    /// Number of leaves.
    pub leaves: u64,
    /// RFC 9162 inclusion proof, hex.
    pub proof: Vec<String>,
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn collect(value: &Value, path: &mut String, out: &mut Vec<(String, String)>) {
    let len = path.len();
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push('/');
                path.push_str(&escape(k));
                collect(v, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                collect(v, path, out);
                path.truncate(len);
            }
        }
        other => out.push((path.clone(), other.to_string())),
    }
}

fn salt(secret: &[u8], exchange_id: &str, pointer: &str) -> Hash {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(exchange_id.as_bytes());
    ctx.update(&[0]);
    ctx.update(pointer.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn leaf_value(salt: &[u8], pointer: &str, value: &str) -> Hash {
    let mut buf = salt.to_vec();
    buf.extend_from_slice(&(pointer.len() as u32).to_be_bytes());
    buf.extend_from_slice(pointer.as_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
    buf.extend_from_slice(value.as_bytes());
    sha256(&buf)
}

fn leaves(
    body: &[u8],
    exchange_id: &str,
    secret: &[u8],
) -> Option<Vec<(String, String, Hash, Hash)>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let mut fields = Vec::new();
    collect(&value, &mut String::new(), &mut fields);
    fields.sort();
    Some(
        fields
            .into_iter()
            .map(|(p, v)| {
                let s = salt(secret, exchange_id, &p);
                let leaf = leaf_hash(&leaf_value(&s, &p, &v));
                (p, v, s, leaf)
            })
            .collect(),
    )
}

/// The commitment root of a JSON body; `None` when the body is not JSON.
pub fn commitment_root(body: &[u8], exchange_id: &str, secret: &[u8]) -> Option<[u8; 32]> {
    let l = leaves(body, exchange_id, secret)?;
    let hashes: Vec<Hash> = l.iter().map(|x| x.3).collect();
    Some(root_of(&hashes))
}

/// Discloses the field at `pointer` (value `None` if absent or the body is not JSON).
pub fn disclose(body: &[u8], exchange_id: &str, secret: &[u8], pointer: &str) -> Disclosure {
    let all = leaves(body, exchange_id, secret).unwrap_or_default();
    let hashes: Vec<Hash> = all.iter().map(|x| x.3).collect();
    match all.iter().position(|x| x.0 == pointer) {
        Some(i) => Disclosure {
            pointer: pointer.to_owned(),
            value: Some(all[i].1.clone()),
            salt: hex::encode(all[i].2),
            index: i as u64,
            leaves: all.len() as u64,
            proof: inclusion_proof(&hashes, i)
                .iter()
                .map(hex::encode)
                .collect(),
        },
        None => Disclosure {
            pointer: pointer.to_owned(),
            value: None,
            salt: String::new(),
            index: 0,
            leaves: all.len() as u64,
            proof: Vec::new(),
        },
    }
}

/// Whether `d` proves its field against `root`.
pub fn verify_disclosure(d: &Disclosure, root: &[u8; 32]) -> bool {
    let Some(value) = &d.value else {
        return false;
    };
    let Ok(salt) = hex::decode(&d.salt) else {
        return false;
    };
    let mut proof = Vec::new();
    for p in &d.proof {
        match hex::decode(p)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            Some(h) => proof.push(h),
            None => return false,
        }
    }
    let leaf = leaf_hash(&leaf_value(&salt, &d.pointer, value));
    verify_inclusion(&leaf, d.index, d.leaves, &proof, root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"nik":"3201010101010001","nama":"Siti","alamat":{"kota":"Bogor","rt/rw":"01/02"},"anak":[1,2],"x":{}}"#;

    #[test]
    fn disclosure_round_trip_and_tampering() {
        let root = commitment_root(BODY, "ex-1", b"secret").unwrap();
        for p in [
            "/nik",
            "/nama",
            "/alamat/kota",
            "/alamat/rt~1rw",
            "/anak/1",
            "/x",
        ] {
            let d = disclose(BODY, "ex-1", b"secret", p);
            assert!(verify_disclosure(&d, &root), "{p}");
        }
        let d = disclose(BODY, "ex-1", b"secret", "/nik");
        assert_eq!(d.value.as_deref(), Some("\"3201010101010001\""));
        let mut forged = d.clone();
        forged.value = Some("\"3201010101010002\"".into());
        assert!(!verify_disclosure(&forged, &root));
        let mut moved = d.clone();
        moved.pointer = "/nama".into();
        assert!(!verify_disclosure(&moved, &root));
        let mut bad_salt = d.clone();
        bad_salt.salt = hex::encode([0u8; 32]);
        assert!(!verify_disclosure(&bad_salt, &root));
        // Another exchange or secret gives another root; non-JSON gives none.
        assert_ne!(commitment_root(BODY, "ex-2", b"secret"), Some(root));
        assert_ne!(commitment_root(BODY, "ex-1", b"other"), Some(root));
        assert_eq!(commitment_root(b"not json", "ex-1", b"secret"), None);
        assert!(!verify_disclosure(
            &disclose(BODY, "ex-1", b"secret", "/missing"),
            &root
        ));
    }
}
