//! The store seam: every use the service makes of its database, as whole use cases in domain
//! types. Nothing above this module sees a connection, a row, a transaction or SQL; nothing in
//! it knows about HTTP.
//!
//! Backends are an enum, [`Store`], chosen once at start-up from the configured location, in the
//! way svix-server chooses its queue and cache backends. An enum rather than a trait object
//! because the set is closed and known when chatsink is built (SQLite now, PostgreSQL next): the
//! use cases are `async fn`s, which a `dyn` trait cannot carry without boxing every future; a
//! `match` is static dispatch on the hot intake and query paths; and a backend that lacks a use
//! case is a compile error at the one `match` that misses it, not a default method that silently
//! does the wrong thing.
//!
//! Each use case is one unit of work with its guarantees stated here, so every backend keeps
//! them: a load commits whole with its job's `done`, fenced by the lease token; a claim hands a
//! job to one owner; intake answers only after the commit that holds the delivery.

mod copy;
mod governance;
mod location;
mod owner;
/// Public for the PostgreSQL tests of use cases not yet served through [`Store`].
pub mod postgres;
/// Public for the benchmarks and SQLite-specific tests only (they compare chatsink's SQL with
/// the sqlite3 CLI's, and check the query planner); the service goes through [`Store`].
pub mod sqlite;

pub use copy::{accounted_for, copied_tables, copy_archive, Copied, NOT_COPIED};
pub use governance::{ErasedInSteps, Holds, ERASE_STEP_ROWS};
pub use location::{DatabaseLocation, LocationError, PostgresUrl};
pub use owner::{Owner, ProcessIdentity};

use crate::domain::{
    After, ClaimedJob, DeliveryRecord, IntakeOutcome, Job, JobOutcome, JobState, ListedSession,
    LoadReport, MessageFilter, MessageRow, MessageStats, NewDelivery, Order, PullPlan,
    ReprocessSelector, RowSource, SessionDump, SessionId, SessionRecord, StoredRejectedRow,
    Timestamp, UnknownValue, UserRecord,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("postgres: {}", postgres_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres connection pool: {0}")]
    PgPool(#[from] deadpool_postgres::PoolError),
    /// The database settings cannot be used (a URL the driver refuses).
    #[error("database settings: {0}")]
    Config(String),
    #[error("database {location} was written by a newer chatsink (schema version {found}, this build knows {known})")]
    TooNew {
        location: String,
        found: i64,
        known: i64,
    },
    #[error("database {} cannot be written ({reason}); chatsink needs a writable database and directory", .path.display())]
    ReadOnly { path: PathBuf, reason: String },
    #[error("no database at {}", .0.display())]
    Missing(PathBuf),
    #[error("database file {} is gone or was replaced underneath the running service", .0.display())]
    FileReplaced(PathBuf),
    #[error("the copy failed its integrity check: {0}")]
    CopyDamaged(String),
    /// `copy-archive` found an archive already in the destination.
    #[error("{0} already holds an archive; copy-archive needs an empty database (create a new one, or drop this one's tables)")]
    NotEmpty(String),
    /// `copy-archive` met something it cannot copy.
    #[error("copying the archive: {0}")]
    Copy(String),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    /// The group-commit writer failed the batch holding this delivery.
    #[error("storing the delivery failed: {0}")]
    Intake(#[source] Arc<StoreError>),
    #[error("the database worker stopped")]
    WriterGone,
    /// Work on the database's thread panicked: a bug, reported as one.
    #[error("database work panicked: {0}")]
    Panicked(String),
    #[error("the read ran past its budget of {} ms", .0.as_millis())]
    ReadBudget(Duration),
    /// A row holds a value this build does not know (written by a newer chatsink or by hand).
    #[error("the database holds {0}")]
    Unknown(#[from] UnknownValue),
}

impl StoreError {
    /// A fault of the storage (busy, full, read-only, missing file) that should clear by itself
    /// or by an operator, as opposed to a bug: callers answer 503 and ask to retry.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy
                    | DatabaseLocked
                    | DiskFull
                    | ReadOnly
                    | SystemIoFailure
                    | CannotOpen
                    | OutOfMemory
            ),
            Self::Intake(inner) => inner.is_unavailable(),
            // No SQLSTATE: the connection itself failed (refused, closed, timed out). Class 08
            // is a connection exception, 53 insufficient resources, 57P an operator shutdown.
            // A transient conflict outlived its retries: the sender should try again later.
            Self::Postgres(e) => {
                self.is_transient_conflict()
                    || e.code().is_none_or(|code| {
                        let code = code.code();
                        code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
                    })
            }
            Self::PgPool(_) => true,
            Self::Config(_) => false,
            Self::Sqlite(_)
            | Self::TooNew { .. }
            | Self::CopyDamaged(_)
            | Self::NotEmpty(_)
            | Self::Copy(_)
            | Self::ReadBudget(_)
            | Self::Panicked(_)
            | Self::Unknown(_)
            | Self::Missing(_) => false,
            Self::Pool(_)
            | Self::ReadOnly { .. }
            | Self::FileReplaced(_)
            | Self::Io(_)
            | Self::WriterGone => true,
        }
    }

    /// The error for a blocking task that did not come back.
    pub(crate) fn from_join(e: tokio::task::JoinError) -> Self {
        match e.try_into_panic() {
            Ok(panic) => Self::Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into()),
            ),
            Err(_) => Self::WriterGone,
        }
    }
}

