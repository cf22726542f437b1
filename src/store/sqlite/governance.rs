//! Tokens, the erasure list, erasure itself, the dump trash and the audit log on SQLite.

use super::sessions;
use crate::domain::{
    decode_token_scope, names_as_field, scrub_user_fields, AuditEntry, AuditQuery, EraseStep,
    EraseTarget, Erased, ErasureList, ErasureRecord, Scrub, TokenRecord,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::time::{Duration, Instant};

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let scope = decode_token_scope(r.get::<_, Option<String>>(2)?.as_deref());
    Ok(TokenRecord {
        name: r.get(0)?,
        admin: r.get(1)?,
        meetings: scope.as_ref().ok().cloned().flatten(),
        created_ms: r.get(3)?,
        expires_ms: r.get(4)?,
        last_used_ms: r.get(5)?,
        revoked_ms: r.get(6)?,
        unreadable_scope: scope.err(),
    })
}

const TOKEN_COLUMNS: &str =
    "name, admin, meetings, created_ms, expires_ms, last_used_ms, revoked_ms";

/// False when a token of that name exists (revoked ones too: a name means one token for ever).
pub fn create_token(
    conn: &Connection,
    token: &TokenRecord,
    secret_sha256: &str,
) -> rusqlite::Result<bool> {
    let meetings = token
        .meetings
        .as_ref()
        .map(|m| serde_json::to_string(m).expect("strings serialise"));
    Ok(conn.execute(
        "INSERT INTO tokens (name, secret_sha256, admin, meetings, created_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![
            token.name,
            secret_sha256,
            token.admin,
            meetings,
            token.created_ms,
            token.expires_ms
        ],
    )? == 1)
}

pub fn tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenRecord>> {
    conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"))?
        .query_map([], token_from_row)?
        .collect()
}

pub fn revoke_token(conn: &Connection, name: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE tokens SET revoked_ms = coalesce(revoked_ms, ?2) WHERE name = ?1",
        params![name, now],
    )? == 1)
}

pub fn token_by_hash(conn: &Connection, sha256: &str) -> rusqlite::Result<Option<TokenRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_sha256 = ?1"
    ))?
    .query_row([sha256], token_from_row)
    .optional()
}

/// The erased users and messages (see [`ErasureList`]).
pub fn erasure_list(conn: &Connection) -> rusqlite::Result<ErasureList> {
    let mut list = ErasureList::default();
    let mut stmt = conn.prepare_cached("SELECT kind, id FROM erasures WHERE kind <> 'session'")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (kind, id) = row?;
        match kind.as_str() {
            "user" => list.users.insert(id),
            _ => list.messages.insert(id),
        };
    }
    Ok(list)
}

/// The whole erasure list, tombstones included, in the order it was made.
pub fn erasures(conn: &Connection) -> rusqlite::Result<Vec<ErasureRecord>> {
    conn.prepare("SELECT kind, id, reason, at_ms FROM erasures ORDER BY at_ms, kind, id")?
        .query_map([], |r| {
            Ok(ErasureRecord {
                kind: r.get(0)?,
                id: r.get(1)?,
                reason: r.get(2)?,
                at_ms: r.get(3)?,
            })
        })?
        .collect()
}

/// Whether the session is erased or purged (it has a tombstone).
pub fn session_erased(conn: &Connection, session: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = ?1)",
    )?
    .query_row([session], |r| r.get(0))
}

/// Puts `target` on the erasure list (kept from its first erasure: the reason and time stay).
pub fn list_erasure(
    conn: &Connection,
    target: &EraseTarget,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO erasures (kind, id, reason, at_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![target.kind(), target.id(), reason, now],
    )?;
    Ok(())
}

/// The sessions (keys) holding a message of this id: read outside the writer's lock, as there
/// is no index on a message's id alone (one per filter is what loads can afford).
pub fn sessions_holding_message(conn: &Connection, id: &str) -> rusqlite::Result<Vec<i64>> {
    conn.prepare("SELECT DISTINCT session_key FROM messages WHERE id = ?1")?
        .query_map([id], |r| r.get(0))?
        .collect()
}

