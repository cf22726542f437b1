//! Sessions: metadata from the webhook, counts from the last load, and the stored raw dump. Every
//! write to the `sessions` table is here.

use super::now_ms;
use crate::domain::{
    ChatSynced, JobOutcome, JobState, ListedSession, SessionDump, SessionId, SessionRecord,
    Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension};

pub const SESSION_COLUMNS: &str = "session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id, organizer_name,
     sort_ms, status, message_count, text_count, image_count, file_count, other_count, pinned_count, rejected_count,
     first_message_ms, last_message_ms, loaded_ms,
     (SELECT j.last_error FROM jobs j WHERE j.session_id = sessions.session_id ORDER BY j.id DESC LIMIT 1)";

pub fn session_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        session_id: row.get(0)?,
        meeting_id: row.get(1)?,
        title: row.get(2)?,
        created_at: row.get(3)?,
        started_at: row.get(4)?,
        ended_at: row.get(5)?,
        organizer_id: row.get(6)?,
        organizer_name: row.get(7)?,
        sort_ms: row.get(8)?,
        status: row.get(9)?,
        message_count: row.get(10)?,
        text_count: row.get(11)?,
        image_count: row.get(12)?,
        file_count: row.get(13)?,
        other_count: row.get(14)?,
        pinned_count: row.get(15)?,
        rejected_count: row.get(16)?,
        first_message_ms: row.get(17)?,
        last_message_ms: row.get(18)?,
        loaded_ms: row.get(19)?,
        last_error: row.get(20)?,
    })
}

pub fn get_session(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<SessionRecord>> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1"),
        [session_id],
        session_from_row,
    )
    .optional()
}

pub fn session_dump(
    conn: &Connection,
    session: &SessionId,
) -> rusqlite::Result<Option<SessionDump>> {
    conn.query_row(
        "SELECT dump_path, dump_sha256 FROM sessions WHERE session_id = ?1 AND dump_path IS NOT NULL",
        [session.as_str()],
        |r| Ok(SessionDump { key: r.get(0)?, sha256: r.get(1)? }),
    )
    .optional()
}

/// Records the dump a session was loaded from; in the load's transaction. The dump it replaces
/// goes to the trash: a superseded dump may hold rows erased later, and nothing reads it again.
pub fn set_session_dump(
    conn: &Connection,
    session: &SessionId,
    dump: &SessionDump,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO dump_trash (key, at_ms)
         SELECT dump_path, ?3 FROM sessions
         WHERE session_id = ?1 AND dump_path IS NOT NULL AND dump_path IS NOT ?2
         ON CONFLICT DO NOTHING",
        params![session.as_str(), dump.key, now_ms()],
    )?;
    conn.execute(
        "UPDATE sessions SET dump_path = ?2, dump_sha256 = ?3, updated_ms = ?4 WHERE session_id = ?1",
        params![session.as_str(), dump.key, dump.sha256, now_ms()],
    )?;
    Ok(())
}

/// Records a `meeting.chatSynced` delivery's session metadata and marks the session queued; in
/// the intake's transaction. Metadata a delivery lacks keeps what an earlier one brought. An
/// erased (or purged) session gets no row again: its delivery is kept, its job loads nothing.
pub fn record_delivery(
    tx: &Connection,
    chat: &ChatSynced,
    received: Timestamp,
    now: i64,
) -> rusqlite::Result<()> {
    let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let sort_ms = chat
        .started_at
        .or(chat.created_at)
        .map(Timestamp::millis)
        .unwrap_or(received.millis());
    tx.prepare_cached(
        "INSERT INTO sessions (session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id, organizer_name,
                               sort_ms, status, updated_ms)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10
         WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = ?1)
         ON CONFLICT (session_id) DO UPDATE SET
            meeting_id = coalesce(excluded.meeting_id, meeting_id),
            title = coalesce(excluded.title, title),
            created_at = coalesce(excluded.created_at, created_at),
            started_at = coalesce(excluded.started_at, started_at),
            ended_at = coalesce(excluded.ended_at, ended_at),
            organizer_id = coalesce(excluded.organizer_id, organizer_id),
            organizer_name = coalesce(excluded.organizer_name, organizer_name),
            sort_ms = CASE WHEN excluded.started_at IS NOT NULL OR excluded.created_at IS NOT NULL
                           THEN excluded.sort_ms ELSE sort_ms END,
            status = 'queued',
            updated_ms = excluded.updated_ms",
    )?
    .execute(params![
            chat.session_id.as_str(),
            chat.meeting_id,
            chat.title,
            iso(chat.created_at),
            iso(chat.started_at),
            iso(chat.ended_at),
            chat.organizer_id,
            chat.organizer_name,
            sort_ms,
            now
        ],
    )?;
    Ok(())
}

