//! Gateway configurations for the tests: [`Cfg`], the data-plane builder (one anonymous service
//! `demo`), and [`access_config`], the access-control setup (OPDs, applications, grants, rate
//! limits, evidence).

use std::net::SocketAddr;
use std::path::Path;

use penghubung_testkit::secret::{argon2_hash, sha256_hex};

/// The API key of application `simpeg` (stored in the config only as its SHA-256).
pub const KEY: &str = "kunci-rahasia-simpeg";
/// The API key of application `lain`, which holds no grant.
pub const KEY_NO_GRANT: &str = "kunci-tanpa-grant";
/// OAuth2 client of `simpeg`.
pub const CLIENT_ID: &str = "simpeg-client";
/// Its secret (stored as an argon2 PHC hash).
pub const CLIENT_SECRET: &str = "rahasia-klien-simpeg";

/// Builds a gateway configuration: one cleartext listener, admin, one upstream group `app`,
/// service `demo` on hosts `localhost`, `127.0.0.1` and `other.example` with routes:
/// `/demo/admin/*` denied, `/demo/*` forwarded, `/stream/*` streamed, `/small/*` with a 1 KiB
/// body limit.
#[derive(Debug, Clone, Default)]
pub struct Cfg {
    pub targets: Vec<String>,
    pub limits: Vec<String>,
    pub upstream: Vec<String>,
    pub listener: Vec<String>,
    /// Raw TOML appended to the `[[listener]]` table (e.g. a `[listener.tls]` table).
    pub listener_tables: String,
    /// Raw TOML appended at the end (more routes of `demo`).
    pub tail: String,
}

