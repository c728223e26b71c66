//! `penghubung catalog export | apply | diff | history | rollback`: the registry's catalogue as
//! TOML, over the admin API (the same service layer, roles and change trail as any other
//! client). The token is read from the `PENGHUBUNG_TOKEN` environment variable, never from the
//! command line.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use penghubung_registry::Catalogue;
use tokio::net::TcpStream;

/// What `catalog` does.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Print the registry's catalogue as TOML (or write it to `-o FILE`).
    Export {
        /// Output file; standard output when absent.
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
    },
    /// Replace the registry's catalogue with a TOML file (Admin Platform): a new signed
    /// revision.
    Apply {
        /// The TOML catalogue.
        file: std::path::PathBuf,
    },
    /// What applying a TOML file would change: entries added, removed and changed.
    Diff {
        /// The TOML catalogue.
        file: std::path::PathBuf,
    },
    /// The signed revisions, oldest first.
    History,
    /// Restore the catalogue of a signed revision as a new revision (Admin Platform).
    Rollback {
        /// The revision (`N` or `rev-N`).
        revision: String,
    },
    /// Export every Layanan exposed to SPL Provinsi or the national SPLP as one OpenAPI 3
    /// document (JSON), for the peer's publisher portal (offline, on a config file).
    Openapi {
        /// The TOML config file (validated first).
        #[arg(short, long)]
        config: std::path::PathBuf,
        /// Only the Layanan a peer of this tier may call (`provinsi` or `pusat`).
        #[arg(long, value_parser = ["provinsi", "pusat"])]
        tier: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
    },
}

/// The admin listener to talk to.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The admin listener's address.
    #[arg(long, global = true, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
}

async fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    let token = std::env::var("PENGHUBUNG_TOKEN")
        .map_err(|_| "set PENGHUBUNG_TOKEN to an operator's session or API token".to_owned())?;
    let stream = TcpStream::connect(admin)
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, admin.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        let field = value["field"].as_str().filter(|f| !f.is_empty());
        Err(format!(
            "{status}: {}{}",
            field.map(|f| format!("{f}: ")).unwrap_or_default(),
            value["detail"].as_str().unwrap_or("no detail")
        ))
    }
}

/// Reads a TOML catalogue file.
pub fn read_toml(path: &std::path::Path) -> Result<Catalogue, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut c: Catalogue = toml::from_str(&text)
        .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))?;
    c.normalise();
    Ok(c)
}

/// The catalogue as TOML.
pub fn to_toml(c: &Catalogue) -> Result<String, String> {
    toml::to_string_pretty(c).map_err(|e| e.to_string())
}

/// Entries added (`+`), removed (`-`) and changed (`~`) from `old` to `new`, one a line.
pub fn diff(old: &Catalogue, new: &Catalogue) -> Vec<String> {
    fn keyed<T: serde::Serialize>(
        items: &[T],
        key: impl Fn(&T) -> String,
    ) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|i| {
                (
                    key(i),
                    penghubung_registry::canonical_json(i).unwrap_or_default(),
                )
            })
            .collect()
    }
    let mut out = Vec::new();
    let mut compare = |kind: &str, a: BTreeMap<String, String>, b: BTreeMap<String, String>| {
        for (k, v) in &b {
            match a.get(k) {
                None => out.push(format!("+ {kind} {k}")),
                Some(old) if old != v => out.push(format!("~ {kind} {k}")),
                Some(_) => {}
            }
        }
        for k in a.keys().filter(|k| !b.contains_key(*k)) {
            out.push(format!("- {kind} {k}"));
        }
    };
    compare(
        "opd",
        keyed(&old.opd, |o| o.code.clone()),
        keyed(&new.opd, |o| o.code.clone()),
    );
    compare(
        "layanan",
        keyed(&old.layanan, |l| l.id.clone()),
        keyed(&new.layanan, |l| l.id.clone()),
    );
    compare(
        "aplikasi",
        keyed(&old.aplikasi, |a| a.id.clone()),
        keyed(&new.aplikasi, |a| a.id.clone()),
    );
    compare(
        "grant",
        keyed(&old.grant, |g| g.id.clone()),
        keyed(&new.grant, |g| g.id.clone()),
    );
    out
}

