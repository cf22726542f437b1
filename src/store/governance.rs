//! The governance use cases of [`Store`]: tokens, erasure (and retention's purge, which is an
//! erasure of whole sessions), the dump trash and the audit log.

use super::{Store, StoreError};
use crate::domain::{
    AuditEntry, AuditQuery, EraseTarget, Erased, ErasureRecord, Scrub, SessionId, TokenRecord,
};
use std::time::Duration;

/// Messages one erasure step removes in its transaction. Each step holds the writer (SQLite's
/// only one) for its length: at this size a step takes a few tens of milliseconds, so webhook
/// intake waits at most about that long while a million rows go (`benches/system`, figure 8).
pub const ERASE_STEP_ROWS: usize = 1000;

/// Messages one step of an SQLite erasure that scrubs ([`Scrub::Bytes`]) removes: FTS5's
/// secure-delete rewrites the index pages of every word of every row, about 0.35 ms a message
/// on a million-message archive (936 messages: 338 ms in one step), so its steps are smaller.
pub const SCRUB_STEP_ROWS: usize = 100;

/// Tries, 100 ms apart, to truncate SQLite's WAL after an erasure that scrubs.
const WAL_TRUNCATE_TRIES: u32 = 100;

/// What [`Store::erase`] removed, and in how many transactions: its steps, and on SQLite the
/// full-text index merges after them, with how long each held the writer.
#[derive(Debug, Clone, Default)]
pub struct ErasedInSteps {
    pub erased: Erased,
    pub steps: usize,
    pub merges: usize,
    pub held: Holds,
}

impl ErasedInSteps {
    /// Adds another erasure's removals, transactions and holds to these.
    pub fn add(&mut self, other: &ErasedInSteps) {
        self.erased.add(&other.erased);
        self.steps += other.steps;
        self.merges += other.merges;
        self.held.0.extend_from_slice(&other.held.0);
    }
}

/// How long each of an erasure's transactions held the writer.
#[derive(Debug, Clone, Default)]
pub struct Holds(Vec<Duration>);

impl Holds {
    /// Counts one transaction that held the writer for `held`.
    fn push(&mut self, held: Duration) {
        metrics::histogram!("chatsink_erase_step_seconds").record(held.as_secs_f64());
        self.0.push(held);
    }

    /// The hold below which a share `q` (0 to 1) of them lie; zero when there were none.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        match sorted.len() {
            0 => Duration::ZERO,
            n => sorted[((n - 1) as f64 * q).round() as usize],
        }
    }

    pub fn longest(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

/// Between an SQLite erasure's transactions, a pause as long as the last one (at most 50 ms)
/// leaves the write lock free for the webhooks and loads waiting on it, so an erasure never
/// shuts them out. (PostgreSQL's writers do not wait on its deletes.)
async fn let_the_others_write(held: Duration) {
    tokio::time::sleep(held.min(Duration::from_millis(50))).await;
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

    /// The token whose secret has this hash, revoked or expired ones too, with the store's
    /// clock at the look-up to judge its expiry by (PostgreSQL's: instances with skewed clocks
    /// agree on who may read).
    pub async fn token_by_hash(
        &self,
        sha256: &str,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.token_by_hash(sha256.to_owned()).await,
            Self::Postgres(s) => s.token_by_hash(sha256.to_owned()).await,
        }
    }

    /// The clock that decides what retention keeps: the database's on PostgreSQL (shared by
    /// every instance), this process's on SQLite (the only one writing).
    pub async fn clock_ms(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(crate::domain::timestamp::now_ms()),
            Self::Postgres(s) => s.clock_ms().await,
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
    /// removes nothing more. [`Scrub::Bytes`] also removes the bytes below the rows (see there).
    pub async fn erase(
        &self,
        target: &EraseTarget,
        reason: &str,
        scrub: Scrub,
    ) -> Result<ErasedInSteps, StoreError> {
        let holding = match self {
            Self::Sqlite(s) => s.list_erasure(target.clone(), reason.to_owned()).await?,
            Self::Postgres(s) => s.list_erasure(target.clone(), reason.to_owned()).await?,
        };
        let mut done = ErasedInSteps::default();
        let rows = match scrub {
            Scrub::Rows => ERASE_STEP_ROWS,
            Scrub::Bytes => SCRUB_STEP_ROWS,
        };
        loop {
            let step = match self {
                Self::Sqlite(s) => {
                    s.erase_step(target.clone(), holding.clone(), rows, scrub)
                        .await?
                }
                Self::Postgres(s) => s.erase_step(target.clone(), ERASE_STEP_ROWS).await?,
            };
            done.steps += 1;
            done.held.push(step.held);
            done.erased.add(&step.removed);
            if let Self::Sqlite(s) = self {
                // The step flushed its full-text deletions unmerged: merge them now, a bounded
                // transaction at a time, until FTS5 has nothing due (as its automerge would).
                let_the_others_write(step.held).await;
                let mut due = step.removed.messages > 0;
                while due {
                    let (worked, held) = s.merge_search_index().await?;
                    done.held.push(held);
                    due = worked;
                    if worked {
                        done.merges += 1;
                        let_the_others_write(held).await;
                    }
                }
            }
            if !step.more {
                break;
            }
        }
        if let (Self::Sqlite(s), Scrub::Bytes) = (self, scrub) {
            // The WAL still holds the pages as they were before: into the file (where the steps
            // zeroed what they deleted) and truncated, once no reader is on an older snapshot.
            let mut tries = 0;
            loop {
                let (finished, held) = s.truncate_wal().await?;
                done.held.push(held);
                if finished {
                    break;
                }
                tries += 1;
                if tries == WAL_TRUNCATE_TRIES {
                    tracing::warn!(
                        tries,
                        "the WAL could not be truncated after an erasure (readers or writers kept it busy); it keeps pre-erasure pages until SQLite next restarts it"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(done)
    }

    /// The whole erasure list (tombstones included), oldest first: what `erasures export`
    /// writes so that a restore can be followed by `erasures apply`.
    pub async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.erasures().await,
            Self::Postgres(s) => s.erasures().await,
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
