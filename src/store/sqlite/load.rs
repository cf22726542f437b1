//! Loading a session's messages. The caller owns the transaction: a load commits whole or not at
//! all, so a crash mid-load leaves the previous state intact.

use super::now_ms;
use super::{governance, jobs, sessions};
use crate::domain::{
    ClaimedJob, ErasedLast, ErasureList, JobOutcome, LoadReport, LoadRow, RejectedRow, RowSource,
    SessionDump, SessionId, StoredRejectedRow,
};
use crate::store::{FileLoad, JobLoad};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{HashMap, HashSet};

/// Loads `rows` for `session` in a batch of its own: see [`LoadBatch::load_session`].
pub fn load_session<I>(
    conn: &Connection,
    session: &SessionId,
    rows: I,
    replace: bool,
) -> rusqlite::Result<LoadReport>
where
    I: IntoIterator<Item = LoadRow>,
{
    let mut batch = LoadBatch::begin(conn)?;
    let report = batch.load_session(session, rows, replace)?;
    batch.finish()?;
    Ok(report)
}

/// Rows after which a multi-session file load commits, at the end of the session it is in: large
/// enough that a batch's index pages and full-text segment are written once for many small
/// sessions, small enough that a running service's writers, which wait up to 10 s for the lock,
/// wait about 2 s.
const BATCH_ROWS: i64 = 250_000;

/// The page cache (KiB) of the connection while it loads batches. Peak memory of a 1M-row
/// `ingest` stays near 100 MB.
const BATCH_CACHE_KIB: i64 = 65_536;

/// [`crate::store::Store::load_job`]: the session's rows, its dump and the job's `done` in one
/// `BEGIN IMMEDIATE` transaction, which commits only while the job's lease is this attempt's.
pub fn load_job<R: RowSource>(
    conn: &mut Connection,
    job: &ClaimedJob,
    mut rows: R,
    dump: &SessionDump,
) -> rusqlite::Result<JobLoad> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !jobs::holds_lease(&tx, job.id, &job.lease_token)? {
        return Ok(JobLoad::LeaseLost);
    }
    if governance::session_erased(&tx, job.session_id.as_str())? {
        governance::trash_key(&tx, dump.key.as_deref())?;
        if !jobs::complete_job(&tx, job, 0, 0, JobOutcome::Erased)? {
            return Ok(JobLoad::LeaseLost);
        }
        tx.commit()?;
        return Ok(JobLoad::Erased);
    }
    let report = load_session(&tx, &job.session_id, &mut rows, true)?;
    if let Some(e) = rows.failure() {
        // Dropping the transaction rolls the partial load back.
        return Ok(JobLoad::InputFailed(e));
    }
    if report.rows_erased > 0 {
        // The dump holds erased rows: it is not kept (its sha256 is, to know it again).
        governance::trash_key(&tx, dump.key.as_deref())?;
        let unkept = SessionDump {
            key: None,
            sha256: dump.sha256.clone(),
        };
        sessions::set_session_dump(&tx, &job.session_id, &unkept)?;
    } else {
        sessions::set_session_dump(&tx, &job.session_id, dump)?;
    }
    if !jobs::complete_job(
        &tx,
        job,
        report.rows_loaded,
        report.rows_rejected,
        JobOutcome::Loaded,
    )? {
        return Ok(JobLoad::LeaseLost);
    }
    crate::failpoint::hit("load.before_commit");
    tx.commit()?;
    crate::failpoint::hit("load.after_commit");
    Ok(JobLoad::Loaded(report))
}

/// [`crate::store::Store::load_file`] on one connection.
pub fn load_file<R: RowSource>(
    conn: &mut Connection,
    mut rows: R,
    session: Option<&SessionId>,
    mut committed: impl FnMut(&SessionId, &LoadReport),
) -> rusqlite::Result<FileLoad> {
    if let Some(session) = session {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let report = load_session(&tx, session, &mut rows, true)?;
        if let Some(e) = rows.failure() {
            return Ok(FileLoad {
                input_failed: Some(e),
                ..FileLoad::default()
            });
        }
        tx.commit()?;
        committed(session, &report);
        return Ok(FileLoad {
            sessions: vec![(session.clone(), report)],
            ..FileLoad::default()
        });
    }
    with_page_cache(conn, BATCH_CACHE_KIB, |conn| {
        load_in_batches(conn, Peeked::new(rows), committed)
    })?
}

/// Rows with one of look-ahead, still asking their source whether it ended early.
struct Peeked<R: RowSource> {
    rows: R,
    next: Option<LoadRow>,
}