async fn current(admin: SocketAddr) -> Result<Catalogue, String> {
    let v = call(admin, "GET", "/api/v1/catalogue", None).await?;
    if v["source"] != "registry" {
        return Err(
            "the catalogue is the gateway's config file (admin.catalogue = \"file\")".into(),
        );
    }
    serde_json::from_value(v["catalogue"].clone()).map_err(|e| e.to_string())
}

/// Runs a `catalog` command against the admin listener; the text to print.
pub async fn run(command: CatalogCommand, remote: Remote) -> Result<String, String> {
    let admin = remote.admin;
    match command {
        CatalogCommand::Export { out } => {
            let text = to_toml(&current(admin).await?)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
                    Ok(format!("written to {}", path.display()))
                }
                None => Ok(text),
            }
        }
        CatalogCommand::Apply { file } => {
            let c = read_toml(&file)?;
            let body = serde_json::to_value(&c).map_err(|e| e.to_string())?;
            let v = call(admin, "POST", "/api/v1/catalogue", Some(body)).await?;
            Ok(format!(
                "applied: {}",
                v["revision"].as_str().unwrap_or("?")
            ))
        }
        CatalogCommand::Diff { file } => {
            let lines = diff(&current(admin).await?, &read_toml(&file)?);
            Ok(if lines.is_empty() {
                "no change".into()
            } else {
                lines.join("\n")
            })
        }
        CatalogCommand::History => {
            let v = call(admin, "GET", "/api/v1/revisions", None).await?;
            let lines: Vec<String> = v["revisions"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|r| {
                            format!(
                                "{}  {}  {}  {}  {}",
                                r["id"].as_str().unwrap_or("?"),
                                r["created_at"].as_str().unwrap_or("?"),
                                r["actor"].as_str().unwrap_or("?"),
                                r["action"].as_str().unwrap_or("?"),
                                if r["signed"] == true {
                                    "signed"
                                } else {
                                    "unsigned"
                                }
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(lines.join("\n"))
        }
        CatalogCommand::Rollback { revision } => {
            let n: i64 = revision
                .trim_start_matches("rev-")
                .parse()
                .map_err(|_| format!("{revision:?} is not a revision (N or rev-N)"))?;
            let v = call(
                admin,
                "POST",
                "/api/v1/rollback",
                Some(serde_json::json!({"revision": n})),
            )
            .await?;
            Ok(format!(
                "rolled back to rev-{n}: {}",
                v["revision"].as_str().unwrap_or("?")
            ))
        }
        CatalogCommand::Openapi { config, tier, .. } => {
            // `main` answers this one offline; kept here so `run` covers every command.
            super::catalog_openapi(&config, tier.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalogue_round_trips_through_toml_and_diffs_by_entry() {
        let mut c: Catalogue = serde_json::from_value(serde_json::json!({
            "opd": [{"code": "bkd", "name": "BKD", "domain": "bkd.contoh.go.id"}],
            "layanan": [{
                "id": "nik", "owner_opd": "bkd", "name": "NIK", "version": "v1",
                "classification": "terbatas", "exposure": "internal", "state": "draf",
                "submitted_by": "a", "spec": {"hosts": ["*"], "route": [{"path": "/nik/*"}]},
                "upstream": {"targets": ["127.0.0.1:1"]},
            }],
        }))
        .expect("a catalogue");
        c.normalise();
        let text = to_toml(&c).expect("serialises");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).expect("writes");
        let back = read_toml(&path).expect("parses");
        assert_eq!(back, c);
        assert!(diff(&c, &back).is_empty());
        let mut changed = back.clone();
        changed.layanan[0].name = "Cek NIK".into();
        changed.opd.push(penghubung_registry::Opd {
            code: "dukcapil".into(),
            name: "D".into(),
            domain: "d.go.id".into(),
        });
        assert_eq!(diff(&c, &changed), ["+ opd dukcapil", "~ layanan nik"]);
        assert_eq!(diff(&changed, &c), ["- opd dukcapil", "~ layanan nik"]);
        std::fs::write(&path, "[[opd]]\ncode = 5\n").expect("writes");
        assert!(read_toml(&path).expect_err("bad").contains("c.toml"));
    }
}
