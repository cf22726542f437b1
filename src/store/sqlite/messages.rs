//! Read-side queries for the analysts' API. Every documented filter is served from an index
//! (see schema.sql) and pages are keyset pages over (created_ms, seq), so a page boundary never
//! moves when other sessions load.

use super::sessions::{session_from_row, SESSION_COLUMNS};
use crate::domain::{
    After, MessageFilter, MessageRow, MessageStats, Order, Phrase, SessionRecord, TextQuery,
    Timestamp, UserRecord,
};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};

/// A message's columns as stored: session, meeting and participant as keys, which
/// [`with_ids`] turns back into ids a page at a time.
const MESSAGE_COLUMNS: &str = "seq, id, session_key, meeting_key, user_key,
     display_name, kind, pinned, edited, text, link, file_name, file_size, payload, created_ms,
     extra, target_user_ids";

/// A row of [`MESSAGE_COLUMNS`]: the message with its ids still empty, and its keys.
struct Keyed {
    row: MessageRow,
    session: i64,
    meeting: i64,
    user: i64,
}

fn keyed_from_row(row: &Row<'_>) -> rusqlite::Result<Keyed> {
    Ok(Keyed {
        session: row.get(2)?,
        meeting: row.get(3)?,
        user: row.get(4)?,
        row: MessageRow {
            seq: row.get(0)?,
            id: row.get(1)?,
            session_id: String::new(),
            meeting_id: String::new(),
            user_id: String::new(),
            display_name: row.get(5)?,
            kind: row.get(6)?,
            pinned: row.get(7)?,
            edited: row.get(8)?,
            text: row.get(9)?,
            link: row.get(10)?,
            file_name: row.get(11)?,
            file_size: row.get(12)?,
            payload: row.get(13)?,
            created_ms: row.get(14)?,
            extra: row.get(15)?,
            target_user_ids: row
                .get::<_, Option<String>>(16)?
                .map(|t| serde_json::from_str(&t).unwrap_or_else(|_| vec![t])),
            custom_participant_id: None,
        },
    })
}

/// Fills in the ids of a page's rows: one lookup per table for the page's distinct keys (a page
/// is mostly a few sessions, meetings and users), where a join or a subquery per column would
/// look each up again for every row (a third of a 100-row page's instructions).
fn with_ids(conn: &Connection, keyed: Vec<Keyed>) -> rusqlite::Result<Vec<MessageRow>> {
    use std::collections::{BTreeSet, HashMap};
    let ids = |(table, id, key): (&str, &str, &str),
               keys: BTreeSet<i64>|
     -> rusqlite::Result<HashMap<i64, String>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let list = keys
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        conn.prepare_cached(&format!(
            "SELECT {key}, {id} FROM {table} WHERE {key} IN (SELECT value FROM json_each(?1))"
        ))?
        .query_map([format!("[{list}]")], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
    };
    let sessions = ids(SESSIONS, keyed.iter().map(|k| k.session).collect())?;
    let meetings = ids(MEETINGS, keyed.iter().map(|k| k.meeting).collect())?;
    let users = ids(USERS, keyed.iter().map(|k| k.user).collect())?;
    let find = |ids: &HashMap<i64, String>, key: i64, what: &str, seq: i64| {
        ids.get(&key).cloned().ok_or_else(|| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!(
                    "message seq {seq} refers to {what} key {key}, which is missing"
                )),
            )
        })
    };
    // The app's ids for the page's senders: one look-up for the page's sessions.
    let custom = super::session_participants::custom_ids(
        conn,
        &keyed.iter().map(|k| k.session).collect::<BTreeSet<i64>>(),
    )?;
    keyed
        .into_iter()
        .map(
            |Keyed {
                 mut row,
                 session,
                 meeting,
                 user,
             }| {
                row.session_id = find(&sessions, session, "session", row.seq)?;
                row.meeting_id = find(&meetings, meeting, "meeting", row.seq)?;
                row.user_id = find(&users, user, "participant", row.seq)?;
                row.custom_participant_id = custom.get(&(session, row.user_id.clone())).cloned();
                Ok(row)
            },
        )
        .collect()
}