/// A PostgreSQL error with the server's own message (the driver's Display says only "db error").
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// How a job's load ended.
#[derive(Debug)]
pub enum JobLoad {
    /// Loaded and marked done in one commit.
    Loaded(LoadReport),
    /// The job's lease is no longer this attempt's: nothing was written.
    LeaseLost,
    /// The rows ended early (the reason): nothing was written.
    InputFailed(String),
    /// The session is on the erasure list: the job is done and nothing was loaded.
    Erased,
}

/// What loading a hand-ingested file did.
#[derive(Debug, Default)]
pub struct FileLoad {
    /// Each session committed, in file order.
    pub sessions: Vec<(SessionId, LoadReport)>,
    /// Rejected rows that name no session and follow none: not stored anywhere.
    pub orphans: usize,
    /// The rows ended early (the reason): the batch being read was discarded, those before stand.
    pub input_failed: Option<String>,
}

/// The sessions a reprocess selector picked, and those it named that the archive never saw.
#[derive(Debug, Default)]
pub struct Selected {
    pub sessions: Vec<String>,
    pub unknown: Vec<String>,
}

/// A held lease on a pass that one process runs at a time (a reconcile pass), from
/// [`Store::begin_pass`] to [`Store::end_pass`].
#[derive(Debug, Clone)]
pub struct PassLease {
    pub name: String,
    pub token: String,
    /// Where the last successful pass got to (none before the first).
    pub watermark: Option<Timestamp>,
}

/// Where a pass stands, as every instance sees it (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassState {
    pub last_success: Option<Timestamp>,
    /// The last pass's error; none when it succeeded.
    pub last_error: Option<String>,
}

/// Job counts by state and the oldest due job's wait, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueGauges {
    pub by_state: Vec<(JobState, i64)>,
    pub lag_ms: i64,
}

/// The database, whichever backend holds it. Cheap to clone.
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// The group-commit writer for webhook intake. Cheap to clone.
#[derive(Clone)]
pub enum Intake {
    Sqlite(sqlite::IntakeWriter),
    Postgres(postgres::PgIntake),
}

impl Intake {
    /// Stores a delivery durably; returns once the commit that holds it has returned.
    pub async fn store(&self, delivery: NewDelivery) -> Result<IntakeOutcome, StoreError> {
        match self {
            Self::Sqlite(w) => w.store(delivery).await,
            Self::Postgres(w) => w.store(delivery).await,
        }
    }
}

/// What `chatsink migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub from: i64,
    pub to: i64,
}

/// Applies pending migrations to the database at `location` (creating an SQLite file if
/// needed) and reports the versions.
pub async fn migrate(
    location: &DatabaseLocation,
    pool_size: usize,
) -> Result<Migrated, StoreError> {
    match location {
        DatabaseLocation::Sqlite(path) => {
            let path = path.clone();
            let from = tokio::task::spawn_blocking(move || sqlite::migrate_file(&path))
                .await
                .map_err(StoreError::from_join)??;
            Ok(Migrated {
                from,
                to: sqlite::SCHEMA_VERSION,
            })
        }
        DatabaseLocation::Postgres(url) => {
            let pool = postgres::connect(url, pool_size)?;
            let from = postgres::migrate(&pool, &url.to_string()).await?;
            Ok(Migrated {
                from,
                to: postgres::SCHEMA_VERSION,
            })
        }
    }
}

