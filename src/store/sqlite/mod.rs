//! The SQLite backend: every use case of [`super::Store`] as SQL, one file per table family.
//!
//! Durability choices: WAL journal, `synchronous=FULL` (a commit is on disk before it returns),
//! `BEGIN IMMEDIATE` for every write so writers queue on a busy handler instead of failing on
//! lock upgrade, and readers on their own pooled connections so they never wait on a writer.

pub(super) mod governance;
mod inbox;
mod intake;
mod jobs;
mod load;
mod messages;
mod owners;
mod passes;
mod session_participants;
mod sessions;
mod use_cases;

pub use intake::IntakeWriter;
pub use messages::{message_page_sql, text_plan, TextPlan};

use super::StoreError;

use r2d2_sqlite::SqliteConnectionManager;
pub use rusqlite::Connection;
use rusqlite::{OpenFlags, TransactionBehavior};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The current schema, applied whole to a new database.
const SCHEMA: &str = include_str!("../../../schema.sql");

/// What brings a database made by an earlier version to [`SCHEMA`]: entry `i` takes schema
/// version `i + 1` to `i + 2` (version 1 was the first `schema.sql`).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/002_fts_kept_by_loader.sql"),
    include_str!("migrations/003_partial_flag_indexes.sql"),
    include_str!("migrations/004_text_once.sql"),
    include_str!("migrations/005_integer_keys.sql"),
    include_str!("migrations/006_jobs_without_in_lists.sql"),
    include_str!("migrations/007_lease_owners.sql"),
    include_str!("migrations/008_dump_keys.sql"),
    include_str!("migrations/009_pull_jobs.sql"),
    include_str!("migrations/010_governance.sql"),
    include_str!("migrations/011_extra_columns_and_webhook_id.sql"),
];

/// The schema version [`SCHEMA`] is, and every migrated database ends at.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64 + 1;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection waiting for the write lock tries again.
const BUSY_POLL: Duration = Duration::from_millis(1);

/// The busy handler of every connection: try again every [`BUSY_POLL`] for [`BUSY_TIMEOUT`].
/// SQLite's own (`busy_timeout`) backs off to 100 ms between tries, so a webhook's commit waiting
/// behind another process's steady short writes (a purge's steps) could miss every gap between
/// them: 1.7 s answers beside a purge (`benches/system`, figure 8).
fn wait_for_the_writer(attempts: i32) -> bool {
    std::thread::sleep(BUSY_POLL);
    (attempts as u128) < BUSY_TIMEOUT.as_millis() / BUSY_POLL.as_millis()
}

type Pool = r2d2::Pool<SqliteConnectionManager>;

/// Opens a connection with chatsink's pragmas.
fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn)?;
    Ok(conn)
}

/// Gives `conn` chatsink's busy handler again (after work that must not wait).
fn restore_busy_handler(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_handler(Some(wait_for_the_writer))
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.busy_handler(Some(wait_for_the_writer))?;
    // secure_delete=FAST zeroes a deleted row's bytes in the pages a delete writes anyway, at no
    // extra I/O; pages freed whole keep theirs until reused. An erasure by id turns it ON for
    // its own steps (governance::erase_step), so the pages it frees are zeroed too.
    // page_size only takes effect on a new, empty file. Larger pages mean fewer B-tree splits and
    // WAL frames for a bulk load (`ingest` of 1M messages: 7.1-7.4 s at 4 KB, 6.4-6.8 s at 8 KB,
    // 6.1-6.8 s at 16 KB), but each webhook commit rewrites whole pages of the random-key inbox,
    // job and session indexes. Once the intake stopped copying pages into statement journals,
    // its rate no longer told 4, 8 and 16 KB apart (12,900-16,300 RSA deliveries/s, interleaved
    // runs on this noisy host). 16 KB.
    conn.execute_batch(
        "PRAGMA page_size = 16384;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = FAST;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -32000;",
    )?;
    Ok(())
}

/// `chatsink migrate` on an SQLite file: creates it if needed, migrates it, and returns the
/// version it was at (0 for a new file).
pub fn migrate_file(path: &Path) -> Result<i64, StoreError> {
    refuse_read_only(path)?;
    let mut conn = connect(path)?;
    let from: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    migrate(&mut conn, path)?;
    Ok(from)
}

