//! Secrets issued once: API keys, client secrets and passwords. The registry keeps only their
//! hashes (SHA-256 for high-entropy API keys, argon2 for client secrets and passwords); the
//! plain value is returned to the caller once and never stored.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore as _;

/// A new random secret: 32 bytes from the OS generator, URL-safe hex with a readable prefix.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// Argon2id PHC string of `secret` with the library's default cost (m=19456 KiB, t=2, p=1).
pub fn hash_password(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `secret` matches the argon2 PHC string `hash` (a malformed hash never matches).
pub fn verify_password(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashes_verify() {
        let a = generate("pk");
        assert_ne!(a, generate("pk"));
        assert!(a.starts_with("pk_") && a.len() == 67);
        let h = hash_password("rahasia").expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("rahasia", &h));
        assert!(!verify_password("salah", &h));
        assert!(!verify_password("rahasia", "not a hash"));
    }
}
