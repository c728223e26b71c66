//! Personal data in evidence: the key file, the keys derived from it, salted commitments of
//! declared values, keyed digests, log fingerprints, sealing and disclosure (proto/README.md
//! §16 specifies every construction; this module is its reference implementation).
//!
//! The key file holds one or more secrets, each with an id; one is `current` and is used for new
//! records, the others stay for verifying and disclosing older records (every record names the
//! id it was made with). From a secret `S` the purpose keys are `HMAC-SHA256(S, label)`:
//! `commit` (salts), `digest` (keyed digests of path, query, headers and bodies), `mask`
//! (log fingerprints), `seal` (AES-256-GCM key of the sealed values) and `tree` (the secret of
//! the JSON body commitment tree, §9). Whoever holds the key file can recompute and read every
//! committed value; whoever holds only the evidence cannot.

use std::collections::BTreeMap;
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::schema::{self, record::Kind, PersonalValue};

/// Domain tag of a commitment (`\n`-terminated, 34 bytes).
pub const COMMITMENT_TAG: &[u8] = b"penghubung.personal.v1.commitment\n";
/// Domain tag of a sealed value's associated data (28 bytes).
pub const SEAL_TAG: &[u8] = b"penghubung.personal.v1.seal\n";
/// `format` of a disclosure file.
pub const DISCLOSURE_FORMAT: &str = "penghubung-personal-disclosure-v1";
/// Shortest secret accepted in a key file, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The key file as written (TOML): `current = "ID"` and `[[key]]` tables of `id` and `secret`
/// (hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Id of the key used for new records.
    pub current: String,
    /// Every key, the retired ones included.
    #[serde(default)]
    pub key: Vec<KeyEntry>,
}

/// One key of the key file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Key id, written into every record made with it (1 to 64 of `A-Za-z0-9._-`).
    pub id: String,
    /// The secret, hex (at least 32 bytes).
    pub secret: String,
}

/// The purpose keys derived from one secret.
pub struct Keys {
    id: String,
    commit: hmac::Key,
    digest: hmac::Key,
    mask: hmac::Key,
    seal: LessSafeKey,
    tree: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("id", &self.id).finish()
    }
}