/// Records a session found in RealtimeKit's sessions listing, for a pull job: its metadata fills
/// only what no webhook brought, and it is queued.
pub fn record_listed(tx: &Connection, session: &ListedSession, now: i64) -> rusqlite::Result<()> {
    let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let sort_ms = session
        .started_at
        .or(session.created_at)
        .map(Timestamp::millis)
        .unwrap_or(now);
    tx.prepare_cached(
        "INSERT INTO sessions (session_id, meeting_id, title, created_at, started_at, ended_at, sort_ms, status, updated_ms)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8
         WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = ?1)
         ON CONFLICT (session_id) DO UPDATE SET
            meeting_id = coalesce(meeting_id, excluded.meeting_id),
            title = coalesce(title, excluded.title),
            created_at = coalesce(created_at, excluded.created_at),
            started_at = coalesce(started_at, excluded.started_at),
            ended_at = coalesce(ended_at, excluded.ended_at),
            sort_ms = CASE WHEN started_at IS NULL AND created_at IS NULL THEN excluded.sort_ms ELSE sort_ms END,
            status = 'queued',
            updated_ms = excluded.updated_ms",
    )?
    .execute(params![
        session.id.as_str(),
        session.meeting_id,
        session.title,
        iso(session.created_at),
        iso(session.started_at),
        iso(session.ended_at),
        sort_ms,
        now
    ])?;
    Ok(())
}

/// The session of a job done without a load: `no_chat` (and archived, so nothing pulls it
/// again), or for an unchanged dump what its last load left.
pub fn settle_unloaded(
    tx: &Connection,
    session: &SessionId,
    outcome: JobOutcome,
    now: i64,
) -> rusqlite::Result<()> {
    let sql = match outcome {
        // The session's row went with its erasure; its tombstone is all there is.
        JobOutcome::Erased => return Ok(()),
        JobOutcome::NoChat => {
            "UPDATE sessions SET status = 'no_chat', loaded_ms = ?2, updated_ms = ?2 WHERE session_id = ?1"
        }
        JobOutcome::Unchanged | JobOutcome::Loaded => {
            "UPDATE sessions SET status = CASE WHEN message_count = 0 AND rejected_count = 0 THEN 'no_chat' ELSE 'loaded' END,
                                 updated_ms = ?2
             WHERE session_id = ?1"
        }
    };
    tx.execute(sql, params![session.as_str(), now])?;
    Ok(())
}

/// The session's key for a load, and whether this load created its row: a dump can arrive
/// without a webhook (`chatsink ingest`), and then its row starts here.
pub fn key_for_load(
    conn: &Connection,
    session: &SessionId,
    now: i64,
) -> rusqlite::Result<(i64, bool)> {
    let new_session = conn
        .prepare_cached(
            "INSERT INTO sessions (session_id, sort_ms, status, updated_ms) VALUES (?1, ?2, 'loaded', ?2)
             ON CONFLICT (session_id) DO NOTHING",
        )?
        .execute(params![session.as_str(), now])?
        > 0;
    let key = conn
        .prepare_cached("SELECT session_key FROM sessions WHERE session_id = ?1")?
        .query_row([session.as_str()], |r| r.get(0))?;
    Ok((key, new_session))
}

/// Recomputes the session's counts from its stored rows and marks it loaded. A session whose
/// row this load started (no webhook came first) is placed in the session list by its first
/// message.
pub fn refresh_counts(
    conn: &Connection,
    session_key: i64,
    new_session: bool,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "UPDATE sessions SET status = 'loaded', loaded_ms = ?2, updated_ms = ?2 WHERE session_key = ?1",
    )?
    .execute(params![session_key, now])?;
    let message_count = recount(conn, session_key, now)?;
    if new_session {
        conn.execute(
            "UPDATE sessions SET sort_ms = coalesce(first_message_ms, sort_ms) WHERE session_key = ?1",
            [session_key],
        )?;
    }
    Ok(message_count)
}

/// Recomputes the session's counts from its stored rows (after a load, or an erasure that took
/// some of them); a loaded session left without a row has no chat. Returns its message count.
pub fn recount(conn: &Connection, session_key: i64, now: i64) -> rusqlite::Result<i64> {
    let message_count = conn.prepare_cached(
        "UPDATE sessions SET
            meeting_id = coalesce(meeting_id,
                (SELECT mt.meeting_id FROM messages m JOIN meetings mt ON mt.meeting_key = m.meeting_key
                 WHERE m.session_key = ?1 LIMIT 1)),
            (message_count, text_count, image_count, file_count, other_count, pinned_count, first_message_ms, last_message_ms) =
                (SELECT count(*), coalesce(sum(kind = 'text'), 0), coalesce(sum(kind = 'image'), 0),
                        coalesce(sum(kind = 'file'), 0), coalesce(sum(kind NOT IN ('text', 'image', 'file')), 0),
                        coalesce(sum(pinned), 0), min(created_ms), max(created_ms)
                 FROM messages WHERE session_key = ?1),
            rejected_count = (SELECT count(*) FROM rejected_rows WHERE rejected_rows.session_id = sessions.session_id),
            updated_ms = ?2
         WHERE session_key = ?1
         RETURNING message_count",
    )?
    .query_row(params![session_key, now], |r| r.get(0))?;
    // A dump without a row: the session has no chat.
    conn.prepare_cached(
        "UPDATE sessions SET status = 'no_chat'
         WHERE session_key = ?1 AND status = 'loaded' AND message_count = 0 AND rejected_count = 0",
    )?
    .execute([session_key])?;
    Ok(message_count)
}

/// The session of a job that failed or died takes the job's state.
pub fn set_status_for_job(
    conn: &Connection,
    job_id: i64,
    state: JobState,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET status = ?2, updated_ms = ?3
         WHERE session_id = (SELECT session_id FROM jobs WHERE id = ?1)",
        params![job_id, state.as_str(), now],
    )?;
    Ok(())
}