impl Cfg {
    pub fn new(targets: &[SocketAddr]) -> Cfg {
        Cfg {
            targets: targets.iter().map(ToString::to_string).collect(),
            ..Cfg::default()
        }
    }
    pub fn limit(mut self, line: &str) -> Cfg {
        self.limits.push(line.to_owned());
        self
    }
    pub fn upstream(mut self, line: &str) -> Cfg {
        self.upstream.push(line.to_owned());
        self
    }
    pub fn listener(mut self, line: &str) -> Cfg {
        self.listener.push(line.to_owned());
        self
    }
    pub fn tail(mut self, text: &str) -> Cfg {
        self.tail.push_str(text);
        self
    }
    pub fn render(&self) -> String {
        let targets = self
            .targets
            .iter()
            .map(|t| format!("{t:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let has =
            |lines: &[String], key: &str| lines.iter().any(|l| l.trim_start().starts_with(key));
        let mut limits = self.limits.clone();
        if !has(&limits, "drain_timeout_secs") {
            limits.push("drain_timeout_secs = 1".into());
        }
        let mut upstream = self.upstream.clone();
        for (k, v) in [
            ("connect_timeout_ms", "1000"),
            ("response_head_timeout_ms", "3000"),
            ("response_timeout_ms", "10000"),
        ] {
            if !has(&upstream, k) {
                upstream.push(format!("{k} = {v}"));
            }
        }
        format!(
            r#"node_id = "e2e"

# Every exchange is recorded, as in production (in the test's own temp dir).
[evidence]
dir = "@EVIDENCE_DIR@"

[[listener]]
name = "main"
address = "127.0.0.1:0"
{listener}
{listener_tables}

[admin]
address = "127.0.0.1:0"

[limits]
{limits}

[[upstream]]
name = "app"
targets = [{targets}]
{upstream}

[[service]]
id = "demo"
hosts = ["localhost", "127.0.0.1", "other.example"]
upstream = "app"

# These suites test the data plane; access control has its own (access_config).
[service.auth]
anonymous = true

[[service.route]]
path = "/demo/admin/*"
action = "deny"

[[service.route]]
path = "/demo/*"

[[service.route]]
path = "/stream/*"
stream_body = true

[[service.route]]
path = "/small/*"
body_bytes = 1024
{tail}
"#,
            listener = self.listener.join("\n"),
            listener_tables = self.listener_tables,
            limits = limits.join("\n"),
            upstream = upstream.join("\n"),
            tail = self.tail,
        )
    }
}

/// Options of [`access_config`].
#[derive(Default)]
pub struct AccessOpts<'a> {
    /// Traffic listener address (`127.0.0.1:0` when empty).
    pub listen: String,
    /// Admin address (`127.0.0.1:0` when empty).
    pub admin: String,
    /// Evidence directory; `None` disables evidence.
    pub evidence: Option<&'a Path>,
    /// Extra `[evidence]` keys (e.g. a signer table must come after, see `tail`).
    pub evidence_extra: &'a str,
    /// `[redis]` table text.
    pub redis: &'a str,
    /// One `[[auth.issuers]]` table; when given, application `simpeg` is also the JWT subject
    /// `svc-simpeg` of the test kit's issuer ([`penghubung_testkit::jwt::ISS`]).
    pub jwt_issuer: &'a str,
    /// Text appended at the end.
    pub tail: &'a str,
}

/// The access-control test configuration: OPDs, applications `simpeg` (API key [`KEY`],
/// client [`CLIENT_ID`]) and `lain` (API key [`KEY_NO_GRANT`], no grant), and services on these
/// hosts (all served by `upstream`):
/// - `open.test`: anonymous; `/open/*` forwarded, `/open/admin/*` denied.
/// - `data.test`: credentials required, `assertion = true`; routes `/data/*` and `/extra/*`
///   (GET, POST, DELETE); simpeg's grant covers GET and POST on `/data/*` only.
/// - `wso2.test`: `fault_style = "wso2"`.
/// - `rahasia.test`: classification `rahasia` (mTLS only).
/// - `terbatas.test`: classification `terbatas`.
/// - `limited.test`: grant with `rate = "2/s"`.
/// - `expired.test`: grant expired in 2020.
/// - `shared.test`: grant with `rate = "3/min"` (shared through Redis when `redis` is given).
pub fn access_config(upstream: SocketAddr, o: &AccessOpts<'_>) -> String {
    let listen = if o.listen.is_empty() {
        "127.0.0.1:0"
    } else {
        &o.listen
    };
    let admin = if o.admin.is_empty() {
        "127.0.0.1:0"
    } else {
        &o.admin
    };
    let evidence = match o.evidence {
        Some(dir) => format!(
            "[evidence]\ndir = \"{}\"\ncheckpoint_interval_secs = 3600\n{}\n",
            dir.display(),
            o.evidence_extra
        ),
        None => "[evidence]\nenabled = false\n".to_owned(),
    };
    let simpeg_jwt = if o.jwt_issuer.is_empty() {
        String::new()
    } else {
        format!(
            "jwt = [{{ issuer = {:?}, sub = \"svc-simpeg\" }}]",
            penghubung_testkit::jwt::ISS
        )
    };
    let key = sha256_hex(KEY.as_bytes());
    let key2 = sha256_hex(KEY_NO_GRANT.as_bytes());
    let secret = argon2_hash(CLIENT_SECRET);
    let consent = r#"consent = { by = "Kepala Dinas", at = "2026-01-05T09:00:00+07:00" }"#;
    let mut services = String::new();
    for (id, class, extra_auth) in [
        ("data", "terbuka", "assertion = true"),
        ("wso2", "terbuka", "fault_style = \"wso2\""),
        ("rahasia", "rahasia", ""),
        ("terbatas", "terbatas", ""),
        ("limited", "terbuka", ""),
        ("expired", "terbuka", ""),
        ("shared", "terbuka", ""),
    ] {
        services.push_str(&format!(
            r#"
[[service]]
id = "{id}"
owner_opd = "disdukcapil"
hosts = ["{id}.test"]
upstream = "up"
classification = "{class}"

[service.auth]
{extra_auth}

[[service.route]]
path = "/{id}/*"
methods = ["GET", "POST", "DELETE"]
"#
        ));
        if id == "data" {
            services.push_str(
                "\n[[service.route]]\npath = \"/extra/*\"\nmethods = [\"GET\", \"POST\"]\n",
            );
        }
    }
    let mut grants = String::new();
    for (id, extra) in [
        (
            "data",
            r#"cakupan = [{ methods = ["GET", "POST"], paths = ["/data/*"] }]"#,
        ),
        ("wso2", ""),
        ("rahasia", ""),
        ("terbatas", ""),
        ("limited", r#"limits = { rate = "2/s" }"#),
        ("expired", r#"valid_until = "2020-01-01T00:00:00Z""#),
        ("shared", r#"limits = { rate = "3/min" }"#),
    ] {
        // Every grant but `data`'s covers GET and POST on its whole service.
        let cakupan = if id == "data" {
            String::new()
        } else {
            format!(r#"cakupan = [{{ methods = ["GET", "POST"], paths = ["/{id}/*"] }}]"#)
        };
        grants.push_str(&format!(
            r#"
[[grant]]
id = "simpeg-{id}"
application = "simpeg"
service = "{id}"
tujuan = "Tujuan uji {id}"
{cakupan}
{extra}
{consent}
"#
        ));
    }
    format!(
        r#"
node_id = "pipeline-test"

[[listener]]
name = "main"
address = "{listen}"

[admin]
address = "{admin}"

{evidence}

[auth.token_endpoint]
enabled = true

{jwt_issuer}

{redis}

[[upstream]]
name = "up"
targets = ["{upstream}"]

[[service]]
id = "open"
owner_opd = "diskominfo"
hosts = ["open.test"]
upstream = "up"

[service.auth]
anonymous = true

[[service.route]]
path = "/open/admin/*"
action = "deny"

[[service.route]]
path = "/open/*"
methods = ["GET", "POST"]
{services}

[[opd]]
id = "diskominfo"
name = "Dinas Komunikasi dan Informatika"

[[opd]]
id = "disdukcapil"
name = "Dinas Kependudukan dan Pencatatan Sipil"

[[opd]]
id = "bkd"
name = "Badan Kepegawaian Daerah"

[[application]]
id = "simpeg"
opd = "bkd"
name = "SIMPEG BKD"

[application.credentials]
client_id = "{CLIENT_ID}"
client_secret_hash = "{secret}"
api_key_sha256 = ["{key}"]
{simpeg_jwt}

[[application]]
id = "lain"
opd = "bkd"
name = "Aplikasi tanpa grant"

[application.credentials]
api_key_sha256 = ["{key2}"]
{grants}
{tail}
"#,
        redis = o.redis,
        jwt_issuer = o.jwt_issuer,
        tail = o.tail,
    )
}

/// A gateway whose catalogue is an empty registry under `dir` (`[admin] catalogue = "registry"`),
/// with checkpoints signed by `signer` (catalogue revisions are signed through it too).
pub fn registry_config(
    node_id: &str,
    dir: &Path,
    signer: &penghubung_testkit::pki::SignerFiles,
) -> String {
    format!(
        r#"node_id = "{node_id}"
[evidence]
dir = "@EVIDENCE_DIR@"
checkpoint_interval_secs = 3600
[evidence.signer]
mode = "key_file"
key = "{}"
certificate_chain = "{}"

[[listener]]
name = "main"
address = "127.0.0.1:0"

[admin]
address = "127.0.0.1:0"
registry = "{}"
catalogue = "registry"
"#,
        signer.key.display(),
        signer.chain.display(),
        dir.join("registry.db").display()
    )
}