impl<R: RowSource> Peeked<R> {
    fn new(mut rows: R) -> Self {
        let next = rows.next();
        Self { rows, next }
    }

    fn peek(&self) -> Option<&LoadRow> {
        self.next.as_ref()
    }

    fn take(&mut self) -> Option<LoadRow> {
        std::mem::replace(&mut self.next, self.rows.next())
    }
}

/// The multi-session part of [`load_file`]: one transaction per batch of whole sessions (see
/// [`LoadBatch`]). A session that shows up again later in the file is merged into what its first
/// run loaded, so the end state equals the file either way. Rejected rows that name no readable
/// session join the next session's run; those left over at the end are counted as orphans.
fn load_in_batches<R: RowSource>(
    conn: &mut Connection,
    mut rows: Peeked<R>,
    mut committed: impl FnMut(&SessionId, &LoadReport),
) -> rusqlite::Result<FileLoad> {
    let mut out = FileLoad::default();
    let mut loaded: HashSet<SessionId> = HashSet::new();
    let mut orphans: Vec<LoadRow> = Vec::new();
    let mut current: Option<SessionId> = None;
    while rows.peek().is_some() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut batch = LoadBatch::begin(&tx)?;
        let mut batch_rows = 0;
        let mut reports = Vec::new();
        while let Some(next) = rows.peek() {
            if batch_rows >= BATCH_ROWS {
                break;
            }
            let Some(session) = next.session().or_else(|| current.clone()) else {
                orphans.push(rows.take().expect("peeked"));
                continue;
            };
            current = Some(session.clone());
            let run = orphans
                .drain(..)
                .chain(std::iter::from_fn(|| match rows.peek() {
                    Some(row) if row.session().is_none_or(|s| s == session) => rows.take(),
                    _ => None,
                }));
            let first_run = loaded.insert(session.clone());
            let report = batch.load_session(&session, run, first_run)?;
            batch_rows += report.rows_loaded + report.rows_rejected;
            reports.push((session, report));
        }
        if let Some(e) = rows.rows.failure() {
            // Rows ended early: the last session may be cut short. Dropping tx rolls it back.
            out.input_failed = Some(e);
            break;
        }
        batch.finish()?;
        tx.commit()?;
        for (session, report) in reports {
            committed(&session, &report);
            out.sessions.push((session, report));
        }
    }
    out.orphans = orphans.len();
    Ok(out)
}

/// The loads of one write transaction: any number of sessions, then [`LoadBatch::finish`], then
/// the caller's commit. A webhook job loads one session per batch; `chatsink ingest` puts many
/// small sessions in one, so it commits (and writes each index page) once per batch, not once
/// per session. Each session is still loaded whole or not at all.
///
/// The full-text index is kept here rather than by triggers, once per batch: FTS5 writes a new
/// segment at the end of every statement that changes it (and merges segments as they pile up),
/// so a trigger, one statement per row, spent most of a bulk load writing and merging tiny
/// segments. Instead the rows the batch added are indexed in one statement by `finish`, and the
/// few it changed or deleted have their old terms removed first.
#[must_use = "a batch's rows are not in the full-text index until finish() runs"]
pub struct LoadBatch<'c> {
    conn: &'c Connection,
    /// Rows inserted by this batch get seqs above this (the transaction is the only writer).
    seq_before: i64,
    users: Keys,
    meetings: Keys,
    /// Read once per batch, in its write transaction: an erasure committed before it is applied.
    erased: ErasureList,
}

/// A table of ids and the integer keys `messages` stores in their place (schema.sql), with the
/// keys this batch has used so far. Each key is looked up, or handed out, once per batch; the
/// memo goes with the batch, so a rolled-back key is never reused.
struct Keys {
    select: &'static str,
    insert: &'static str,
    memo: HashMap<String, i64>,
}

impl Keys {
    fn new(select: &'static str, insert: &'static str) -> Self {
        Self {
            select,
            insert,
            memo: HashMap::new(),
        }
    }

    fn key(&mut self, conn: &Connection, id: &str) -> rusqlite::Result<i64> {
        if let Some(key) = self.memo.get(id) {
            return Ok(*key);
        }
        let found = conn
            .prepare_cached(self.select)?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let key = match found {
            Some(key) => key,
            None => {
                conn.prepare_cached(self.insert)?.execute([id])?;
                conn.last_insert_rowid()
            }
        };
        self.memo.insert(id.to_owned(), key);
        Ok(key)
    }
}