/// How a full-text filter (`q`) is evaluated. Neither is good for every word: collecting all
/// matches and sorting them by time costs one step per match (seconds for a word in a third of a
/// million messages), while walking the page order and checking rows against the index costs
/// work per row passed over (the whole table for a rare word). [`text_plan`] picks by counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPlan {
    /// Every match from the FTS index, then filtered and sorted: few matches.
    Collect,
    /// Rows in page order, checked against the FTS index a chunk at a time (one rowid-range
    /// lookup per run of nearby rows), stopping at the page's end: many matches.
    Probe,
}

/// Matches at which probing is cheaper than collecting.
const COLLECT_AT_MOST: i64 = 4000;

/// Chooses the plan for `q` by counting its matches, up to [`COLLECT_AT_MOST`]. Both plans give
/// the same rows, so a recent choice is reused (per database and query text, for 30 s) to save
/// the count.
pub fn text_plan(conn: &Connection, q: &str) -> rusqlite::Result<TextPlan> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    type Recent = HashMap<(String, String), (TextPlan, Instant)>;
    static RECENT: Mutex<Option<Recent>> = Mutex::new(None);
    const FRESH: Duration = Duration::from_secs(30);
    let key = (conn.path().unwrap_or_default().to_owned(), q.to_owned());
    if let Some((plan, at)) = RECENT
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&key).copied()))
    {
        if at.elapsed() < FRESH {
            return Ok(plan);
        }
    }
    let matches: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM (SELECT 1 FROM messages_fts WHERE messages_fts MATCH ?1 LIMIT ?2)",
        )?
        .query_row(rusqlite::params![q, COLLECT_AT_MOST], |r| r.get(0))?;
    let plan = if matches < COLLECT_AT_MOST {
        TextPlan::Collect
    } else {
        TextPlan::Probe
    };
    if let Ok(mut recent) = RECENT.lock() {
        let map = recent.get_or_insert_with(HashMap::new);
        if map.len() >= 1024 {
            map.clear();
        }
        map.insert(key, (plan, Instant::now()));
    }
    Ok(plan)
}

/// The plan for a filter's page: [`text_plan`] when it has a `q`.
pub fn text_plan_for(conn: &Connection, filter: &MessageFilter) -> rusqlite::Result<TextPlan> {
    match &filter.text_query {
        Some(q) => text_plan(conn, &fts5_match(q)),
        None => Ok(TextPlan::Collect),
    }
}

/// Compiles chatsink's parsed `q` to an FTS5 MATCH expression: every phrase quoted (so no user
/// text is FTS5 syntax) and every operator parenthesised.
pub fn fts5_match(query: &TextQuery) -> String {
    fn phrase(out: &mut String, p: &Phrase) {
        out.push('"');
        out.push_str(&p.text.replace('"', "\"\""));
        out.push('"');
        if p.prefix {
            out.push('*');
        }
    }
    fn write(out: &mut String, query: &TextQuery) {
        let list = |out: &mut String, parts: &[TextQuery], op: &str| {
            out.push('(');
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(op);
                }
                write(out, part);
            }
            out.push(')');
        };
        match query {
            TextQuery::Phrase(p) => phrase(out, p),
            TextQuery::Near { phrases, distance } => {
                out.push_str("NEAR(");
                for (i, p) in phrases.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    phrase(out, p);
                }
                if let Some(d) = distance {
                    out.push_str(&format!(", {d}"));
                }
                out.push(')');
            }
            TextQuery::Column(column, inner) => {
                out.push_str(column.name());
                out.push_str(" : (");
                write(out, inner);
                out.push(')');
            }
            TextQuery::And(parts) => list(out, parts, " AND "),
            TextQuery::Or(parts) => list(out, parts, " OR "),
            TextQuery::Not(a, b) => {
                out.push('(');
                write(out, a);
                out.push_str(" NOT ");
                write(out, b);
                out.push(')');
            }
        }
    }
    let mut out = String::new();
    write(&mut out, query);
    out
}