impl Store {
    /// Opens the database at `location`, the backend chosen by its form (a `postgres://` URL or
    /// an SQLite path), creating and migrating it as needed: for `serve` and `ingest`.
    pub async fn connect(
        location: &DatabaseLocation,
        pool_size: usize,
    ) -> Result<Self, StoreError> {
        match location {
            DatabaseLocation::Sqlite(path) => Self::open(path),
            DatabaseLocation::Postgres(url) => Ok(Self::Postgres(
                postgres::PgStore::open(url, pool_size).await?,
            )),
        }
    }

    /// [`Store::connect`] for a database that must already exist: every command but `serve`
    /// and `ingest`, so a mistyped location is an error instead of a new empty archive.
    pub async fn connect_existing(
        location: &DatabaseLocation,
        pool_size: usize,
    ) -> Result<Self, StoreError> {
        match location {
            DatabaseLocation::Sqlite(path) => Self::open_existing(path),
            DatabaseLocation::Postgres(_) => Self::connect(location, pool_size).await,
        }
    }

    /// Opens (creating if needed) and migrates the SQLite database at `location`.
    pub fn open(location: &Path) -> Result<Self, StoreError> {
        Ok(Self::Sqlite(sqlite::SqliteStore::open(location)?))
    }

    /// Opens a database that must already exist: every command but `serve` and `ingest`, so a
    /// mistyped `--database` is an error instead of a new empty archive.
    pub fn open_existing(location: &Path) -> Result<Self, StoreError> {
        Ok(Self::Sqlite(sqlite::SqliteStore::open_existing(location)?))
    }

    /// Starts the intake writer (group commit) for `serve`.
    pub fn intake(&self) -> Result<Intake, StoreError> {
        match self {
            Self::Sqlite(s) => Ok(Intake::Sqlite(sqlite::IntakeWriter::start(s.path())?)),
            Self::Postgres(s) => Ok(Intake::Postgres(s.intake())),
        }
    }

    // --- owners: who holds leases, and whether they are still there ---

    /// Records this process as an owner of job leases and clears the owners that are known to be
    /// gone (see [`ProcessIdentity::is_gone`]), so their jobs are claimable at once.
    pub async fn register_owner(&self, role: &str) -> Result<Owner, StoreError> {
        let owner = Owner::new(role);
        match self {
            Self::Sqlite(s) => s.register_owner(owner.clone()).await?,
            Self::Postgres(s) => s.register_owner(owner.clone()).await?,
        }
        Ok(owner)
    }