/// One step of erasing `target` (already on the erasure list) in one `BEGIN IMMEDIATE`
/// transaction: at most `max_rows` messages go, with their full-text entries; the sessions they
/// were in are recounted and their kept dumps moved to the trash. The last step removes what is
/// left: rejected rows that mention the id, the participant, or the session with its jobs and
/// webhook deliveries. `holding` is [`sessions_holding_message`] for a message.
/// With [`Scrub::Bytes`] the step also zeroes the pages it frees and rewrites its full-text
/// entries out of their segments.
pub fn erase_step(
    conn: &mut Connection,
    target: &EraseTarget,
    holding: &[i64],
    max_rows: usize,
    now: i64,
    scrub: Scrub,
) -> rusqlite::Result<EraseStep> {
    if scrub == Scrub::Bytes {
        conn.pragma_update(None, "secure_delete", "ON")?;
        let step = erase_step_in_one_transaction(conn, target, holding, max_rows, now, scrub);
        // Back to FAST (see `configure`) whatever the step's end.
        conn.pragma_update(None, "secure_delete", "FAST")?;
        return step;
    }
    erase_step_in_one_transaction(conn, target, holding, max_rows, now, scrub)
}

fn erase_step_in_one_transaction(
    conn: &mut Connection,
    target: &EraseTarget,
    holding: &[i64],
    max_rows: usize,
    now: i64,
    scrub: Scrub,
) -> rusqlite::Result<EraseStep> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let began = Instant::now();
    let mut step = EraseStep::default();
    let (select, key): (String, Option<i64>) = match target {
        EraseTarget::User(id) => (
            "SELECT seq, session_key FROM messages WHERE user_key = ?1 LIMIT ?2".into(),
            tx.query_row(
                "SELECT user_key FROM participants WHERE user_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?,
        ),
        EraseTarget::Session(id) => (
            "SELECT seq, session_key FROM messages WHERE session_key = ?1 LIMIT ?2".into(),
            tx.query_row(
                "SELECT session_key FROM sessions WHERE session_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?,
        ),
        EraseTarget::Message(_) => (String::new(), None),
    };
    let found: Vec<(i64, i64)> = match (target, key) {
        (EraseTarget::Message(id), _) => {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, session_key FROM messages WHERE session_key = ?1 AND id = ?2",
            )?;
            let mut found = Vec::new();
            for session in holding {
                for row in stmt.query_map(params![session, id], |r| Ok((r.get(0)?, r.get(1)?)))? {
                    found.push(row?);
                }
            }
            found
        }
        (_, Some(key)) => tx
            .prepare_cached(&select)?
            .query_map(params![key, max_rows as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?,
        (_, None) => Vec::new(),
    };
    if !found.is_empty() {
        let seqs = serde_json::to_string(&found.iter().map(|(s, _)| *s).collect::<Vec<_>>())
            .expect("numbers serialise");
        let automerge = fts_setting(&tx, "automerge", FTS5_DEFAULT_AUTOMERGE)?;
        set_fts_setting(&tx, "automerge", 0)?;
        let secure = fts_setting(&tx, "secure-delete", 0)?;
        if scrub == Scrub::Bytes {
            set_fts_setting(&tx, "secure-delete", 1)?;
        }
        tx.execute(
            "INSERT INTO messages_fts (messages_fts, rowid, text, file_name, display_name)
             SELECT 'delete', seq, text, file_name, display_name FROM messages
             WHERE seq IN (SELECT value FROM json_each(?1))",
            [&seqs],
        )?;
        // Setting them back flushes this step's deletions first: unmerged (merge_step merges
        // them after this step), and with secure-delete on, out of the segments holding them.
        if scrub == Scrub::Bytes {
            set_fts_setting(&tx, "secure-delete", secure)?;
        }
        set_fts_setting(&tx, "automerge", automerge)?;
        step.removed.messages = tx.execute(
            "DELETE FROM messages WHERE seq IN (SELECT value FROM json_each(?1))",
            [&seqs],
        )? as i64;
        let mut sessions: Vec<i64> = found.iter().map(|(_, s)| *s).collect();
        sessions.sort_unstable();
        sessions.dedup();
        for session in sessions {
            step.removed.dumps += trash_dump(&tx, session, now)?;
            if !matches!(target, EraseTarget::Session(_)) {
                sessions::recount(&tx, session, now)?;
            }
        }
    }
    step.more = found.len() >= max_rows && !matches!(target, EraseTarget::Message(_));
    if !step.more {
        finish_erasure(&tx, target, key, now, &mut step.removed)?;
    }
    tx.commit()?;
    step.held = began.elapsed();
    Ok(step)
}

// FTS5 merges its index when a transaction's changes are flushed: as much as its write counter
// says is due (64 pages per level of the index at once) and, when a level reaches 16 segments,
// that whole level. On a million-message archive that is now and then hundreds of milliseconds,
// all of it holding the writer. So an erasure step flushes its deletions with `automerge` at 0
// (set back in the same transaction, so loads merge as before), and the merging it leaves is
// done by `merge_step`s, each its own short transaction.

/// Pages of full-text index one [`merge_step`] writes at most: about 10 ms of work.
pub const MERGE_STEP_PAGES: i64 = 64;

/// FTS5's default `automerge`: a level of this many segments is merged.
const FTS5_DEFAULT_AUTOMERGE: i64 = 4;

/// One of FTS5's settings as the archive has it (`default` when never set).
fn fts_setting(tx: &Connection, key: &str, default: i64) -> rusqlite::Result<i64> {
    Ok(tx
        .prepare_cached("SELECT v FROM messages_fts_config WHERE k = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?
        .unwrap_or(default))
}

/// Sets one of FTS5's settings (`automerge`, `secure-delete`), flushing pending changes first.
fn set_fts_setting(tx: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO messages_fts (messages_fts, rank) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

/// Copies the whole WAL into the database file and truncates it to nothing, so the frames
/// holding pages as they were before an erasure are in no file. It neither waits for readers
/// nor holds the writer while they finish: with readers on an older snapshot, or another
/// writer, it does what it can and says it did not finish (the caller tries again).
///
/// A TRUNCATE checkpoint holds the write lock while it copies, so a passive one (which lets
/// writers on) copies first, and the TRUNCATE only what came since: beside webhook intake, one
/// TRUNCATE alone held the writer 119 ms.
pub fn truncate_wal(conn: &mut Connection) -> rusqlite::Result<(bool, Duration)> {
    conn.busy_handler(None)?;
    let checkpoint = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
        .and_then(|_| {
            let began = Instant::now();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|busy| (busy, began.elapsed()))
        });
    super::restore_busy_handler(conn)?;
    match checkpoint {
        Ok((busy, held)) => Ok((busy == 0, held)),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy =>
        {
            Ok((false, Duration::ZERO))
        }
        Err(e) => Err(e),
    }
}

/// One bounded step of merging the full-text index (FTS5's `merge` command: at most `pages`
/// pages written, on levels of `usermerge`, 4, segments or more), in its own transaction.
/// Whether it did any work (FTS5 counts two or more changes when it did), and how long it held
/// the writer.
pub fn merge_step(conn: &mut Connection, pages: i64) -> rusqlite::Result<(bool, Duration)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let began = Instant::now();
    let before = tx.total_changes();
    tx.prepare_cached("INSERT INTO messages_fts (messages_fts, rank) VALUES ('merge', ?1)")?
        .execute([pages])?;
    let worked = tx.total_changes() - before >= 2;
    tx.commit()?;
    Ok((worked, began.elapsed()))
}

/// Puts a kept dump's key in the trash (a dump that holds erased rows).
pub fn trash_key(tx: &Connection, key: Option<&str>) -> rusqlite::Result<()> {
    if let Some(key) = key {
        tx.prepare_cached(
            "INSERT INTO dump_trash (key, at_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?
        .execute(params![key, super::now_ms()])?;
    }
    Ok(())
}

/// Takes an erased user's id out of other messages' recipients and extra columns (the few
/// messages that have either are found by their partial index).
fn scrub_mentions(tx: &Connection, id: &str, now: i64) -> rusqlite::Result<i64> {
    let candidates: Vec<(i64, i64, Option<String>, Option<String>)> = tx
        .prepare_cached(
            "SELECT seq, session_key, target_user_ids, extra FROM messages
             WHERE (target_user_ids IS NOT NULL OR extra IS NOT NULL)
               AND (instr(target_user_ids, ?1) > 0 OR instr(extra, ?1) > 0)",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut touched: Vec<i64> = Vec::new();
    for (seq, session_key, targets, extra) in candidates {
        let targets: Option<Vec<String>> = targets.and_then(|t| serde_json::from_str(&t).ok());
        let (targets, extra) = scrub_user_fields(targets.as_deref(), extra.as_deref(), id);
        if targets.is_none() && extra.is_none() {
            continue;
        }
        let targets = targets.map(|t| serde_json::to_string(&t).expect("strings serialise"));
        tx.prepare_cached(
            "UPDATE messages SET target_user_ids = coalesce(?2, target_user_ids),
                                 extra = coalesce(?3, extra)
             WHERE seq = ?1",
        )?
        .execute(params![seq, targets, extra])?;
        touched.push(session_key);
    }
    // The kept dumps of those sessions still name the id: they go too.
    touched.sort_unstable();
    touched.dedup();
    let mut dumps = 0;
    for key in touched {
        dumps += trash_dump(tx, key, now)?;
    }
    Ok(dumps)
}

/// Moves the session's kept dump (if any) to the trash: 1 when there was one.
fn trash_dump(tx: &Connection, session_key: i64, now: i64) -> rusqlite::Result<i64> {
    let moved = tx
        .prepare_cached(
            "INSERT INTO dump_trash (key, at_ms)
             SELECT dump_path, ?2 FROM sessions WHERE session_key = ?1 AND dump_path IS NOT NULL
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![session_key, now])?;
    tx.prepare_cached("UPDATE sessions SET dump_path = NULL WHERE session_key = ?1")?
        .execute([session_key])?;
    Ok(moved as i64)
}

fn finish_erasure(
    tx: &Connection,
    target: &EraseTarget,
    key: Option<i64>,
    now: i64,
    removed: &mut Erased,
) -> rusqlite::Result<()> {
    match target {
        EraseTarget::User(id) | EraseTarget::Message(id) => {
            // Rejected rows are kept as raw bytes: those holding the id as a field go (the
            // substring search only finds the candidates).
            let candidates: Vec<(i64, Option<String>, Vec<u8>)> = tx
                .prepare("SELECT id, session_id, raw FROM rejected_rows WHERE instr(raw, ?1) > 0")?
                .query_map([id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut sessions: Vec<String> = Vec::new();
            for (row, session, raw) in candidates {
                if names_as_field(&raw, id) {
                    removed.rejected_rows += tx
                        .prepare_cached("DELETE FROM rejected_rows WHERE id = ?1")?
                        .execute([row])? as i64;
                    sessions.extend(session);
                }
            }
            sessions.sort_unstable();
            sessions.dedup();
            for session in sessions {
                if let Some(key) = tx
                    .query_row(
                        "SELECT session_key FROM sessions WHERE session_id = ?1",
                        [&session],
                        |r| r.get(0),
                    )
                    .optional()?
                {
                    removed.dumps += trash_dump(tx, key, now)?;
                    sessions::recount(tx, key, now)?;
                }
            }
            if let EraseTarget::User(id) = target {
                removed.dumps += scrub_mentions(tx, id, now)?;
                tx.execute(
                    "DELETE FROM session_participants WHERE participant_id = ?1 OR rtk_user_id = ?1",
                    [id],
                )?;
            }
            if let (EraseTarget::User(_), Some(key)) = (target, key) {
                // Dumps that named them in a row a later one replaced still hold their rows.
                let named: Vec<i64> = tx
                    .prepare("SELECT session_key FROM dump_senders WHERE user_key = ?1")?
                    .query_map([key], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for session_key in named {
                    removed.dumps += trash_dump(tx, session_key, now)?;
                }
                tx.execute("DELETE FROM dump_senders WHERE user_key = ?1", [key])?;
                tx.execute("DELETE FROM participants WHERE user_key = ?1", [key])?;
            }
        }
        EraseTarget::Session(id) => {
            removed.rejected_rows +=
                tx.execute("DELETE FROM rejected_rows WHERE session_id = ?1", [id])? as i64;
            if let Some(key) = key {
                removed.dumps += trash_dump(tx, key, now)?;
                tx.execute(
                    "DELETE FROM session_participants WHERE session_key = ?1",
                    [key],
                )?;
                tx.execute("DELETE FROM dump_senders WHERE session_key = ?1", [key])?;
                removed.sessions +=
                    tx.execute("DELETE FROM sessions WHERE session_key = ?1", [key])? as i64;
            }
            // Jobs first: a job names the delivery it came from. A running job keeps its row
            // (its worker finds the tombstone and finishes it as erased), and so does the
            // delivery it names, until the next erasure of the session.
            tx.execute(
                "DELETE FROM jobs WHERE session_id = ?1 AND state <> 'running'",
                [id],
            )?;
            removed.deliveries += tx.execute(
                "DELETE FROM inbox WHERE session_id = ?1
                   AND id NOT IN (SELECT inbox_id FROM jobs WHERE inbox_id IS NOT NULL AND session_id = ?1)",
                [id],
            )? as i64;
        }
    }
    Ok(())
}

/// The trash's dump keys, oldest first.
pub fn trash(conn: &Connection, limit: u32) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached("SELECT key FROM dump_trash ORDER BY at_ms, key LIMIT ?1")?
        .query_map([limit], |r| r.get(0))?
        .collect()
}

pub fn forget_trash(conn: &Connection, keys: &[String]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("DELETE FROM dump_trash WHERE key = ?1")?;
    for key in keys {
        stmt.execute([key])?;
    }
    Ok(())
}

/// Sessions whose last message (or, without one, whose start) is before `cutoff_ms`: what
/// retention purges next. A session still queued for its load is not: its messages are not in
/// yet, and may be recent whatever its start says.
pub fn expired_sessions(
    conn: &Connection,
    cutoff_ms: i64,
    limit: u32,
) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT session_id FROM sessions WHERE coalesce(last_message_ms, sort_ms) < ?1 AND status <> 'queued'
         ORDER BY coalesce(last_message_ms, sort_ms) LIMIT ?2",
    )?
    .query_map(params![cutoff_ms, limit], |r| r.get(0))?
    .collect()
}

/// Appends audit entries, and notes each token's last use.
pub fn record_audit(conn: &mut Connection, entries: &[AuditEntry]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit (at_ms, token, method, route, filters, rows, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        let mut used = tx.prepare_cached(
            "UPDATE tokens SET last_used_ms = ?2 WHERE name = ?1 AND coalesce(last_used_ms, 0) < ?2",
        )?;
        for e in entries {
            insert.execute(params![
                e.at_ms, e.token, e.method, e.route, e.filters, e.rows, e.status
            ])?;
            used.execute(params![e.token, e.at_ms])?;
        }
    }
    tx.commit()
}

pub fn audit_page(conn: &Connection, query: &AuditQuery) -> rusqlite::Result<Vec<AuditEntry>> {
    conn.prepare_cached(
        "SELECT id, at_ms, token, method, route, filters, rows, status FROM audit
         WHERE (?1 IS NULL OR at_ms >= ?1) AND (?2 IS NULL OR at_ms < ?2)
           AND (?3 IS NULL OR token = ?3) AND (?4 IS NULL OR id < ?4)
         ORDER BY id DESC LIMIT ?5",
    )?
    .query_map(
        params![
            query.since_ms,
            query.until_ms,
            query.token,
            query.before,
            query.limit
        ],
        |r| {
            Ok(AuditEntry {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                token: r.get(2)?,
                method: r.get(3)?,
                route: r.get(4)?,
                filters: r.get(5)?,
                rows: r.get(6)?,
                status: r.get(7)?,
            })
        },
    )?
    .collect()
}

/// Removes up to `max_rows` audit entries older than `cutoff_ms`; returns how many went.
pub fn purge_audit(conn: &Connection, cutoff_ms: i64, max_rows: u32) -> rusqlite::Result<i64> {
    Ok(conn.execute(
        "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)",
        params![cutoff_ms, max_rows],
    )? as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrubbing erasure's steps flush their full-text deletions with automerge off and
    /// secure-delete on, and merge after in bounded steps: the index stays whole, finds exactly
    /// what is left, holds no erased word in any segment, and the archive's own settings are
    /// what they were.
    #[tokio::test]
    async fn erasure_steps_leave_the_full_text_index_whole_and_its_settings_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        drop(super::super::SqliteStore::open(&path).unwrap());
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO sessions (session_key, session_id, sort_ms, status, updated_ms)
                 VALUES (1, 's-1', 0, 'loaded', 0);
             INSERT INTO participants (user_key, user_id) VALUES (1, 'u-gone'), (2, 'u-kept');
             INSERT INTO meetings (meeting_key, meeting_id) VALUES (1, 'm-1');",
        )
        .unwrap();
        // Ten loads, each its own transaction: ten segments, so merging is due.
        for load in 0..10 {
            let tx = conn.transaction().unwrap();
            for n in 0..500 {
                let seq = load * 500 + n + 1;
                let (user, word) = if seq % 5 < 3 {
                    (1, "alpha")
                } else {
                    (2, "beta")
                };
                tx.execute(
                    "INSERT INTO messages (seq, id, session_key, meeting_key, user_key,
                         display_name, kind, pinned, edited, payload, created_ms)
                     VALUES (?1, 'm' || ?1, 1, 1, ?2, 'Someone', 'text', 0, 0,
                         ?3 || ' budget ' || ?1, ?1)",
                    params![seq, user, word],
                )
                .unwrap();
            }
            tx.execute(
                "INSERT INTO messages_fts (rowid, text, file_name, display_name)
                 SELECT seq, text, file_name, display_name FROM messages WHERE seq > ?1",
                [load * 500],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let matching = |conn: &Connection, q: &str| -> i64 {
            conn.query_row(
                "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1",
                [q],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(matching(&conn, "budget"), 5000);

        let target = EraseTarget::User("u-gone".into());
        list_erasure(&conn, &target, "test", 0).unwrap();
        let (mut steps, mut merges) = (0, 0);
        loop {
            let step = erase_step(&mut conn, &target, &[], 1000, 0, Scrub::Bytes).unwrap();
            steps += 1;
            while merge_step(&mut conn, MERGE_STEP_PAGES).unwrap().0 {
                merges += 1;
            }
            if !step.more {
                break;
            }
        }
        assert_eq!(
            steps, 4,
            "3,000 messages in steps of 1,000, and the last finds none"
        );
        assert!(merges > 0, "merging was due and was done");
        assert_eq!(matching(&conn, "alpha"), 0);
        assert_eq!(matching(&conn, "beta"), 2000);
        assert_eq!(matching(&conn, "budget"), 2000);
        conn.execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("the index matches its content");
        assert_eq!(
            fts_setting(&conn, "automerge", -1).unwrap(),
            FTS5_DEFAULT_AUTOMERGE
        );
        assert_eq!(fts_setting(&conn, "secure-delete", -1).unwrap(), 0);
        // The erased words are in no segment of the index (each is the first term of its
        // page or follows a digit, so it is stored whole), not merely masked by delete markers.
        let segments: Vec<Vec<u8>> = conn
            .prepare("SELECT block FROM messages_fts_data")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let holding = |word: &[u8]| {
            segments
                .iter()
                .filter(|b| memchr::memmem::find(b, word).is_some())
                .count()
        };
        assert!(
            holding(b"beta") > 0,
            "the check can see a word that is there"
        );
        assert_eq!(
            holding(b"alpha"),
            0,
            "the erased word is still in the index"
        );
    }
}