fn hmac32(key: &hmac::Key, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// `SHA-256(COMMITMENT_TAG ‖ salt ‖ value)`.
pub fn commitment(salt: &[u8; 32], value: &[u8]) -> [u8; 32] {
    let mut buf = Vec::with_capacity(COMMITMENT_TAG.len() + 32 + value.len());
    buf.extend_from_slice(COMMITMENT_TAG);
    buf.extend_from_slice(salt);
    buf.extend_from_slice(value);
    crate::merkle::sha256(&buf)
}

fn seal_aad(exchange_id: &str, commitment: &[u8]) -> Vec<u8> {
    let mut aad = SEAL_TAG.to_vec();
    aad.extend_from_slice(exchange_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(commitment);
    aad
}

/// Where a value sits: direction (`request` or `response`), location, field, occurrence.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// `request` (values of a `request` record) or `response` (of an `outcome` record).
    pub direction: &'a str,
    /// `path`, `query`, `header`, `json` or `xml`.
    pub location: &'a str,
    /// Parameter or header name, JSON pointer or XML path.
    pub field: &'a str,
    /// 0-based among the values of the same location and field.
    pub occurrence: u32,
}

impl Keys {
    /// Derives the purpose keys of `secret` (key id `id`).
    pub fn derive(id: &str, secret: &[u8]) -> Keys {
        let root = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sub = |label: &str| {
            hmac32(
                &root,
                &[format!("penghubung.personal.v1.{label}").as_bytes()],
            )
        };
        let seal = sub("seal");
        #[allow(clippy::expect_used)] // 32 bytes is AES-256's key length: cannot fail
        let unbound = UnboundKey::new(&aead::AES_256_GCM, &seal).expect("32-byte AES-256 key");
        Keys {
            id: id.to_owned(),
            commit: hmac::Key::new(hmac::HMAC_SHA256, &sub("commit")),
            digest: hmac::Key::new(hmac::HMAC_SHA256, &sub("digest")),
            mask: hmac::Key::new(hmac::HMAC_SHA256, &sub("mask")),
            seal: LessSafeKey::new(unbound),
            tree: sub("tree"),
        }
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `salt = HMAC(K_commit, exchange_id ‖ 0 ‖ direction ‖ 0 ‖ location ‖ 0 ‖ field ‖ 0 ‖
    /// u32 occurrence)`.
    pub fn salt(&self, exchange_id: &str, place: Place<'_>) -> [u8; 32] {
        hmac32(
            &self.commit,
            &[
                exchange_id.as_bytes(),
                &[0],
                place.direction.as_bytes(),
                &[0],
                place.location.as_bytes(),
                &[0],
                place.field.as_bytes(),
                &[0],
                &place.occurrence.to_be_bytes(),
            ],
        )
    }

    /// Keyed digest `HMAC(K_digest, label ‖ 0 ‖ data)`; labels `path`, `query`, `headers`,
    /// `body`, `response`.
    pub fn digest(&self, label: &str, data: &[u8]) -> [u8; 32] {
        hmac32(&self.digest, &[label.as_bytes(), &[0], data])
    }

    /// A keyed digest computed over data arriving in pieces.
    pub fn digest_context(&self, label: &str) -> hmac::Context {
        let mut ctx = hmac::Context::with_key(&self.digest);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx
    }

    /// The log fingerprint of a value: the first 6 bytes of `HMAC(K_mask, category ‖ 0 ‖ value)`,
    /// hex. The same value of the same category gives the same fingerprint under one key.
    pub fn fingerprint(&self, category: &str, value: &[u8]) -> String {
        let h = hmac32(&self.mask, &[category.as_bytes(), &[0], value]);
        hex::encode(&h[..6])
    }

    /// The secret of the JSON body commitment tree (§9) under this key.
    pub fn tree_secret(&self) -> &[u8; 32] {
        &self.tree
    }

    /// `nonce ‖ AES-256-GCM(K_seal, nonce, value, aad = SEAL_TAG ‖ exchange_id ‖ 0 ‖
    /// commitment)`.
    pub fn seal(
        &self,
        nonce: [u8; 12],
        exchange_id: &str,
        commitment: &[u8],
        value: &[u8],
    ) -> Vec<u8> {
        let mut data = value.to_vec();
        let aad = seal_aad(exchange_id, commitment);
        #[allow(clippy::expect_used)] // only fails for inputs over 64 GiB
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut data,
            )
            .expect("value within AES-GCM limits");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        out
    }

    /// Opens a sealed value; `None` when it was not sealed under this key for this exchange
    /// and commitment.
    pub fn unseal(&self, exchange_id: &str, commitment: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = body.to_vec();
        let aad = seal_aad(exchange_id, commitment);
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(&aad), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }

    /// The committed (and sealed) form of one declared value, with a fresh random nonce.
    pub fn commit(
        &self,
        exchange_id: &str,
        place: Place<'_>,
        category: &str,
        value: &[u8],
    ) -> PersonalValue {
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        self.commit_with_nonce(exchange_id, place, category, value, nonce)
    }

    /// [`Keys::commit`] with a given nonce (conformance vectors).
    pub fn commit_with_nonce(
        &self,
        exchange_id: &str,
        place: Place<'_>,
        category: &str,
        value: &[u8],
        nonce: [u8; 12],
    ) -> PersonalValue {
        let salt = self.salt(exchange_id, place);
        let c = commitment(&salt, value);
        PersonalValue {
            location: place.location.to_owned(),
            field: place.field.to_owned(),
            category: category.to_owned(),
            occurrence: place.occurrence,
            commitment: bytes::Bytes::copy_from_slice(&c),
            sealed: bytes::Bytes::from(self.seal(nonce, exchange_id, &c, value)),
        }
    }
}

/// Declared XML element paths and their categories, for SOAP bodies (in this crate so that an
/// adapter crate can commit the elements it parses without depending on the gateway).
///
/// Path syntax: `/`-separated local element names from the document root, namespace prefixes
/// left out (`/Envelope/Body/CariPenduduk/NIK` for `<soap:Envelope><soap:Body><m:CariPenduduk>
/// <m:NIK>`), `*` for any one element. A concrete path (no `*`) names an element; its text
/// content is the committed value, recorded with `location = "xml"` and the concrete path as
/// `field`.
#[derive(Debug, Clone, Default)]
pub struct XmlFields {
    fields: Vec<(Vec<String>, String)>,
}

impl XmlFields {
    /// Compiles `(pattern, category)` pairs; the error names the first bad pattern.
    pub fn new<'a>(
        declared: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<XmlFields, String> {
        let mut fields = Vec::new();
        for (pattern, category) in declared {
            let segs: Vec<String> = pattern.split('/').skip(1).map(str::to_owned).collect();
            if !pattern.starts_with('/')
                || segs
                    .iter()
                    .any(|s| s.is_empty() || s.contains([':', ' ', '<', '>']))
            {
                return Err(format!(
                    "{pattern:?}: must be /-separated local element names (no prefixes) \
                     starting with '/'"
                ));
            }
            fields.push((segs, category.to_owned()));
        }
        Ok(XmlFields { fields })
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The category of a concrete element path, when it is declared.
    pub fn category(&self, path: &str) -> Option<&str> {
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        self.fields
            .iter()
            .find(|(pattern, _)| {
                pattern.len() == segs.len()
                    && pattern.iter().zip(&segs).all(|(p, s)| p == "*" || p == s)
            })
            .map(|(_, c)| c.as_str())
    }

    /// The commitment of one element's text when its path is declared (`None` otherwise).
    /// `direction` is `request` or `response`; `occurrence` counts earlier elements with the
    /// same path in the same message.
    pub fn commit(
        &self,
        keys: &Keys,
        exchange_id: &str,
        direction: &str,
        path: &str,
        occurrence: u32,
        value: &[u8],
    ) -> Option<PersonalValue> {
        let category = self.category(path)?;
        let place = Place {
            direction,
            location: "xml",
            field: path,
            occurrence,
        };
        Some(keys.commit(exchange_id, place, category, value))
    }
}

/// Every key of a key file, derived, and which one is current.
#[derive(Debug)]
pub struct Keyring {
    current: String,
    keys: BTreeMap<String, Keys>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Keyring {
    /// Parses a key file's text.
    pub fn parse(text: &str) -> Result<Keyring, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        Keyring::from_file(&file)
    }

    /// Derives the keys of a parsed key file.
    pub fn from_file(file: &KeyFile) -> Result<Keyring, String> {
        let mut keys = BTreeMap::new();
        for (i, entry) in file.key.iter().enumerate() {
            if !valid_id(&entry.id) {
                return Err(format!("key[{i}].id: must be 1 to 64 of A-Z a-z 0-9 . _ -"));
            }
            let secret = hex::decode(entry.secret.trim())
                .map_err(|_| format!("key[{i}].secret: not hex"))?;
            if secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "key[{i}].secret: must be at least {MIN_SECRET_BYTES} bytes ({} hex digits)",
                    MIN_SECRET_BYTES * 2
                ));
            }
            if keys
                .insert(entry.id.clone(), Keys::derive(&entry.id, &secret))
                .is_some()
            {
                return Err(format!("key[{i}].id: {:?} appears twice", entry.id));
            }
        }
        if !keys.contains_key(&file.current) {
            return Err(format!("current: no key with id {:?}", file.current));
        }
        Ok(Keyring {
            current: file.current.clone(),
            keys,
        })
    }

    /// Reads a key file. Refuses one that others than its owner may read (Unix mode).
    pub fn load(path: &Path) -> Result<Keyring, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{}: mode {:o} lets others read the personal-data key; chmod 600 it",
                    path.display(),
                    mode & 0o777
                ));
            }
        }
        Keyring::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The key new records use.
    pub fn current(&self) -> &Keys {
        #[allow(clippy::expect_used)] // checked when the keyring was made
        self.keys.get(&self.current).expect("current key present")
    }

    /// The key with id `id` (for verifying and disclosing older records).
    pub fn get(&self, id: &str) -> Option<&Keys> {
        self.keys.get(id)
    }

    /// The ids of every key.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// Adds a fresh random key with id `id` to the key file at `path` (creating it, mode 0600) and
