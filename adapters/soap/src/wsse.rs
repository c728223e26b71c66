//! WS-Security UsernameToken toward legacy back ends.
//!
//! The password comes from the operator (a secret file or an environment variable, read when
//! the config is built), never from the client: a client envelope that carries its own
//! `wsse:Security` header to such a service is refused (`soap_client_security`), and a back
//! end's answer that contains the password is never passed to the client (502).

use base64::Engine;
use rand::RngCore;

use crate::envelope::{Envelope, NS_WSSE};
use crate::xml::escape;

const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const NONCE_B64: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// A UsernameToken's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct UsernameToken {
    /// User name.
    pub username: String,
    password: String,
}

impl std::fmt::Debug for UsernameToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsernameToken")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl UsernameToken {
    /// Credentials given directly (tests, fuzzing; the gateway uses [`UsernameToken::load`]).
    pub fn new(username: &str, password: &str) -> UsernameToken {
        UsernameToken {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Credentials with the password from a file (one trailing newline removed) or an
    /// environment variable; exactly one of the two must be given.
    pub fn load(
        username: &str,
        password_file: Option<&std::path::Path>,
        password_env: Option<&str>,
    ) -> Result<UsernameToken, String> {
        let password = match (password_file, password_env) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("password_file {}: {e}", path.display()))?;
                text.strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_owned()
            }
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("password_env: environment variable {var} is not set"))?,
            _ => return Err("give exactly one of password_file and password_env".into()),
        };
        if password.is_empty() {
            return Err("the UsernameToken password is empty".into());
        }
        Ok(UsernameToken {
            username: username.to_owned(),
            password,
        })
    }

    /// Whether `bytes` contain the password (a back end echoing it).
    pub fn appears_in(&self, bytes: &[u8]) -> bool {
        let needle = self.password.as_bytes();
        bytes.windows(needle.len()).any(|w| w == needle)
            || bytes
                .windows(escape(&self.password).len())
                .any(|w| w == escape(&self.password).as_bytes())
    }

    /// The `wsse:Security` header element (fresh nonce and creation time).
    pub fn header(&self) -> String {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
        let created = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        format!(
            "<wsse:Security xmlns:wsse=\"{NS_WSSE}\" xmlns:wsu=\"{NS_WSU}\"><wsse:UsernameToken><wsse:Username>{}</wsse:Username><wsse:Password Type=\"{PASSWORD_TEXT}\">{}</wsse:Password><wsse:Nonce EncodingType=\"{NONCE_B64}\">{nonce}</wsse:Nonce><wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>",
            escape(&self.username),
            escape(&self.password)
        )
    }

    /// The envelope `bytes` (read as `envelope`) with the Security header added: into the
    /// existing `Header`, or in a new one before `Body`. The client's bytes are otherwise kept.
    pub fn inject(&self, bytes: &[u8], envelope: &Envelope) -> Vec<u8> {
        let security = self.header();
        let root = &envelope.root;
        let tag = |local: &str| {
            if root.prefix.is_empty() {
                local.to_owned()
            } else {
                format!("{}:{local}", root.prefix)
            }
        };
        let mut out = Vec::with_capacity(bytes.len() + security.len() + 64);
        match envelope.header() {
            Some(h) if bytes[..h.start_end].ends_with(b"/>") => {
                let name = if h.prefix.is_empty() {
                    h.local.clone()
                } else {
                    format!("{}:{}", h.prefix, h.local)
                };
                let open = String::from_utf8_lossy(&bytes[h.start..h.start_end - 2]);
                out.extend_from_slice(&bytes[..h.start]);
                out.extend_from_slice(
                    format!("{}>{security}</{name}>", open.trim_end()).as_bytes(),
                );
                out.extend_from_slice(&bytes[h.start_end..]);
            }
            Some(h) => {
                out.extend_from_slice(&bytes[..h.start_end]);
                out.extend_from_slice(security.as_bytes());
                out.extend_from_slice(&bytes[h.start_end..]);
            }
            None => {
                let at = envelope.body().map_or(root.start_end, |b| b.start);
                out.extend_from_slice(&bytes[..at]);
                let name = tag("Header");
                out.extend_from_slice(format!("<{name}>{security}</{name}>").as_bytes());
                out.extend_from_slice(&bytes[at..]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Version;
    use crate::xml::Limits;

    fn token() -> UsernameToken {
        UsernameToken {
            username: "gw".into(),
            password: "s3cr<t".into(),
        }
    }

    #[test]
    fn injects_into_every_header_shape() {
        let ns = Version::V11.namespace();
        for doc in [
            format!("<s:Envelope xmlns:s=\"{ns}\"><s:Body><Op/></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ns}\"><s:Header/><s:Body><Op/></s:Body></s:Envelope>"),
            format!("<s:Envelope xmlns:s=\"{ns}\"><s:Header><x:T xmlns:x=\"urn:t\">1</x:T></s:Header><s:Body><Op/></s:Body></s:Envelope>"),
            format!("<Envelope xmlns=\"{ns}\"><Body><Op xmlns=\"\"/></Body></Envelope>"),
        ] {
            let e = Envelope::read(doc.as_bytes(), Version::V11, &Limits::default()).expect(&doc);
            let out = token().inject(doc.as_bytes(), &e);
            let again = Envelope::read(&out, Version::V11, &Limits::default()).expect("still an envelope");
            assert!(again.has_security_header(), "{}", String::from_utf8_lossy(&out));
            assert_eq!(again.operation, "Op");
            let sec = again.header().and_then(|h| h.child("Security")).expect("security");
            let ut = sec.child("UsernameToken").expect("token");
            assert_eq!(ut.child("Password").map(|p| p.text.as_str()), Some("s3cr<t"));
            assert!(token().appears_in(&out));
            assert!(!token().appears_in(doc.as_bytes()));
        }
    }

    #[test]
    fn password_sources() {
        let dir = std::env::temp_dir().join(format!("wsse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "rahasia\n").expect("write");
        let t = UsernameToken::load("u", Some(&file), None).expect("file");
        assert!(t.appears_in(b"xx rahasia xx"));
        assert!(!format!("{t:?}").contains("rahasia"));
        assert!(UsernameToken::load("u", None, Some("PENGHUBUNG_TEST_UNSET_VARIABLE")).is_err());
        assert!(UsernameToken::load("u", Some(&file), Some("X")).is_err());
        assert!(UsernameToken::load("u", Some(&dir.join("missing")), None).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
