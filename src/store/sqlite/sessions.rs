//! Sessions: metadata from the webhook, counts from the last load, and the stored raw dump.

use super::now_ms;
use crate::domain::{SessionDump, SessionId, SessionRecord};
use rusqlite::{params, Connection, OptionalExtension};

pub const SESSION_COLUMNS: &str = "session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id, organizer_name,
     sort_ms, status, message_count, text_count, image_count, file_count, other_count, pinned_count, rejected_count,
     first_message_ms, last_message_ms, loaded_ms";

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
        |r| Ok(SessionDump { path: r.get(0)?, sha256: r.get(1)? }),
    )
    .optional()
}

/// Records the dump a session was loaded from; in the load's transaction.
pub fn set_session_dump(
    conn: &Connection,
    session: &SessionId,
    dump: &SessionDump,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sessions SET dump_path = ?2, dump_sha256 = ?3, updated_ms = ?4 WHERE session_id = ?1",
        params![session.as_str(), dump.path, dump.sha256, now_ms()],
    )?;
    Ok(())
}