/// Brings the database to the newest schema. Safe to call from several processes at once: the
/// version check and each migration run inside one `BEGIN IMMEDIATE` transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // WAL is a property of the file; setting it needs no transaction and persists.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    // A database already at this schema needs no write (and no writer's lock) to open.
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: path.display().to_string(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    if version == 0 {
        tx.execute_batch(SCHEMA)?;
    } else {
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize - 1) {
            tracing::info!(path = %path.display(), to = index + 2, "migrating the database");
            tx.execute_batch(sql)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// The database: a path, a pool of connections for reads and short writes.
///
/// Every connection handed out is first checked against the file the pool was opened on
/// (device and inode): a database deleted underneath the service fails with
/// [`StoreError::FileReplaced`] instead of writing into an unlinked inode, and a file restored in
/// its place gets a fresh pool.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    slot: Arc<RwLock<PoolSlot>>,
}

/// Which of a database's pools a piece of work runs on.
#[derive(Clone, Copy)]
enum Pools {
    Main,
    Probe,
}

struct PoolSlot {
    pool: Pool,
    /// Two connections of their own for `/readyz` and `/metrics`, so readiness never queues
    /// behind analysts' reads holding every connection of `pool`.
    probe: Pool,
    file: FileId,
}

/// Which file a path names right now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        refuse_read_only(path)?;
        let mut conn = connect(path)?;
        migrate(&mut conn, path)?;
        drop(conn);
        let slot = open_pool(path)?;
        Ok(Self {
            path: path.to_owned(),
            slot: Arc::new(RwLock::new(slot)),
        })
    }

    /// Opens a database that must already exist: every command but `serve` and `ingest`, so a
    /// mistyped `--database` is an error instead of a new empty archive.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        Self::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Both pools for the file now at `path`: (reads and short writes, probes).
    fn slot_pools(&self) -> Result<(Pool, Pool), StoreError> {
        let gone = || StoreError::FileReplaced(self.path.clone());
        let now = FileId::of(&self.path).ok_or_else(gone)?;
        {
            let slot = self.slot.read().unwrap_or_else(|e| e.into_inner());
            if slot.file == now {
                return Ok((slot.pool.clone(), slot.probe.clone()));
            }
        }
        let mut slot = self.slot.write().unwrap_or_else(|e| e.into_inner());
        if slot.file != now {
            tracing::warn!(path = %self.path.display(), "database file was replaced; reopening");
            *slot = open_pool(&self.path)?;
        }
        Ok((slot.pool.clone(), slot.probe.clone()))
    }

    /// Runs blocking database work on tokio's blocking pool, never on an async worker.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_on(Pools::Main, work).await
    }

    /// [`SqliteStore::run`] on a connection of the chosen pool.
    async fn run_on<T, F>(&self, pools: Pools, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let (main, probe) = db.slot_pools()?;
            let mut conn = match pools {
                Pools::Main => main.get()?,
                Pools::Probe => probe.get()?,
            };
            work(&mut conn)
        })
        .await
        .map_err(StoreError::from_join)?
    }

    /// [`SqliteStore::run`] with a time budget: SQLite's progress handler interrupts the work once
    /// `budget` has passed, and the read fails with [`StoreError::ReadBudget`]. For reads whose
    /// cost a stranger chooses (the query API): none may hold a connection and a core for long.
    async fn read<T, F>(&self, budget: Duration, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |conn| with_budget(conn, budget, work)).await
    }

    /// Runs work on a probe connection (`/readyz`, `/metrics`): never queued behind reads.
    async fn probe<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run_on(Pools::Probe, work).await
    }

    /// Checks that the database accepts a write (used by `/readyz`).
    pub async fn check_writable(&self) -> Result<(), StoreError> {
        self.probe(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("CREATE TEMP TABLE IF NOT EXISTS health_probe (x)", [])?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

/// Runs `work` on `conn` with SQLite's progress handler set to interrupt it after `budget`.
fn with_budget<T>(
    conn: &Connection,
    budget: Duration,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    /// Clears the handler however `work` ends (a panic included): a pooled connection must not
    /// keep a deadline that has passed.
    struct Clear<'c>(&'c Connection);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            let _ = self.0.progress_handler(0, None::<fn() -> bool>);
        }
    }
    let deadline = std::time::Instant::now() + budget;
    // Every 10,000 virtual machine steps: ~0.1 ms of work, so the clock is read rarely.
    conn.progress_handler(10_000, Some(move || std::time::Instant::now() >= deadline))?;
    let result = {
        let _clear = Clear(conn);
        work(conn)
    };
    result.map_err(|e| match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            StoreError::ReadBudget(budget)
        }
        other => other,
    })
}