/// Where a filter on ids finds the keys `messages` stores: (table, id column, key column).
const USERS: (&str, &str, &str) = ("participants", "user_id", "user_key");
const SESSIONS: (&str, &str, &str) = ("sessions", "session_id", "session_key");
const MEETINGS: (&str, &str, &str) = ("meetings", "meeting_id", "meeting_key");

/// The meeting keys of a scoped token's meetings, given as a JSON array parameter.
const VISIBLE_MEETINGS: &str =
    "(SELECT meeting_key FROM meetings WHERE meeting_id IN (SELECT value FROM json_each(?)))";

/// A scoped token's meetings as the JSON array the queries take; none for an unscoped one.
pub(super) fn visible_json(visible: Option<&[String]>) -> Option<String> {
    visible.map(|v| serde_json::to_string(v).expect("strings serialise"))
}

/// The WHERE clause for a filter, with its parameters in order. Its column names are those of
/// `messages`, unqualified.
fn where_clause(filter: &MessageFilter, plan: TextPlan) -> (String, Vec<Value>) {
    let mut clauses: Vec<String> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    let placeholders = |n: usize| vec!["?"; n].join(", ");
    if !filter.kinds.is_empty() {
        // Beside a user, session or meeting, a type is checked on that filter's rows, never
        // walked by the type index: `type=text` is most of the archive, and without table
        // statistics some SQLite versions take the type index (3.40's planner does; the
        // bundled one does not). `+` keeps a term out of index choice.
        let keyed = !filter.users.is_empty()
            || filter.session.is_some()
            || filter.meeting.is_some()
            || filter.visible.is_some();
        let column = if keyed { "+kind" } else { "kind" };
        clauses.push(if filter.kinds.len() == 1 {
            format!("{column} = ?")
        } else {
            format!("{column} IN ({})", placeholders(filter.kinds.len()))
        });
        // The type index holds only the rarer types (schema.sql); the planner uses a partial
        // index only when the query repeats its condition. (A literal: no injection surface.)
        if !keyed && !filter.kinds.iter().any(|k| k == "text") {
            clauses.push("kind <> 'text'".into());
        }
        params.extend(filter.kinds.iter().map(|v| Value::Text(v.clone())));
    }
    // An id is matched through its key, looked up once per query (an unknown id matches nothing).
    for ((table, id, key), values) in [
        (USERS, filter.users.as_slice()),
        (SESSIONS, filter.session.as_slice()),
        (MEETINGS, filter.meeting.as_slice()),
    ] {
        match values.len() {
            0 => continue,
            1 => clauses.push(format!(
                "{key} = (SELECT {key} FROM {table} WHERE {id} = ?)"
            )),
            n => clauses.push(format!(
                "{key} IN (SELECT {key} FROM {table} WHERE {id} IN ({}))",
                placeholders(n)
            )),
        }
        params.extend(values.iter().map(|v| Value::Text(v.clone())));
    }
    // A scoped token's meetings, as one JSON array (its length varies by token, not by query).
    if let Some(visible) = visible_json(filter.visible.as_deref()) {
        clauses.push(format!("meeting_key IN {VISIBLE_MEETINGS}"));
        params.push(Value::Text(visible));
    }
    // Literals, not parameters: the planner can use the partial indexes `WHERE pinned = 1` /
    // `WHERE edited = 1` only when it sees the value. (Booleans only: no injection surface.)
    if let Some(pinned) = filter.pinned {
        clauses.push(format!("pinned = {}", pinned as i64));
    }
    if let Some(private) = filter.private {
        clauses.push(format!(
            "target_user_ids IS {}NULL",
            if private { "NOT " } else { "" }
        ));
    }
    // The senders the app knows by this id, in each session whose participants name them.
    if let Some(custom) = &filter.custom_participant {
        clauses.push(
            "(session_key, user_key) IN (
                 SELECT sp.session_key, p.user_key FROM session_participants sp
                 JOIN participants p ON p.user_id = sp.participant_id OR p.user_id = sp.rtk_user_id
                 WHERE sp.custom_participant_id = ?)"
                .into(),
        );
        params.push(Value::Text(custom.clone()));
    }
    if let Some(edited) = filter.edited {
        clauses.push(format!("edited = {}", edited as i64));
    }
    if let Some(since) = filter.since_ms {
        clauses.push("created_ms >= ?".into());
        params.push(Value::Integer(since));
    }
    if let Some(until) = filter.until_ms {
        clauses.push("created_ms < ?".into());
        params.push(Value::Integer(until));
    }
    // With `Probe`, `q` is applied by [`probe_page`], not in SQL.
    if let (Some(q), TextPlan::Collect) = (&filter.text_query, plan) {
        clauses.push("seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)".into());
        params.push(Value::Text(fts5_match(q)));
    }
    let sql = if clauses.is_empty() {
        "1".to_owned()
    } else {
        clauses.join(" AND ")
    };
    (sql, params)
}

