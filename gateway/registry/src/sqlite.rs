//! The embedded SQLite store.

use std::borrow::Cow;
use std::path::Path;

use futures_util::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::*;
use crate::store::{Store, StoreError};

/// The versioned migrations, oldest first. A released migration is never edited: a change to
/// the schema is a new file and a new entry here.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "registry",
    include_str!("../migrations/0001_registry.sql"),
)];

#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*name),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The registry in one SQLite file (WAL journal, full sync: a committed change survives a
/// power cut).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| corrupt("encode", e))
}

fn time_text(t: OffsetDateTime) -> Result<String, StoreError> {
    t.format(&Rfc3339).map_err(|e| corrupt("time", e))
}

fn parse_time(what: &str, s: &str) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| corrupt(what, e))
}

impl SqliteStore {
    /// Opens (creating it if needed) the registry file at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| db(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| db(format!("{}: {e}", path.display())))?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet.
    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = Migrator::new(Embedded).await.map_err(db)?;
        migrator.run(&self.pool).await.map_err(db)
    }

    /// The schema version in force (the latest migration applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn latest_revision(executor: impl sqlx::SqliteExecutor<'_>) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM revision")
            .fetch_one(executor)
            .await
            .map_err(db)
    }

    fn revision_from(row: &sqlx::sqlite::SqliteRow) -> Result<Revision, StoreError> {
        let created: String = row.get("created_at");
        Ok(Revision {
            id: row.get("id"),
            created_at: parse_time("revision.created_at", &created)?,
            actor: row.get("actor"),
            action: row.get("action"),
            body: row.get("body"),
            sha256: row.get("sha256"),
            signature: row.get("signature"),
            signature_algorithm: row.get("signature_algorithm"),
            signer_certificate: row.get("signer_certificate"),
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn catalogue(&self) -> Result<(Catalogue, i64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut c = Catalogue::default();
        for row in sqlx::query("SELECT code, name, domain FROM opd ORDER BY code")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
        {
            c.opd.push(Opd {
                code: row.get("code"),
                name: row.get("name"),
                domain: row.get("domain"),
            });
        }
        for row in sqlx::query(
            "SELECT id, owner_opd, name, version, classification, exposure, state, submitted_by, \
             spec, upstream, approval FROM layanan ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        {
            let state: String = row.get("state");
            let approval: Option<String> = row.get("approval");
            c.layanan.push(Layanan {
                id: row.get("id"),
                owner_opd: row.get("owner_opd"),
                name: row.get("name"),
                version: row.get("version"),
                classification: row.get("classification"),
                exposure: row.get("exposure"),
                state: LayananState::parse(&state)
                    .ok_or_else(|| corrupt("layanan.state", &state))?,
                submitted_by: row.get("submitted_by"),
                spec: json("layanan.spec", row.get("spec"))?,
                upstream: json("layanan.upstream", row.get("upstream"))?,
                approval: approval.map(|a| json("layanan.approval", &a)).transpose()?,
            });
        }
        for row in sqlx::query(
            "SELECT id, owner_opd, name, kind, credentials FROM application ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        {
            let kind: String = row.get("kind");
            c.aplikasi.push(Aplikasi {
                id: row.get("id"),
                owner_opd: row.get("owner_opd"),
                name: row.get("name"),
                kind: AppKind::parse(&kind).ok_or_else(|| corrupt("application.kind", &kind))?,
                credentials: json("application.credentials", row.get("credentials"))?,
            });
        }
        for row in sqlx::query("SELECT body FROM grant_ ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
        {
            c.grant.push(json("grant", row.get("body"))?);
        }
        let latest = Self::latest_revision(&mut *tx).await?;
        tx.commit().await.map_err(db)?;
        Ok((c, latest))
    }

    async fn commit(
        &self,
        based_on: i64,
        c: &Catalogue,
        revision: &Revision,
    ) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE semantics: the first write takes the lock, the check below sees the
        // latest committed revision.
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM grant_")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let found = Self::latest_revision(&mut *tx).await?;
        if found != based_on || revision.id != based_on + 1 {
            return Err(StoreError::Conflict {
                expected: based_on,
                found,
            });
        }
        for table in ["application", "layanan", "opd"] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for o in &c.opd {
            sqlx::query("INSERT INTO opd (code, name, domain) VALUES (?, ?, ?)")
                .bind(&o.code)
                .bind(&o.name)
                .bind(&o.domain)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        for l in &c.layanan {
            sqlx::query(
                "INSERT INTO layanan (id, owner_opd, name, version, classification, exposure, \
                 state, submitted_by, spec, upstream, approval) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&l.id)
            .bind(&l.owner_opd)
            .bind(&l.name)
            .bind(&l.version)
            .bind(&l.classification)
            .bind(&l.exposure)
            .bind(l.state.as_str())
            .bind(&l.submitted_by)
            .bind(to_json(&l.spec)?)
            .bind(to_json(&l.upstream)?)
            .bind(l.approval.as_ref().map(to_json).transpose()?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for a in &c.aplikasi {
            sqlx::query(
                "INSERT INTO application (id, owner_opd, name, kind, credentials) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&a.id)
            .bind(&a.owner_opd)
            .bind(&a.name)
            .bind(a.kind.as_str())
            .bind(to_json(&a.credentials)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for g in &c.grant {
            sqlx::query(
                "INSERT INTO grant_ (id, application, layanan, tujuan, requested_by, revoked, body) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&g.id)
            .bind(&g.application)
            .bind(&g.layanan)
            .bind(&g.tujuan)
            .bind(&g.requested_by)
            .bind(g.revoked)
            .bind(to_json(g)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO revision (id, created_at, actor, action, body, sha256, signature, \
             signature_algorithm, signer_certificate) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(revision.id)
        .bind(time_text(revision.created_at)?)
        .bind(&revision.actor)
        .bind(&revision.action)
        .bind(&revision.body)
        .bind(&revision.sha256)
        .bind(&revision.signature)
        .bind(&revision.signature_algorithm)
        .bind(&revision.signer_certificate)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn revisions(&self) -> Result<Vec<Revision>, StoreError> {
        sqlx::query("SELECT * FROM revision ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .iter()
            .map(Self::revision_from)
            .collect()
    }

    async fn revision(&self, id: i64) -> Result<Option<Revision>, StoreError> {
        sqlx::query("SELECT * FROM revision WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .as_ref()
            .map(Self::revision_from)
            .transpose()
    }

    async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT username FROM operator ORDER BY username")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut out = Vec::new();
        for name in names {
            if let Some(o) = self.operator(&name).await? {
                out.push(o);
            }
        }
        Ok(out)
    }

    async fn operator(&self, username: &str) -> Result<Option<Operator>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT username, display_name, password_hash, disabled, created_at FROM operator \
             WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let mut roles = Vec::new();
        for r in sqlx::query(
            "SELECT role, opd, valid_from, valid_until FROM operator_role WHERE username = ? \
             ORDER BY role, opd",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        {
            let role: String = r.get("role");
            let from: Option<String> = r.get("valid_from");
            let until: Option<String> = r.get("valid_until");
            roles.push(RoleBinding {
                role: Role::parse(&role).ok_or_else(|| corrupt("operator_role.role", &role))?,
                opd: r.get("opd"),
                valid_from: from.map(|t| parse_time("valid_from", &t)).transpose()?,
                valid_until: until.map(|t| parse_time("valid_until", &t)).transpose()?,
            });
        }
        let created: String = row.get("created_at");
        Ok(Some(Operator {
            username: row.get("username"),
            display_name: row.get("display_name"),
            password_hash: row.get("password_hash"),
            disabled: row.get("disabled"),
            created_at: parse_time("operator.created_at", &created)?,
            roles,
        }))
    }

    async fn put_token(&self, t: &ApiToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_token (sha256, username, name, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.sha256)
        .bind(&t.username)
        .bind(&t.name)
        .bind(time_text(t.created_at)?)
        .bind(time_text(t.expires_at)?)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn token(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT sha256, username, name, created_at, expires_at FROM api_token WHERE sha256 = ?",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        else {
            return Ok(None);
        };
        let created: String = row.get("created_at");
        let expires: String = row.get("expires_at");
        Ok(Some(ApiToken {
            sha256: row.get("sha256"),
            username: row.get("username"),
            name: row.get("name"),
            created_at: parse_time("api_token.created_at", &created)?,
            expires_at: parse_time("api_token.expires_at", &expires)?,
        }))
    }

    async fn put_operator(&self, o: &Operator) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO operator (username, display_name, password_hash, disabled, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(username) DO UPDATE SET \
             display_name = excluded.display_name, password_hash = excluded.password_hash, \
             disabled = excluded.disabled",
        )
        .bind(&o.username)
        .bind(&o.display_name)
        .bind(&o.password_hash)
        .bind(o.disabled)
        .bind(time_text(o.created_at)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM operator_role WHERE username = ?")
            .bind(&o.username)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        for r in &o.roles {
            sqlx::query(
                "INSERT INTO operator_role (username, role, opd, valid_from, valid_until) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&o.username)
            .bind(r.role.as_str())
            .bind(&r.opd)
            .bind(r.valid_from.map(time_text).transpose()?)
            .bind(r.valid_until.map(time_text).transpose()?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Catalogue {
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        Catalogue {
            opd: vec![Opd {
                code: "dukcapil".into(),
                name: "Dinas Kependudukan".into(),
                domain: "dukcapil.contoh.go.id".into(),
            }],
            layanan: vec![Layanan {
                id: "nik".into(),
                owner_opd: "dukcapil".into(),
                name: "Cek NIK".into(),
                version: "1".into(),
                classification: "terbatas".into(),
                exposure: "internal".into(),
                state: LayananState::Aktif,
                submitted_by: "budi".into(),
                spec: serde_json::json!({"hosts": ["*"]}),
                upstream: serde_json::json!({"targets": ["127.0.0.1:1"]}),
                approval: Some(Approval {
                    id: "kl-1".into(),
                    approver: "sari".into(),
                    date: now,
                    letter_number: "800/1/2026".into(),
                    conditions: String::new(),
                    expires_at: now + time::Duration::days(365),
                }),
            }],
            aplikasi: vec![Aplikasi {
                id: "simpeg".into(),
                owner_opd: "dukcapil".into(),
                name: "SIMPEG".into(),
                kind: AppKind::Umum,
                credentials: Credentials::default(),
            }],
            grant: vec![Grant {
                id: "g1".into(),
                application: "simpeg".into(),
                layanan: "nik".into(),
                tujuan: "verifikasi".into(),
                cakupan: serde_json::json!([{"methods": ["GET"], "paths": ["/nik/*"]}]),
                valid_from: None,
                valid_until: None,
                limits: None,
                requested_by: "ani".into(),
                consent: None,
                revoked: false,
            }],
        }
    }

    fn revision(id: i64, c: &Catalogue) -> Revision {
        let body = crate::canonical_json(c).expect("json");
        Revision {
            id,
            created_at: OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns"),
            actor: "t".into(),
            action: "test".into(),
            sha256: crate::sha256_hex(body.as_bytes()),
            body,
            signature: Vec::new(),
            signature_algorithm: String::new(),
            signer_certificate: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_committed_catalogue_reads_back_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sub/registry.db");
        let store = SqliteStore::open(&path).await.expect("opens");
        assert_eq!(store.schema_version().await.expect("version"), 1);
        assert_eq!(
            store.catalogue().await.expect("reads"),
            (Catalogue::default(), 0)
        );
        let c = sample();
        store
            .commit(0, &c, &revision(1, &c))
            .await
            .expect("commits");
        drop(store);
        let store = SqliteStore::open(&path).await.expect("reopens");
        let (read, latest) = store.catalogue().await.expect("reads");
        assert_eq!(read, c);
        assert_eq!(latest, 1);
        let revs = store.revisions().await.expect("history");
        assert_eq!(revs.len(), 1);
        assert_eq!(store.revision(1).await.expect("one"), Some(revs[0].clone()));
        assert_eq!(store.revision(2).await.expect("none"), None);
    }

    #[tokio::test]
    async fn a_change_based_on_an_old_revision_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("r.db"))
            .await
            .expect("opens");
        let c = sample();
        store
            .commit(0, &c, &revision(1, &c))
            .await
            .expect("commits");
        let mut other = c.clone();
        other.opd[0].name = "changed".into();
        let e = store
            .commit(0, &other, &revision(1, &other))
            .await
            .expect_err("stale");
        assert!(
            matches!(
                e,
                StoreError::Conflict {
                    expected: 0,
                    found: 1
                }
            ),
            "{e}"
        );
        assert_eq!(store.catalogue().await.expect("reads").0, c);
        // A dangling reference is refused by the database too, and rolls back whole.
        let mut dangling = c.clone();
        dangling.grant[0].layanan = "nope".into();
        store
            .commit(1, &dangling, &revision(2, &dangling))
            .await
            .expect_err("foreign key");
        assert_eq!(store.catalogue().await.expect("reads"), (c, 1));
    }

    #[tokio::test]
    async fn operators_keep_their_roles() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteStore::open(&dir.path().join("r.db"))
            .await
            .expect("opens");
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
        let mut o = Operator {
            username: "sari".into(),
            display_name: "Sari".into(),
            password_hash: "$argon2id$x".into(),
            disabled: false,
            created_at: now,
            roles: vec![
                RoleBinding {
                    role: Role::AdminOpd,
                    opd: "dukcapil".into(),
                    valid_from: None,
                    valid_until: None,
                },
                RoleBinding {
                    role: Role::AuditorEksternal,
                    opd: String::new(),
                    valid_from: Some(now),
                    valid_until: Some(now + time::Duration::days(30)),
                },
            ],
        };
        store.put_operator(&o).await.expect("puts");
        assert_eq!(
            store.operator("sari").await.expect("reads"),
            Some(o.clone())
        );
        o.roles.pop();
        o.disabled = true;
        store.put_operator(&o).await.expect("replaces");
        assert_eq!(store.operators().await.expect("lists"), vec![o]);
        assert_eq!(store.operator("nobody").await.expect("reads"), None);
    }
}
