//! A session's participants on SQLite: replaced whole each time they are fetched, without the
//! erased, and looked up to tell who a sender is in the app's own terms.

use super::governance;
use crate::domain::{Participant, SessionId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Replaces the session's participants with `list` (less erased users) and records when; false
/// when the session is not in the archive (never loaded, erased or purged).
pub fn store(
    conn: &mut Connection,
    session: &SessionId,
    list: &[Participant],
    now: i64,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(key): Option<i64> = tx
        .query_row(
            "SELECT session_key FROM sessions WHERE session_id = ?1",
            [session.as_str()],
            |r| r.get(0),
        )
        .optional()?
    else {
        return Ok(false);
    };
    if governance::session_erased(&tx, session.as_str())? {
        return Ok(false);
    }
    let erased = governance::erasure_list(&tx)?;
    tx.execute(
        "DELETE FROM session_participants WHERE session_key = ?1",
        [key],
    )?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO session_participants (session_key, participant_id, rtk_user_id,
                 custom_participant_id, display_name, preset_name, joined_ms, left_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO NOTHING",
        )?;
        for p in list.iter().filter(|p| !erased.names_participant(p)) {
            insert.execute(params![
                key,
                p.participant_id,
                p.user_id,
                p.custom_participant_id,
                p.display_name,
                p.preset_name,
                p.joined_at.map(|t| t.millis()),
                p.left_at.map(|t| t.millis()),
            ])?;
        }
    }
    tx.execute(
        "UPDATE sessions SET participants_ms = ?2 WHERE session_key = ?1",
        params![key, now],
    )?;
    tx.commit()?;
    Ok(true)
}

/// Of `sessions`, those loaded whose participants were never fetched.
pub fn without_participants(
    conn: &Connection,
    sessions: &[SessionId],
) -> rusqlite::Result<Vec<SessionId>> {
    let mut query = conn.prepare_cached(
        "SELECT 1 FROM sessions WHERE session_id = ?1 AND status = 'loaded' AND participants_ms IS NULL",
    )?;
    let mut missing = Vec::new();
    for session in sessions {
        if query.exists([session.as_str()])? {
            missing.push(session.clone());
        }
    }
    Ok(missing)
}

/// The app's id for each sender (by peer id or user id) of the sessions `keys`, by (session
/// key, sender id); where two participants claim a sender, the first by peer id wins.
pub fn custom_ids(
    conn: &Connection,
    keys: &std::collections::BTreeSet<i64>,
) -> rusqlite::Result<std::collections::HashMap<(i64, String), String>> {
    let mut found = std::collections::HashMap::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let list = keys
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut query = conn.prepare_cached(
        "SELECT session_key, participant_id, rtk_user_id, custom_participant_id
         FROM session_participants
         WHERE session_key IN (SELECT value FROM json_each(?1)) AND custom_participant_id IS NOT NULL
         ORDER BY session_key, participant_id",
    )?;
    let rows = query.query_map([format!("[{list}]")], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (key, peer, user, custom) = row?;
        for sender in std::iter::once(peer).chain(user) {
            found.entry((key, sender)).or_insert_with(|| custom.clone());
        }
    }
    Ok(found)
}