/// The SQL and parameters of one page; public so tests can `EXPLAIN QUERY PLAN` it.
pub fn message_page_sql(
    filter: &MessageFilter,
    order: Order,
    after: Option<After>,
    limit: u32,
    plan: TextPlan,
) -> (String, Vec<Value>) {
    page_sql(MESSAGE_COLUMNS, filter, order, after, limit, plan)
}

fn page_sql(
    columns: &str,
    filter: &MessageFilter,
    order: Order,
    after: Option<After>,
    limit: u32,
    plan: TextPlan,
) -> (String, Vec<Value>) {
    let (mut condition, mut params) = where_clause(filter, plan);
    let (cmp, dir) = match order {
        Order::Asc => (">", "ASC"),
        Order::Desc => ("<", "DESC"),
    };
    if let Some(after) = after {
        condition.push_str(&format!(" AND (created_ms, seq) {cmp} (?, ?)"));
        params.push(Value::Integer(after.created_ms));
        params.push(Value::Integer(after.seq));
    }
    params.push(Value::Integer(limit as i64));
    (
        format!("SELECT {columns} FROM messages WHERE {condition} ORDER BY created_ms {dir}, seq {dir} LIMIT ?"),
        params,
    )
}

/// One page of messages in (created_ms, seq) order, starting after `after`.
pub fn message_page(
    conn: &Connection,
    filter: &MessageFilter,
    order: Order,
    after: Option<After>,
    limit: u32,
) -> rusqlite::Result<Vec<MessageRow>> {
    let plan = text_plan_for(conn, filter)?;
    if plan == TextPlan::Probe {
        return probe_page(conn, filter, order, after, limit);
    }
    let (sql, params) = message_page_sql(filter, order, after, limit, plan);
    let keyed = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(params), keyed_from_row)?
        .collect::<rusqlite::Result<_>>()?;
    with_ids(conn, keyed)
}

/// Rows the probe plan reads in page order per round.
const PROBE_CHUNK: u32 = 512;
/// Seqs further apart than this are looked up in separate FTS rowid ranges.
const PROBE_GAP: i64 = 4096;