/// Messages staged in `temp.load_rows` before one statement writes them to `messages`. One
/// statement per row reopened all nine of the table's B-trees and searched each from its root
/// for every row; one per chunk keeps them open and positioned (1M rows: 3.5 s of inserts row by
/// row, 2.3 s plus 0.45 s of staging in chunks). The chunk bounds the staging table's memory.
const STAGE_ROWS: usize = 2048;

impl<'c> LoadBatch<'c> {
    /// Starts a batch in the caller's write transaction.
    pub fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS load_rows (
                 n INTEGER PRIMARY KEY, id TEXT, meeting_key INTEGER, user_key INTEGER,
                 display_name TEXT, kind TEXT, pinned INTEGER, edited INTEGER, link TEXT,
                 file_name TEXT, file_size INTEGER, payload TEXT, created_ms INTEGER,
                 extra TEXT, target_user_ids TEXT);
             CREATE TEMP TABLE IF NOT EXISTS load_seen (id TEXT PRIMARY KEY) WITHOUT ROWID;
             CREATE TEMP TABLE IF NOT EXISTS fts_stale (seq INTEGER PRIMARY KEY, text, file_name, display_name);
             DELETE FROM temp.load_rows;
             DELETE FROM temp.fts_stale;",
        )?;
        let seq_before = conn.query_row("SELECT coalesce(max(seq), 0) FROM messages", [], |r| {
            r.get(0)
        })?;
        Ok(Self {
            conn,
            seq_before,
            erased: governance::erasure_list(conn)?,
            users: Keys::new(
                "SELECT user_key FROM participants WHERE user_id = ?1",
                "INSERT INTO participants (user_id) VALUES (?1)",
            ),
            meetings: Keys::new(
                "SELECT meeting_key FROM meetings WHERE meeting_id = ?1",
                "INSERT INTO meetings (meeting_id) VALUES (?1)",
            ),
        })
    }

    /// Loads `rows` for `session`: each message inserted, or updated when its content changed
    /// (its `seq`, and so its place in every cursor, is kept); with `replace`, messages of the
    /// session missing from `rows` are deleted. Loading the same rows twice therefore changes
    /// nothing. With `replace` false the rows are merged in without deleting (a later part of a
    /// multi-session file). A message that appears twice ends as its last appearance.
    ///
    /// Rows whose session differs from `session` are recorded as rejected.
    pub fn load_session<I>(
        &mut self,
        session: &SessionId,
        rows: I,
        replace: bool,
    ) -> rusqlite::Result<LoadReport>
    where
        I: IntoIterator<Item = LoadRow>,
    {
        let conn = self.conn;
        let now = now_ms();
        if governance::session_erased(conn, session.as_str())? {
            // Erased or purged: nothing of it is stored again, not even its row.
            return Ok(LoadReport {
                rows_erased: rows.into_iter().count() as i64,
                ..LoadReport::default()
            });
        }
        conn.execute("DELETE FROM temp.load_seen", [])?;
        let (session_key, new_session) = sessions::key_for_load(conn, session, now)?;
        let had_rows: bool = !new_session
            && conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE session_key = ?1)",
                [session_key],
                |r| r.get(0),
            )?;
        if replace {
            conn.execute(
                "DELETE FROM rejected_rows WHERE session_id = ?1",
                [session.as_str()],
            )?;
        }
        let chunk = StagedChunk {
            session_key,
            had_rows,
            // Only a session that had rows can have rows to delete.
            track_seen: replace && had_rows,
            seq_before: self.seq_before,
        };
        let mut report = LoadReport::default();
        let mut staged = 0;
        // Every sender of the dump, rows a later one with the same id replaced included: an
        // erasure of any of them must find this session's kept dump.
        let mut senders = std::collections::BTreeSet::new();
        let mut erased_last = ErasedLast::default();
        {
            let mut stage = conn.prepare_cached(
                "INSERT INTO temp.load_rows (id, meeting_key, user_key, display_name, kind, pinned, edited,
                                             link, file_name, file_size, payload, created_ms,
                                             extra, target_user_ids)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut reject = conn.prepare_cached(
                "INSERT INTO rejected_rows (session_id, line, reason, raw, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for row in rows {
                let kept = self.erased.keeps(&row);
                if let LoadRow::Message(m) = &row {
                    if &m.session_id == session {
                        erased_last.note(&m.id, kept);
                    }
                }
                if !kept {
                    report.rows_erased += 1;
                    continue;
                }
                match row {
                    LoadRow::Message(mut m) if &m.session_id == session => {
                        if self.erased.scrub(&mut m) {
                            report.rows_erased += 1;
                        }
                        let targets = m
                            .target_user_ids
                            .as_ref()
                            .map(|t| serde_json::to_string(t).expect("strings serialise"));
                        let sender = self.users.key(conn, &m.user_id)?;
                        senders.insert(sender);
                        stage.execute(params![
                            m.id,
                            self.meetings.key(conn, &m.meeting_id)?,
                            sender,
                            m.display_name,
                            m.kind.as_str(),
                            m.pinned,
                            m.edited,
                            m.link,
                            m.file_name,
                            m.file_size,
                            m.payload,
                            m.created.millis(),
                            m.extra,
                            targets,
                        ])?;
                        staged += 1;
                        report.rows_loaded += 1;
                        if staged == STAGE_ROWS {
                            chunk.write(conn)?;
                            staged = 0;
                            // Rows are in `messages` and more are coming: the middle of a load.
                            crate::failpoint::hit("load.mid");
                        }
                    }
                    LoadRow::Message(m) => {
                        let reason =
                            RejectedRow::other_session_reason(m.session_id.as_str(), session);
                        reject.execute(params![
                            session.as_str(),
                            0,
                            reason,
                            m.id.as_bytes(),
                            now
                        ])?;
                        report.rows_rejected += 1;
                    }
                    LoadRow::Rejected(r) => {
                        reject.execute(params![
                            session.as_str(),
                            r.line as i64,
                            r.reason,
                            r.raw,
                            now
                        ])?;
                        report.rows_rejected += 1;
                    }
                }
            }
        }
        if staged > 0 {
            chunk.write(conn)?;
        }
        if !erased_last.is_empty() {
            // An id whose last row is erased: an earlier row of it (another sender's) was
            // written above, or is kept from a previous load; neither may stay.
            let ids = serde_json::to_string(&erased_last.ids().collect::<Vec<_>>())
                .expect("strings serialise");
            conn.execute(
                "INSERT OR IGNORE INTO temp.fts_stale (seq, text, file_name, display_name)
                 SELECT seq, text, file_name, display_name FROM messages
                 WHERE session_key = ?1 AND seq <= ?2 AND id IN (SELECT value FROM json_each(?3))",
                params![session_key, self.seq_before, ids],
            )?;
            conn.execute(
                "DELETE FROM messages WHERE session_key = ?1 AND id IN (SELECT value FROM json_each(?2))",
                params![session_key, ids],
            )?;
        }
        if chunk.track_seen {
            conn.execute(
                "INSERT OR IGNORE INTO temp.fts_stale (seq, text, file_name, display_name)
                 SELECT seq, text, file_name, display_name FROM messages
                 WHERE session_key = ?1 AND seq <= ?2 AND id NOT IN (SELECT id FROM temp.load_seen)",
                params![session_key, self.seq_before],
            )?;
            conn.execute(
                "DELETE FROM messages WHERE session_key = ?1 AND id NOT IN (SELECT id FROM temp.load_seen)",
                [session_key],
            )?;
        }
        if replace {
            conn.prepare_cached("DELETE FROM dump_senders WHERE session_key = ?1")?
                .execute([session_key])?;
        }
        let mut record = conn.prepare_cached(
            "INSERT OR IGNORE INTO dump_senders (session_key, user_key) VALUES (?1, ?2)",
        )?;
        for sender in senders {
            record.execute([session_key, sender])?;
        }
        report.messages = sessions::refresh_counts(conn, session_key, new_session, now)?;
        Ok(report)
    }

    /// Brings the full-text index up to the batch's rows: old terms out, then the rows the batch
    /// added or changed in. Call it before committing.
    pub fn finish(self) -> rusqlite::Result<()> {
        self.conn.execute_batch(
            "INSERT INTO messages_fts (messages_fts, rowid, text, file_name, display_name)
             SELECT 'delete', seq, text, file_name, display_name FROM temp.fts_stale;",
        )?;
        // Two statements: an OR of the two would scan the whole table.
        self.conn.execute(
            "INSERT INTO messages_fts (rowid, text, file_name, display_name)
             SELECT seq, text, file_name, display_name FROM messages WHERE seq > ?1",
            [self.seq_before],
        )?;
        self.conn.execute_batch(
            "INSERT INTO messages_fts (rowid, text, file_name, display_name)
             SELECT m.seq, m.text, m.file_name, m.display_name
             FROM temp.fts_stale s JOIN messages m ON m.seq = s.seq;",
        )
    }
}

