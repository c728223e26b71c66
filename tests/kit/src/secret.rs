//! Secrets in the forms the configuration stores them: API keys as SHA-256, client secrets as
//! argon2 PHC strings.

use sha2::Digest as _;

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// An argon2 PHC hash of `secret` with a random salt.
pub fn argon2_hash(secret: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .unwrap()
        .to_string()
}