/// The `Probe` plan: walks the page order (other filters applied by their indexes) a chunk at a
/// time and asks FTS5 which rows of the chunk match, one rowid range per run of nearby seqs (a
/// session's rows are loaded together, so a chunk is usually one or two runs).
fn probe_page(
    conn: &Connection,
    filter: &MessageFilter,
    order: Order,
    after: Option<After>,
    limit: u32,
) -> rusqlite::Result<Vec<MessageRow>> {
    // One snapshot for the walk and the fetch, so no row found can be gone when it is read.
    let _snapshot = conn
        .is_autocommit()
        .then(|| conn.unchecked_transaction())
        .transpose()?;
    let q = filter
        .text_query
        .as_ref()
        .map(fts5_match)
        .unwrap_or_default();
    let mut fts = conn.prepare_cached(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid BETWEEN ?2 AND ?3",
    )?;
    let mut found: Vec<i64> = Vec::new();
    let mut cursor = after;
    while found.len() < limit as usize {
        let (sql, params) = page_sql(
            "seq, created_ms",
            filter,
            order,
            cursor,
            PROBE_CHUNK,
            TextPlan::Probe,
        );
        let keys: Vec<(i64, i64)> = conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let Some(&(last_seq, last_ms)) = keys.last() else {
            break;
        };
        let mut seqs: Vec<i64> = keys.iter().map(|(seq, _)| *seq).collect();
        seqs.sort_unstable();
        let mut hits = std::collections::HashSet::new();
        let mut start = 0;
        for i in 1..=seqs.len() {
            if i == seqs.len() || seqs[i] - seqs[i - 1] > PROBE_GAP {
                let rows = fts.query_map(rusqlite::params![&q, seqs[start], seqs[i - 1]], |r| {
                    r.get::<_, i64>(0)
                })?;
                for row in rows {
                    hits.insert(row?);
                }
                start = i;
            }
        }
        found.extend(
            keys.iter()
                .map(|(seq, _)| *seq)
                .filter(|seq| hits.contains(seq))
                .take(limit as usize - found.len()),
        );
        if keys.len() < PROBE_CHUNK as usize {
            break;
        }
        cursor = Some(After {
            created_ms: last_ms,
            seq: last_seq,
        });
    }
    // One cached statement per row, not one `IN (…)` of varying length: that would be parsed
    // and planned again for every page.
    let mut fetch = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq = ?1"
    ))?;
    let keyed = found
        .iter()
        .map(|seq| fetch.query_row([seq], keyed_from_row))
        .collect::<rusqlite::Result<_>>()?;
    with_ids(conn, keyed)
}

/// Newest first: keyset over (sort_ms DESC, session_id DESC).
pub fn session_page(
    conn: &Connection,
    after: Option<(i64, String)>,
    visible: Option<&[String]>,
    limit: u32,
) -> rusqlite::Result<Vec<SessionRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions
         WHERE (?1 IS NULL OR (sort_ms, session_id) < (?1, ?2))
           AND (?4 IS NULL OR meeting_id IN (SELECT value FROM json_each(?4)))
         ORDER BY sort_ms DESC, session_id DESC LIMIT ?3"
    ))?;
    let (ms, id) = match after {
        Some((ms, id)) => (Some(ms), Some(id)),
        None => (None, None),
    };
    let rows = stmt.query_map(
        rusqlite::params![ms, id, limit, visible_json(visible)],
        session_from_row,
    )?;
    rows.collect()
}

/// Whether the archive holds messages of this participant (in the meetings `visible` names).
pub fn user_exists(
    conn: &Connection,
    user_id: &str,
    visible: Option<&[String]>,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT CASE WHEN ?2 IS NULL THEN EXISTS (SELECT 1 FROM participants WHERE user_id = ?1)
                ELSE EXISTS (SELECT 1 FROM messages
                             WHERE user_key = (SELECT user_key FROM participants WHERE user_id = ?1)
                               AND meeting_key IN (SELECT meeting_key FROM meetings
                                                   WHERE meeting_id IN (SELECT value FROM json_each(?2))))
                END",
    )?
    .query_row(rusqlite::params![user_id, visible_json(visible)], |r| {
        r.get(0)
    })
}