    /// Says the owner is alive. Recreates its row if another process took it for gone.
    pub async fn heartbeat(&self, owner: &Owner) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.heartbeat(owner.clone()).await,
            Self::Postgres(s) => s.heartbeat(owner.clone()).await,
        }
    }

    /// Wakes `wake` when any instance enqueues a job, where the backend can tell (PostgreSQL's
    /// LISTEN/NOTIFY); SQLite's jobs come from this process, which wakes its workers itself.
    pub fn watch_jobs(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        match self {
            Self::Sqlite(_) => {}
            Self::Postgres(s) => drop(s.watch_jobs(wake)),
        }
    }

    /// Removes the owner at a clean stop (its jobs were finished or released first).
    pub async fn retire_owner(&self, owner: &Owner) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.retire_owner(owner.clone()).await,
            Self::Postgres(s) => s.retire_owner(owner.clone()).await,
        }
    }

    // --- jobs ---

    /// Claims the runnable job that has waited longest for `owner`: pending or failed and due,
    /// or running under a lease that expired or whose owner stopped beating (`stale`). `only`
    /// restricts the claim to one job id. A process without RealtimeKit API credentials passes
    /// `can_pull: false` and never takes a `pull` job (it could only bury it).
    pub async fn claim_job(
        &self,
        owner: &Owner,
        lease: Duration,
        stale: Duration,
        only: Option<i64>,
        can_pull: bool,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.claim_job(owner.clone(), lease, stale, only, can_pull)
                    .await
            }
            Self::Postgres(s) => {
                s.claim_job(owner.clone(), lease, stale, only, can_pull)
                    .await
            }
        }
    }

    /// Extends the lease while work goes on. False when the lease was lost.
    pub async fn extend_lease(
        &self,
        job: &ClaimedJob,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.extend_lease(job.clone(), lease).await,
            Self::Postgres(s) => s.extend_lease(job.clone(), lease).await,
        }
    }

    /// Gives a claimed job back untouched (shutdown): the attempt does not count.
    pub async fn release_job(&self, job: &ClaimedJob) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.release_job(job.clone()).await,
            Self::Postgres(s) => s.release_job(job.clone()).await,
        }
    }

    /// Records a failed attempt: `retry_in` schedules the next one, `None` buries the job as
    /// dead. Returns the new state, or `None` when the lease was lost.
    pub async fn fail_job(
        &self,
        job: &ClaimedJob,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<Option<JobState>, StoreError> {
        match self {
            Self::Sqlite(s) => s.fail_job(job.clone(), error.to_owned(), retry_in).await,
            Self::Postgres(s) => s.fail_job(job.clone(), error.to_owned(), retry_in).await,
        }
    }

    /// Loads a job's rows as the session's whole content and marks the job done, in one commit
    /// fenced by the job's lease: an attempt that lost its lease writes nothing.
    pub async fn load_job(
        &self,
        job: &ClaimedJob,
        rows: impl RowSource + 'static,
        dump: SessionDump,
    ) -> Result<JobLoad, StoreError> {
        match self {
            Self::Sqlite(s) => s.load_job(job.clone(), rows, dump).await,
            Self::Postgres(s) => s.load_job(job.clone(), rows, dump).await,
        }
    }

    /// Loads a hand-ingested file. With `session`, the rows are that session's whole dump, in
    /// one commit. Without, each session is loaded whole (a session met again later in the file
    /// is merged into what its first run loaded), committed in batches; `committed` hears of each
    /// session once its batch is on disk.
    pub async fn load_file(
        &self,
        rows: impl RowSource + 'static,
        session: Option<SessionId>,
        committed: impl FnMut(&SessionId, &LoadReport) + Send + 'static,
    ) -> Result<FileLoad, StoreError> {
        match self {
            Self::Sqlite(s) => s.load_file(rows, session, committed).await,
            Self::Postgres(s) => s.load_file(rows, session, committed).await,
        }
    }

    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.job(id).await,
            Self::Postgres(s) => s.job(id).await,
        }
    }

    /// Jobs newest first, optionally in one state.
    pub async fn jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>, StoreError> {
        match self {
            Self::Sqlite(s) => s.jobs(state, limit).await,
            Self::Postgres(s) => s.jobs(state, limit).await,
        }
    }

    /// The dump a session was last loaded from.
    pub async fn stored_dump(
        &self,
        session: &SessionId,
    ) -> Result<Option<SessionDump>, StoreError> {
        match self {
            Self::Sqlite(s) => s.stored_dump(session.clone()).await,
            Self::Postgres(s) => s.stored_dump(session.clone()).await,
        }
    }

    /// The download link (and its expiry) of the session's newest delivery.
    pub async fn delivery_link(
        &self,
        session: &SessionId,
    ) -> Result<Option<(String, Option<i64>)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.delivery_link(session.clone()).await,
            Self::Postgres(s) => s.delivery_link(session.clone()).await,
        }
    }

    /// The sessions `selector` picks; for a list of ids, also those the archive never saw.
    pub async fn select_for_reprocess(
        &self,
        selector: &ReprocessSelector,
    ) -> Result<Selected, StoreError> {
        match self {
            Self::Sqlite(s) => s.select_for_reprocess(selector.clone()).await,
            Self::Postgres(s) => s.select_for_reprocess(selector.clone()).await,
        }
    }

    /// One reprocess job per session, or the one already open: (session, job id).
    pub async fn enqueue_reprocess(
        &self,
        sessions: Vec<String>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.enqueue_reprocess(sessions).await,
            Self::Postgres(s) => s.enqueue_reprocess(sessions).await,
        }
    }

    // --- pulling: sessions found in RealtimeKit's listing ---

    /// One pull job per listed session the archive holds nothing of (no committed load, no
    /// webhook delivery), or the one already open; its listing metadata fills what no webhook
    /// brought. Sessions that have a load or a delivery are skipped, saying which.
    pub async fn enqueue_pulls(
        &self,
        listed: Vec<ListedSession>,
    ) -> Result<Vec<PullPlan>, StoreError> {
        match self {
            Self::Sqlite(s) => s.enqueue_pulls(listed).await,
            Self::Postgres(s) => s.enqueue_pulls(listed).await,
        }
    }

    /// Marks a job done without loading anything, fenced by its lease: `NoChat` records the
    /// session as having no chat (and archived); `Unchanged` leaves what the session's last
    /// load from the same dump stored. False when the lease was lost.
    pub async fn finish_unloaded(
        &self,
        job: &ClaimedJob,
        outcome: JobOutcome,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.finish_unloaded(job.clone(), outcome).await,
            Self::Postgres(s) => s.finish_unloaded(job.clone(), outcome).await,
        }
    }

    /// The sha256 of the dump the session's content was last loaded from (none: never loaded).
    pub async fn loaded_dump_sha256(
        &self,
        session: &SessionId,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Self::Sqlite(s) => s.loaded_dump_sha256(session.clone()).await,
            Self::Postgres(s) => s.loaded_dump_sha256(session.clone()).await,
        }
    }

    /// Takes the lease on the pass `name` for `owner` when no live owner holds it: on several
    /// instances, one runs the pass at a time. A holder whose lease ran out, or that stopped
    /// beating for `stale`, loses it.
    pub async fn begin_pass(
        &self,
        name: &'static str,
        owner: &Owner,
        lease: Duration,
        stale: Duration,
    ) -> Result<Option<PassLease>, StoreError> {
        match self {
            Self::Sqlite(s) => s.begin_pass(name, owner.clone(), lease, stale).await,
            Self::Postgres(s) => s.begin_pass(name, owner.clone(), lease, stale).await,
        }
    }

    /// Gives the pass's lease up: with the watermark the pass reached, or the error it ended in
    /// (the watermark stays). False when the lease had passed to another.
    pub async fn end_pass(
        &self,
        lease: PassLease,
        result: Result<Timestamp, String>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.end_pass(lease, result).await,
            Self::Postgres(s) => s.end_pass(lease, result).await,
        }
    }

    /// The pass `name`'s last success and error; none before its first pass.
    pub async fn pass_state(&self, name: &'static str) -> Result<Option<PassState>, StoreError> {
        match self {
            Self::Sqlite(s) => s.pass_state(name).await,
            Self::Postgres(s) => s.pass_state(name).await,
        }
    }

    // --- the query API: each read within `budget` ---

    pub async fn message_page(
        &self,
        filter: &MessageFilter,
        order: Order,
        after: Option<After>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<MessageRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.message_page(filter.clone(), order, after, limit, budget)
                    .await
            }
            Self::Postgres(s) => {
                s.message_page(filter.clone(), order, after, limit, budget)
                    .await
            }
        }
    }

    pub async fn stats(
        &self,
        filter: &MessageFilter,
        top: u32,
        budget: Duration,
    ) -> Result<MessageStats, StoreError> {
        match self {
            Self::Sqlite(s) => s.stats(filter.clone(), top, budget).await,
            Self::Postgres(s) => s.stats(filter.clone(), top, budget).await,
        }
    }

    /// The session, if it is in one of the `visible` meetings (none: any session).
    pub async fn session(
        &self,
        id: &str,
        visible: Option<&[String]>,
        budget: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let found = match self {
            Self::Sqlite(s) => s.session(id.to_owned(), budget).await?,
            Self::Postgres(s) => s.session(id.to_owned(), budget).await?,
        };
        Ok(found.filter(|session| {
            visible.is_none_or(|meetings| {
                session
                    .meeting_id
                    .as_ref()
                    .is_some_and(|m| meetings.contains(m))
            })
        }))
    }

    /// Sessions newest first, keyset after (sort time, session id); only those of the `visible`
    /// meetings when given.
    pub async fn session_page(
        &self,
        after: Option<(i64, String)>,
        visible: Option<&[String]>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let visible = visible.map(<[String]>::to_vec);
        match self {
            Self::Sqlite(s) => s.session_page(after, visible, limit, budget).await,
            Self::Postgres(s) => s.session_page(after, visible, limit, budget).await,
        }
    }

    /// Whether the archive holds messages of this participant (in the `visible` meetings).
    pub async fn user_exists(
        &self,
        id: &str,
        visible: Option<&[String]>,
        budget: Duration,
    ) -> Result<bool, StoreError> {
        let visible = visible.map(<[String]>::to_vec);
        match self {
            Self::Sqlite(s) => s.user_exists(id.to_owned(), visible, budget).await,
            Self::Postgres(s) => s.user_exists(id.to_owned(), visible, budget).await,
        }
    }

    /// Participants by id, keyset after `after`; `session` limits them to one session, and
    /// `visible` (with their counts and names) to those meetings.
    pub async fn user_page(
        &self,
        session: Option<String>,
        visible: Option<&[String]>,
        after: Option<String>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let visible = visible.map(<[String]>::to_vec);
        match self {
            Self::Sqlite(s) => s.user_page(session, visible, after, limit, budget).await,
            Self::Postgres(s) => s.user_page(session, visible, after, limit, budget).await,
        }
    }

    /// A session's rejected rows in file order, keyset after a row id.
    pub async fn rejected_page(
        &self,
        session: &str,
        after: Option<i64>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<StoredRejectedRow>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.rejected_page(session.to_owned(), after, limit, budget)
                    .await
            }
            Self::Postgres(s) => {
                s.rejected_page(session.to_owned(), after, limit, budget)
                    .await
            }
        }
    }

    // --- operations ---

    /// Stored deliveries, newest first: what reached the inbox, however verified.
    /// Replaces a session's participants (less erased users) in one commit, and records when;
    /// false when the session is not in the archive (never loaded, erased or purged).
    pub async fn store_participants(
        &self,
        session: &SessionId,
        participants: Vec<crate::domain::Participant>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.store_participants(session.clone(), participants).await,
            Self::Postgres(s) => s.store_participants(session.clone(), participants).await,
        }
    }

    /// Of `sessions`, those loaded whose participants were never fetched.
    pub async fn sessions_without_participants(
        &self,
        sessions: Vec<SessionId>,
    ) -> Result<Vec<SessionId>, StoreError> {
        match self {
            Self::Sqlite(s) => s.sessions_without_participants(sessions).await,
            Self::Postgres(s) => s.sessions_without_participants(sessions).await,
        }
    }

    pub async fn deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.deliveries(limit).await,
            Self::Postgres(s) => s.deliveries(limit).await,
        }
    }

    /// Whether the database accepts a write now (`/readyz`); never queued behind reads.
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.check_writable().await,
            Self::Postgres(s) => s.check_writable().await,
        }
    }

    /// Jobs due to run now that no worker holds (the backlog `/readyz` limits).
    pub async fn backlog(&self) -> Result<i64, StoreError> {
        match self {
            Self::Sqlite(s) => s.backlog().await,
            Self::Postgres(s) => s.backlog().await,
        }
    }

    pub async fn queue_gauges(&self) -> Result<QueueGauges, StoreError> {
        match self {
            Self::Sqlite(s) => s.queue_gauges().await,
            Self::Postgres(s) => s.queue_gauges().await,
        }
    }

    /// What a clean stop leaves behind: for SQLite, the WAL checkpointed into the file.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.checkpoint().await,
            Self::Postgres(s) => {
                s.close();
                Ok(())
            }
        }
    }
}

/// The erasure list of the SQLite file at `path` (a backup, say), read without changing it.
pub fn sqlite_erasures(path: &Path) -> Result<Vec<crate::domain::ErasureRecord>, StoreError> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(sqlite::governance::erasures(&conn)?)
}

/// Copies the live SQLite database at `location` to the file `target`, consistent while writers
/// carry on; returns the copy's size in bytes. (PostgreSQL has `pg_dump` for this.)
pub fn backup(location: &Path, target: &Path) -> Result<u64, StoreError> {
    sqlite::backup(location, target)
}