/// makes it current; the previous keys stay for older records. Writes the new file beside the
/// old one and renames it into place.
pub fn rotate_key_file(path: &Path, id: &str) -> Result<(), String> {
    let mut file = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str::<KeyFile>(&text)
            .map_err(|e| format!("{}: {}", path.display(), e.message()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeyFile {
            current: String::new(),
            key: Vec::new(),
        },
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if file.key.iter().any(|k| k.id == id) {
        return Err(format!(
            "{}: a key with id {id:?} exists already",
            path.display()
        ));
    }
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    file.key.push(KeyEntry {
        id: id.to_owned(),
        secret: hex::encode(secret),
    });
    file.current = id.to_owned();
    Keyring::from_file(&file)?;
    let text = format!(
        "# Penghubung personal-data keys (README, \"Personal data\"). Keep this file apart from the\n\
         # evidence log, mode 0600, and back it up: without it no committed value can be disclosed.\n{}",
        toml::to_string(&file).map_err(|e| e.to_string())?
    );
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// A disclosure file: one committed value of one exchange, with the salt that opens its
/// commitment (written by `penghubung evidence disclose`, checked by `check-bundle
/// --disclosure`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalDisclosure {
    /// [`DISCLOSURE_FORMAT`].
    pub format: String,
    /// The exchange.
    pub exchange_id: String,
    /// Sequence of the record holding the commitment.
    pub record_sequence: u64,
    /// `request` or `response`.
    pub direction: String,
    /// Location, field and occurrence of the value.
    pub location: String,
    /// Field.
    pub field: String,
    /// Occurrence.
    pub occurrence: u32,
    /// Declared category.
    pub category: String,
    /// Key id the record was made with.
    pub personal_key_id: String,
    /// The value, as UTF-8 when it is (else `value_hex` is set and this is empty).
    pub value: String,
    /// The value's bytes, hex, when they are not UTF-8.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value_hex: String,
    /// The salt, hex.
    pub salt: String,
    /// The commitment, hex (as in the record).
    pub commitment: String,
    /// Who disclosed, and for which case (as in the `admin` record).
    pub actor: String,
    /// Case reference.
    pub case_reference: String,
    /// Sequence of the `admin` "personal.disclose" record that recorded the disclosure.
    pub disclosure_sequence: u64,
}

impl PersonalDisclosure {
    /// The disclosed value's bytes.
    pub fn value_bytes(&self) -> Result<Vec<u8>, String> {
        if self.value_hex.is_empty() {
            Ok(self.value.as_bytes().to_vec())
        } else {
            hex::decode(&self.value_hex).map_err(|_| "value_hex is not hex".to_owned())
        }
    }
}

/// The personal values and key id of a `request` or `outcome` record, with its direction.
pub fn personal_values(record: &schema::Record) -> Option<(&'static str, &str, &[PersonalValue])> {
    match &record.kind {
        Some(Kind::Request(r)) => Some(("request", &r.personal_key_id, &r.personal_values)),
        Some(Kind::Outcome(o)) => Some(("response", &o.personal_key_id, &o.personal_values)),
        _ => None,
    }
}

/// Checks a disclosure against the record (already verified to be in the log or bundle) that
/// holds its commitment: same exchange, sequence, direction and key id, a committed value at
/// the stated place, and `SHA-256(tag ‖ salt ‖ value)` equal to its commitment.
pub fn verify_disclosure(
    d: &PersonalDisclosure,
    sequence: u64,
    record: &schema::Record,
) -> Result<(), String> {
    if d.format != DISCLOSURE_FORMAT {
        return Err(format!(
            "format is {:?}, not {DISCLOSURE_FORMAT:?}",
            d.format
        ));
    }
    if record.exchange_id != d.exchange_id || sequence != d.record_sequence {
        return Err("the disclosure names another exchange or record".into());
    }
    let Some((direction, key_id, values)) = personal_values(record) else {
        return Err(format!(
            "record #{sequence} is neither a request nor an outcome"
        ));
    };
    if direction != d.direction || key_id != d.personal_key_id {
        return Err("direction or key id differ from the record's".into());
    }
    let Some(committed) = values
        .iter()
        .find(|v| v.location == d.location && v.field == d.field && v.occurrence == d.occurrence)
    else {
        return Err(format!(
            "record #{sequence} commits no {} value {:?} (occurrence {})",
            d.location, d.field, d.occurrence
        ));
    };
    if hex::encode(&committed.commitment) != d.commitment || committed.category != d.category {
        return Err("commitment or category differ from the record's".into());
    }
    let salt: [u8; 32] = hex::decode(&d.salt)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("salt is not 32 bytes of hex")?;
    if commitment(&salt, &d.value_bytes()?)[..] != committed.commitment[..] {
        return Err("value and salt do not open the commitment".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(&format!(
            "current = \"b\"\n[[key]]\nid = \"a\"\nsecret = \"{}\"\n[[key]]\nid = \"b\"\nsecret = \"{}\"\n",
            "11".repeat(32),
            "22".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn key_files_are_checked() {
        assert_eq!(ring().current().id(), "b");
        assert!(ring().get("a").is_some());
        for (text, needle) in [
            ("current = \"x\"\n", "no key"),
            (
                "current = \"a\"\n[[key]]\nid = \"a\"\nsecret = \"00\"\n",
                "at least 32",
            ),
            (
                "current = \"a\"\n[[key]]\nid = \"a\"\nsecret = \"zz\"\n",
                "not hex",
            ),
            (
                "current = \"a b\"\n[[key]]\nid = \"a b\"\nsecret = \"00\"\n",
                "key[0].id",
            ),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn commit_seal_unseal() {
        let keys = ring();
        let k = keys.current();
        let place = Place {
            direction: "request",
            location: "path",
            field: "nik",
            occurrence: 0,
        };
        let v = k.commit("ex", place, "nik", b"3201010101010001");
        let salt = k.salt("ex", place);
        assert_eq!(commitment(&salt, b"3201010101010001")[..], v.commitment[..]);
        assert_eq!(
            k.unseal("ex", &v.commitment, &v.sealed).unwrap(),
            b"3201010101010001"
        );
        assert!(k.unseal("ex2", &v.commitment, &v.sealed).is_none());
        assert!(keys
            .get("a")
            .unwrap()
            .unseal("ex", &v.commitment, &v.sealed)
            .is_none());
        assert_ne!(
            k.salt(
                "ex",
                Place {
                    occurrence: 1,
                    ..place
                }
            ),
            salt
        );
        assert_eq!(k.fingerprint("nik", b"1"), k.fingerprint("nik", b"1"));
        assert_ne!(
            k.fingerprint("nik", b"1"),
            keys.get("a").unwrap().fingerprint("nik", b"1")
        );
        assert_eq!(k.fingerprint("nik", b"1").len(), 12);
    }

    #[test]
    fn rotation_keeps_old_keys() {
        let dir = penghubung_testkit::dir::temp_dir("keys");
        let path = dir.path().join("keys.toml");
        rotate_key_file(&path, "2026-11").unwrap();
        let first = Keyring::load(&path).unwrap();
        rotate_key_file(&path, "2026-12").unwrap();
        let second = Keyring::load(&path).unwrap();
        assert_eq!(second.current().id(), "2026-12");
        assert_eq!(
            first.current().fingerprint("nik", b"x"),
            second.get("2026-11").unwrap().fingerprint("nik", b"x")
        );
        assert!(rotate_key_file(&path, "2026-12").is_err());
        // A key file others may read is refused.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Keyring::load(&path).unwrap_err().contains("chmod 600"));
    }
}