/// The name the participant last wrote under (in the meetings `visible` names).
fn latest_display_name(
    conn: &Connection,
    user_id: &str,
    visible: Option<&str>,
) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "SELECT display_name FROM messages
         WHERE user_key = (SELECT user_key FROM participants WHERE user_id = ?1)
           AND (?2 IS NULL OR meeting_key IN (SELECT meeting_key FROM meetings
                                              WHERE meeting_id IN (SELECT value FROM json_each(?2))))
         ORDER BY created_ms DESC, seq DESC LIMIT 1",
    )?
    .query_row(rusqlite::params![user_id, visible], |r| r.get(0))
    .optional()
    .map(Option::unwrap_or_default)
}

/// Participants ordered by id, keyset after `after`; `session` limits them to one session.
pub fn user_page(
    conn: &Connection,
    session: Option<&str>,
    visible: Option<&[String]>,
    after: Option<&str>,
    limit: u32,
) -> rusqlite::Result<Vec<UserRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.user_id, count(*), count(DISTINCT m.session_key),
                (SELECT display_name FROM messages latest WHERE latest.user_key = p.user_key
                   AND (?4 IS NULL OR latest.meeting_key IN (SELECT meeting_key FROM meetings
                                                             WHERE meeting_id IN (SELECT value FROM json_each(?4))))
                 ORDER BY created_ms DESC, seq DESC LIMIT 1),
                (SELECT sp.custom_participant_id FROM session_participants sp
                 WHERE (sp.participant_id = p.user_id OR sp.rtk_user_id = p.user_id)
                   AND sp.custom_participant_id IS NOT NULL
                   AND sp.session_key IN (SELECT DISTINCT mine.session_key FROM messages mine
                                          WHERE mine.user_key = p.user_key
                                            AND (?4 IS NULL OR mine.meeting_key IN (SELECT meeting_key FROM meetings
                                                 WHERE meeting_id IN (SELECT value FROM json_each(?4)))))
                 ORDER BY sp.session_key DESC LIMIT 1)
         FROM participants p JOIN messages m ON m.user_key = p.user_key
         WHERE (?1 IS NULL OR p.user_id > ?1)
           AND (?2 IS NULL OR m.session_key = (SELECT session_key FROM sessions WHERE session_id = ?2))
           AND (?4 IS NULL OR m.meeting_key IN (SELECT meeting_key FROM meetings
                                                WHERE meeting_id IN (SELECT value FROM json_each(?4))))
         GROUP BY p.user_id ORDER BY p.user_id LIMIT ?3",
    )?;
    let visible = visible_json(visible);
    let rows = stmt.query_map(rusqlite::params![after, session, limit, visible], |r| {
        Ok(UserRecord {
            user_id: r.get(0)?,
            message_count: r.get(1)?,
            session_count: r.get(2)?,
            display_name: r.get(3)?,
            custom_participant_id: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub fn message_stats(
    conn: &Connection,
    filter: &MessageFilter,
    top: u32,
) -> rusqlite::Result<MessageStats> {
    let (condition, params) = where_clause(filter, TextPlan::Collect);
    let pairs = |sql: String| -> rusqlite::Result<Vec<(String, i64)>> {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        rows.collect()
    };
    let by_kind = pairs(format!(
        "SELECT kind, count(*) FROM messages WHERE {condition} GROUP BY kind ORDER BY kind"
    ))?;
    let by_pinned = pairs(format!(
        "SELECT CAST(pinned AS TEXT), count(*) FROM messages WHERE {condition} GROUP BY pinned"
    ))?;
    // Days as numbers (floored, so times before 1970 fall on their own day), named in Rust:
    // SQLite's strftime gives NULL outside the years 0000-9999. A time stored before that range
    // was enforced counts on the range's nearest end, where it is also served.
    let by_day = {
        let mut stmt = conn.prepare(&format!(
            "SELECT (t - ((t % 86400000) + 86400000) % 86400000) / 86400000 AS day, count(*)
             FROM (SELECT max(min(created_ms, {max}), {min}) AS t FROM messages WHERE {condition})
             GROUP BY day ORDER BY day",
            max = crate::domain::timestamp::MAX_MILLIS,
            min = crate::domain::timestamp::MIN_MILLIS,
        ))?;
        let rows = stmt.query_map(params_from_iter(params.iter()), |r| {
            Ok((Timestamp::day_of(r.get(0)?), r.get(1)?))
        })?;
        rows.collect::<rusqlite::Result<Vec<(String, i64)>>>()?
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT (SELECT user_id FROM participants p WHERE p.user_key = m.user_key) AS user_id, count(*) AS n
         FROM messages m WHERE {condition} GROUP BY m.user_key ORDER BY n DESC, user_id LIMIT {top}"
    ))?;
    let counted = stmt
        .query_map(params_from_iter(params.iter()), |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // Each name as the participant last wrote it where the reader may look: a name written in
    // another meeting is not the scoped reader's to see.
    let visible = visible_json(filter.visible.as_deref());
    let top_users = counted
        .into_iter()
        .map(|(user, n)| {
            Ok((
                user.clone(),
                latest_display_name(conn, &user, visible.as_deref())?,
                n,
            ))
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let count = |flag: &str| {
        by_pinned
            .iter()
            .find(|(k, _)| k == flag)
            .map_or(0, |(_, n)| *n)
    };
    Ok(MessageStats {
        total: by_kind.iter().map(|(_, n)| n).sum(),
        pinned: count("1"),
        unpinned: count("0"),
        by_kind,
        by_day,
        top_users,
    })
}

#[cfg(test)]
mod tests {
    use super::fts5_match;
    use crate::domain::TextQuery;
    use rusqlite::Connection;

    /// Every documented form of `q`, compiled, finds what FTS5 finds for the same text written
    /// in FTS5's own syntax (what `q` was passed as before chatsink parsed it).
    #[test]
    fn compiled_queries_match_what_fts5_syntax_matched() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE VIRTUAL TABLE f USING fts5(text, file_name, display_name,
                 tokenize = 'unicode61 remove_diacritics 2');",
        )
        .unwrap();
        let rows = [
            ("the quarterly budget report", "", "Ann"),
            ("budget draft", "report-123.pdf", "Bob"),
            ("café crème", "", "Zoë"),
            ("the report is late", "", "Ann"),
            ("reporting lines", "notes.txt", "Carl"),
            ("late budget late", "", "Bob"),
            ("会議 の 予定", "", "Dai"),
        ];
        for (text, file, name) in rows {
            conn.execute("INSERT INTO f VALUES (?1, ?2, ?3)", [text, file, name])
                .unwrap();
        }
        let ids = |expr: &str| -> Vec<i64> {
            conn.prepare("SELECT rowid FROM f WHERE f MATCH ?1 ORDER BY rowid")
                .unwrap()
                .query_map([expr], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        for q in [
            "budget",
            "budget report",
            "budget AND report",
            "budget OR cafe",
            "report NOT late",
            "rep*",
            "\"budget report\"",
            "\"the report\"",
            "NEAR(budget late, 2)",
            "NEAR(budget report)",
            "file_name:report",
            "display_name:ann",
            "text:budget",
            "budget OR late AND the",
            "(budget OR late) AND the",
            "creme",
            "会議",
        ] {
            let compiled = fts5_match(&TextQuery::parse(q).unwrap());
            assert_eq!(ids(&compiled), ids(q), "{q} -> {compiled}");
            assert!(!ids(q).is_empty(), "{q} matches something");
        }
        let compiled = fts5_match(&TextQuery::parse("display_name:(ann OR bob)").unwrap());
        assert_eq!(ids(&compiled), vec![1, 2, 4, 6]);
    }
}