/// SQLite would open a read-only file read-only and fail later, or (in WAL mode without its
/// `-shm` file) with a bare "unable to open database file"; say what is wrong up front.
fn refuse_read_only(path: &Path) -> Result<(), StoreError> {
    let probe = if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
    } else {
        Ok(())
    };
    match probe {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(StoreError::ReadOnly {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// A pool on the chatsink database at `path`, refusing a file that is missing or not migrated
/// (SQLite would create an empty one).
fn open_pool(path: &Path) -> Result<PoolSlot, StoreError> {
    let file = FileId::of(path).ok_or_else(|| StoreError::FileReplaced(path.to_owned()))?;
    let manager = || {
        SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(|conn| configure(conn))
    };
    let pool = r2d2::Pool::builder()
        .max_size(16)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(15))
        .build_unchecked(manager());
    let probe = r2d2::Pool::builder()
        .max_size(2)
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(5))
        .build_unchecked(manager());
    let version: i64 = pool
        .get()?
        .query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        return Err(StoreError::FileReplaced(path.to_owned()));
    }
    Ok(PoolSlot { pool, probe, file })
}

/// Copies the live database at `source` to `target` with SQLite's online backup API: all pages
/// in one step, so one read transaction and one consistent snapshot while writers carry on
/// (WAL). The copy is written to `target.partial`, checked, switched to a rollback journal so it
/// is one self-contained file, synced, then renamed into place. Returns its size in bytes.
pub fn backup(source: &Path, target: &Path) -> Result<u64, StoreError> {
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    from.busy_timeout(Duration::from_secs(30))?;
    let partial = target.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    {
        let mut to = Connection::open(&partial)?;
        rusqlite::backup::Backup::new(&from, &mut to)?.step(-1)?;
        to.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))?;
        let check: String = to.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::CopyDamaged(check));
        }
    }
    std::fs::File::open(&partial)?.sync_all()?;
    std::fs::rename(&partial, target)?;
    Ok(std::fs::metadata(target)?.len())
}

use crate::domain::timestamp::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability the module doc promises, read back from a connection chatsink opened.
    #[tokio::test]
    async fn connections_commit_durably_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let (synchronous, journal, foreign_keys): (i64, String, i64) = store
            .run(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT synchronous FROM pragma_synchronous),
                            (SELECT journal_mode FROM pragma_journal_mode),
                            (SELECT foreign_keys FROM pragma_foreign_keys)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .await
            .unwrap();
        // 2 is FULL: a commit is on disk before it returns.
        assert_eq!((synchronous, journal.as_str(), foreign_keys), (2, "wal", 1));
    }

    #[tokio::test]
    async fn a_panic_on_the_database_thread_is_reported_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).unwrap();
        let e = store
            .run(|_| -> Result<(), StoreError> { panic!("the work broke") })
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Panicked(m) if m == "the work broke"),
            "{e:?}"
        );
        assert!(!e.is_unavailable(), "a bug, not an outage");
        // The store still works afterwards.
        assert_eq!(store.backlog().await.unwrap(), 0);
    }

    fn count_to(conn: &Connection, n: i64) -> rusqlite::Result<i64> {
        conn.query_row(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1)
             SELECT count(*) FROM c",
            [n],
            |r| r.get(0),
        )
    }

    #[test]
    fn a_read_past_its_budget_is_interrupted_and_the_connection_stays_usable() {
        let conn = Connection::open_in_memory().unwrap();
        let slow = with_budget(&conn, Duration::from_millis(5), |c| {
            Ok(count_to(c, 100_000_000)?)
        });
        assert!(matches!(slow, Err(StoreError::ReadBudget(_))), "{slow:?}");
        // A panic inside the work clears the handler too: its deadline must not outlive it.
        let conn = std::panic::AssertUnwindSafe(conn);
        let _ = std::panic::catch_unwind(|| {
            with_budget(
                &conn,
                Duration::from_millis(1),
                |_| -> Result<(), StoreError> { panic!("work failed") },
            )
        });
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(count_to(&conn, 1_000_000).unwrap(), 1_000_000);
    }
}
