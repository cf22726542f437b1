//! The governance use cases of [`Store`]: tokens, erasure (and retention's purge, which is an
//! erasure of whole sessions), the dump trash and the audit log.

use super::{Store, StoreError};
use crate::domain::{AuditEntry, AuditQuery, EraseTarget, Erased, SessionId, TokenRecord};
use std::time::Duration;

/// Messages one erasure step removes in its transaction. Each step holds the writer (SQLite's
/// only one) for its length: at this size a step takes a few tens of milliseconds, so webhook
/// intake waits at most about that long while a million rows go (`benches/system`, figure 8).
pub const ERASE_STEP_ROWS: usize = 1000;

/// What [`Store::erase`] removed, and in how many steps: each step is one transaction, so the
/// longest is the longest the erasure held SQLite's writer.
#[derive(Debug, Clone, Default)]
pub struct ErasedInSteps {
    pub erased: Erased,
    pub steps: usize,
    pub longest_step: Duration,
}

impl Store {
    /// Records a new token (its secret only as a hash). False when the name is taken.
    pub async fn create_token(
        &self,
        token: TokenRecord,
        secret_sha256: String,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.create_token(token, secret_sha256).await,
            Self::Postgres(s) => s.create_token(token, secret_sha256).await,
        }
    }

    /// Every token, by name, revoked ones too.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.tokens().await,
            Self::Postgres(s) => s.tokens().await,
        }
    }

    /// Revokes the token: from the next request on, on every instance (each request looks its
    /// token up). False when there is no token of that name.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.revoke_token(name.to_owned()).await,
            Self::Postgres(s) => s.revoke_token(name.to_owned()).await,
        }
    }

    /// The token whose secret has this hash, revoked or expired ones too.
    pub async fn token_by_hash(&self, sha256: &str) -> Result<Option<TokenRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.token_by_hash(sha256.to_owned()).await,
            Self::Postgres(s) => s.token_by_hash(sha256.to_owned()).await,
        }
    }

    /// Whether the session is on the erasure list (erased, or purged by retention).
    pub async fn session_erased(&self, session: &SessionId) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.session_erased(session.clone()).await,
            Self::Postgres(s) => s.session_erased(session.clone()).await,
        }
    }

    /// Erases `target` everywhere the database holds it, and puts it on the erasure list that
    /// every later load applies (first, in its own commit, so a load running meanwhile either
    /// committed before, and its rows are erased here, or applies the list). Then removes it in
    /// steps of [`ERASE_STEP_ROWS`] messages, each one short transaction. Dumps that held the
    /// rows are moved to the trash; the caller empties it (`crate::governance`). Repeating it
    /// removes nothing more.
    pub async fn erase(
        &self,
        target: &EraseTarget,
        reason: &str,
    ) -> Result<ErasedInSteps, StoreError> {
        let holding = match self {
            Self::Sqlite(s) => s.list_erasure(target.clone(), reason.to_owned()).await?,
            Self::Postgres(s) => s.list_erasure(target.clone(), reason.to_owned()).await?,
        };
        let mut done = ErasedInSteps::default();
        loop {
            let started = std::time::Instant::now();
            let step = match self {
                Self::Sqlite(s) => {
                    s.erase_step(target.clone(), holding.clone(), ERASE_STEP_ROWS)
                        .await?
                }
                Self::Postgres(s) => s.erase_step(target.clone(), ERASE_STEP_ROWS).await?,
            };
            let took = started.elapsed();
            metrics::histogram!("chatsink_erase_step_seconds").record(took.as_secs_f64());
            done.steps += 1;
            done.longest_step = done.longest_step.max(took);
            done.erased.add(&step.removed);
            if !step.more {
                return Ok(done);
            }
            if let Self::Sqlite(_) = self {
                // SQLite has one writer: between steps, a pause as long as the step (at most
                // 50 ms) leaves the write lock free for the webhooks and loads waiting on it, so
                // a purge never shuts them out. (PostgreSQL's writers do not wait on its deletes.)
                tokio::time::sleep(took.min(Duration::from_millis(50))).await;
            }
        }
    }

    /// Dump keys waiting in the trash, oldest first.
    pub async fn trash(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => s.trash(limit).await,
            Self::Postgres(s) => s.trash(limit).await,
        }
    }

    /// Forgets trash entries whose dumps are deleted.
    pub async fn forget_trash(&self, keys: Vec<String>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.forget_trash(keys).await,
            Self::Postgres(s) => s.forget_trash(keys).await,
        }
    }

    /// Sessions whose last message (or start, without one) is before `cutoff_ms`: what
    /// retention purges, oldest first. Sessions queued for their load wait for it (their
    /// messages may be recent whatever their start says).
    pub async fn expired_sessions(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        match self {
            Self::Sqlite(s) => s.expired_sessions(cutoff_ms, limit).await,
            Self::Postgres(s) => s.expired_sessions(cutoff_ms, limit).await,
        }
    }

    /// Appends audit entries in one commit, and notes each token's last use.
    pub async fn record_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.record_audit(entries).await,
            Self::Postgres(s) => s.record_audit(entries).await,
        }
    }

    /// Audit entries, newest first.
    pub async fn audit_page(
        &self,
        query: AuditQuery,
        budget: Duration,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            Self::Sqlite(s) => s.audit_page(query, budget).await,
            Self::Postgres(s) => s.audit_page(query, budget).await,
        }
    }

    /// Removes up to `max_rows` audit entries older than `cutoff_ms`.
    pub async fn purge_audit(&self, cutoff_ms: i64, max_rows: u32) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => s.purge_audit(cutoff_ms, max_rows).await,
            Self::Postgres(s) => s.purge_audit(cutoff_ms, max_rows).await,
        }
    }
}
