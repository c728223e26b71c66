//! JWT test keys (RSA and P-256, generated at run time) and tokens built byte by byte, so a
//! test can sign exactly the header and claims text it means to send.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use serde_json::{json, Value};

/// The test issuer.
pub const ISS: &str = "https://sso.pemda.example/realms/opd";
/// The test audience.
pub const AUD: &str = "penghubung";

/// base64url without padding.
pub fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An RSA key: ring key pair for signing, JWK and public PEM.
pub struct Rsa {
    /// For signing.
    pub pair: RsaKeyPair,
    /// Modulus, big-endian.
    pub n: Vec<u8>,
    /// Public exponent, big-endian.
    pub e: Vec<u8>,
    /// The public key, SPKI PEM.
    pub public_pem: String,
}

/// A fresh RSA-2048 key (slow in debug builds: prefer [`rsa_keys`]).
pub fn rsa_key() -> Rsa {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let k = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let der = k.to_pkcs8_der().unwrap();
    let public_pem = rsa::RsaPublicKey::from(&k)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    Rsa {
        pair: RsaKeyPair::from_pkcs8(der.as_bytes()).unwrap(),
        n: k.n().to_bytes_be(),
        e: k.e().to_bytes_be(),
        public_pem,
    }
}

/// Two RSA keys made once per test binary (key generation is slow in debug builds).
pub fn rsa_keys() -> &'static (Rsa, Rsa) {
    static K: OnceLock<(Rsa, Rsa)> = OnceLock::new();
    K.get_or_init(|| (rsa_key(), rsa_key()))
}

/// A fresh P-256 key.
pub fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let d = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, d.as_ref(), &rng).unwrap()
}

/// The public JWK of an RSA key.
pub fn rsa_jwk(k: &Rsa, kid: &str) -> Value {
    json!({"kty":"RSA","kid":kid,"use":"sig","alg":"RS256","n":b64(&k.n),"e":b64(&k.e)})
}

/// The public JWK of a P-256 key.
pub fn ec_jwk(k: &EcdsaKeyPair, kid: &str) -> Value {
    let p = k.public_key().as_ref();
    json!({"kty":"EC","kid":kid,"crv":"P-256","x":b64(&p[1..33]),"y":b64(&p[33..65])})
}

/// `b64(header).b64(payload)` from the exact JSON texts given.
pub fn message(header: &str, payload: &str) -> String {
    format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()))
}

/// `message.signature` signed RS256.
pub fn sign_rs256(k: &Rsa, header: &str, payload: &str) -> String {
    let m = message(header, payload);
    let mut sig = vec![0; k.pair.public().modulus_len()];
    k.pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            m.as_bytes(),
            &mut sig,
        )
        .unwrap();
    format!("{m}.{}", b64(&sig))
}

/// `message.signature` signed ES256.
pub fn sign_es256(k: &EcdsaKeyPair, header: &str, payload: &str) -> String {
    let m = message(header, payload);
    let sig = k.sign(&SystemRandom::new(), m.as_bytes()).unwrap();
    format!("{m}.{}", b64(sig.as_ref()))
}

/// Standard claims for the test issuer, as compact JSON text.
pub fn claims(extra: &[(&str, Value)]) -> String {
    let n = now();
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "svc-simpeg", "iat": n, "nbf": n, "exp": n + 300, "jti": "j1"});
    for (k, v) in extra {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(*k);
        } else {
            c[*k] = v.clone();
        }
    }
    c.to_string()
}

/// Writes a JWKS file holding `keys`.
pub fn write_jwks(path: &Path, keys: &[Value]) {
    // Write then rename, as an operator's deployment would, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}