/// How one session's staged rows are written (see [`STAGE_ROWS`]).
struct StagedChunk {
    session_key: i64,
    /// The session had stored rows before this load: some staged rows may change them.
    had_rows: bool,
    /// Record the staged ids, for deleting the rows a replacing load no longer has.
    track_seen: bool,
    seq_before: i64,
}

impl StagedChunk {
    /// Writes the staged rows to `messages` in dump order, and empties the stage.
    fn write(&self, conn: &Connection) -> rusqlite::Result<()> {
        if self.had_rows {
            // Rows indexed by an earlier batch keep the terms they were indexed with, so those
            // can be removed (the first time only: those are the terms in the index). A row
            // staged twice may be kept when only one staging differs: it is then re-indexed
            // with the same terms, which is harmless.
            conn.prepare_cached(
                "INSERT OR IGNORE INTO temp.fts_stale (seq, text, file_name, display_name)
                 SELECT m.seq, m.text, m.file_name, m.display_name
                 FROM temp.load_rows s JOIN messages m ON m.session_key = ?1 AND m.id = s.id
                 WHERE m.seq <= ?2
                   AND (m.meeting_key, m.user_key, m.display_name, m.kind, m.pinned, m.edited, m.link,
                        m.file_name, m.file_size, m.payload, m.created_ms)
                       IS NOT (s.meeting_key, s.user_key, s.display_name, s.kind, s.pinned, s.edited, s.link,
                               s.file_name, s.file_size, s.payload, s.created_ms)",
            )?
            .execute(params![self.session_key, self.seq_before])?;
        }
        // `ORDER BY` also settles the parse of `SELECT ... ON CONFLICT`.
        conn.prepare_cached(
            "INSERT INTO messages (id, session_key, meeting_key, user_key, display_name, kind, pinned, edited,
                                   link, file_name, file_size, payload, created_ms, extra, target_user_ids)
             SELECT id, ?1, meeting_key, user_key, display_name, kind, pinned, edited,
                    link, file_name, file_size, payload, created_ms, extra, target_user_ids
             FROM temp.load_rows ORDER BY n
             ON CONFLICT (session_key, id) DO UPDATE SET
                meeting_key = excluded.meeting_key, user_key = excluded.user_key, display_name = excluded.display_name,
                kind = excluded.kind, pinned = excluded.pinned, edited = excluded.edited,
                link = excluded.link, file_name = excluded.file_name, file_size = excluded.file_size,
                payload = excluded.payload, created_ms = excluded.created_ms, extra = excluded.extra,
                target_user_ids = excluded.target_user_ids
             WHERE (meeting_key, user_key, display_name, kind, pinned, edited, link, file_name, file_size,
                    payload, created_ms, extra, target_user_ids)
                IS NOT (excluded.meeting_key, excluded.user_key, excluded.display_name, excluded.kind,
                        excluded.pinned, excluded.edited, excluded.link, excluded.file_name,
                        excluded.file_size, excluded.payload, excluded.created_ms, excluded.extra,
                        excluded.target_user_ids)",
        )?
        .execute([self.session_key])?;
        if self.track_seen {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO temp.load_seen (id) SELECT id FROM temp.load_rows",
            )?
            .execute([])?;
        }
        conn.prepare_cached("DELETE FROM temp.load_rows")?
            .execute([])?;
        Ok(())
    }
}

/// Runs `work` with the connection's page cache set to `kib` KiB, and restores the old size
/// after, whatever `work` returned. A bulk load's batch dirties more pages than the pool's
/// default cache holds; spilling them mid-transaction and reading them back cost a tenth of it.
fn with_page_cache<T>(
    conn: &mut Connection,
    kib: i64,
    work: impl FnOnce(&mut Connection) -> T,
) -> rusqlite::Result<T> {
    let normal: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -kib)?;
    let result = work(conn);
    conn.pragma_update(None, "cache_size", normal)?;
    Ok(result)
}

/// A session's rejected rows in file order, keyset after `after` (a [`StoredRejectedRow::id`];
/// ids grow in file order within one load).
pub fn rejected_page(
    conn: &Connection,
    session: &str,
    after: Option<i64>,
    limit: u32,
) -> rusqlite::Result<Vec<StoredRejectedRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, line, reason, raw FROM rejected_rows
         WHERE session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(rusqlite::params![session, after.unwrap_or(0), limit], |r| {
        Ok(StoredRejectedRow {
            id: r.get(0)?,
            line: r.get(1)?,
            reason: r.get(2)?,
            raw: r.get(3)?,
        })
    })?;
    rows.collect()
}
