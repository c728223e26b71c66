//! The storage trait: what the registry needs from a database.

use crate::model::{ApiToken, Catalogue, Operator, Revision};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("registry database: {0}")]
    Database(String),
    /// A stored row could not be read back (corrupt or from a newer version).
    #[error("registry data: {0}")]
    Corrupt(String),
    /// The change lost a race: the catalogue moved on since it was read.
    #[error("the catalogue changed since revision {expected} (now {found}); read it again")]
    Conflict {
        /// The revision the change was based on.
        expected: i64,
        /// The revision in the store.
        found: i64,
    },
}

/// A registry store. Every catalogue change is one [`Store::commit`]: the whole new catalogue
/// and the revision that records it, in one transaction, so the tables and the revision history
/// never disagree.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// The catalogue as it is now, and the id of the latest revision (0 when none).
    async fn catalogue(&self) -> Result<(Catalogue, i64), StoreError>;

    /// Replaces the catalogue with `catalogue` and appends `revision` (its id must be the next
    /// one), provided the latest revision is still `based_on`.
    async fn commit(
        &self,
        based_on: i64,
        catalogue: &Catalogue,
        revision: &Revision,
    ) -> Result<(), StoreError>;

    /// Every revision, oldest first.
    async fn revisions(&self) -> Result<Vec<Revision>, StoreError>;

    /// One revision.
    async fn revision(&self, id: i64) -> Result<Option<Revision>, StoreError>;

    /// Every operator account.
    async fn operators(&self) -> Result<Vec<Operator>, StoreError>;

    /// One operator account.
    async fn operator(&self, username: &str) -> Result<Option<Operator>, StoreError>;

    /// Stores a new API token.
    async fn put_token(&self, token: &ApiToken) -> Result<(), StoreError>;

    /// The API token whose SHA-256 is `sha256`.
    async fn token(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError>;

    /// Creates or replaces an operator account and its roles.
    async fn put_operator(&self, operator: &Operator) -> Result<(), StoreError>;
}
