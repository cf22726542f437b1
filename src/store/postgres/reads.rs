//! The query API's reads on PostgreSQL: the same rows, order and keyset pages as SQLite's
//! `messages.rs`. Each read runs in a read-only transaction with `statement_timeout` set to the
//! read budget; a read past it fails with [`StoreError::ReadBudget`].

use super::{search, text, PgStore};
use crate::domain::{
    After, DeliveryRecord, MessageFilter, MessageRow, MessageStats, Order, SessionDump, SessionId,
    SessionRecord, StoredRejectedRow, Timestamp, UserRecord,
};
use crate::store::StoreError;
use deadpool_postgres::Transaction;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

/// Parameters with their types, so a page's statement can be prepared with them.
type Params = Vec<(Box<dyn ToSql + Sync + Send>, Type)>;

fn refs(params: &[(Box<dyn ToSql + Sync + Send>, Type)]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|(p, _)| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Prepared statements kept per connection at most (each holds a plan on the server).
const MAX_CACHED: usize = 128;

/// SQLSTATE 57014: the statement was cancelled by `statement_timeout`.
fn budget_error(e: tokio_postgres::Error, budget: Duration) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
        StoreError::ReadBudget(budget)
    } else {
        StoreError::Postgres(e)
    }
}

/// Ids as stored (see `text::put`).
fn put_all(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| text::put(id).into_owned()).collect()
}

/// The filter's conditions on `messages m`, its parameters numbered from `params.len() + 1`.
/// `None` when the filter can match nothing (a `q` with no words).
fn conditions(filter: &MessageFilter, params: &mut Params) -> Option<String> {
    let mut clauses: Vec<String> = Vec::new();
    let next = |params: &mut Params, value: Box<dyn ToSql + Sync + Send>, ty: Type| {
        params.push((value, ty));
        format!("${}", params.len())
    };
    if !filter.kinds.is_empty() {
        let kinds: Vec<String> = filter
            .kinds
            .iter()
            .map(|k| text::put(k).into_owned())
            .collect();
        // One value as `=`, so the planner can read the index in page order and stop at the
        // page's end (with `= ANY` it reads every match and sorts).
        if let [kind] = kinds.as_slice() {
            let p = next(params, Box::new(kind.clone()), Type::TEXT);
            clauses.push(format!("m.kind = {p}"));
        } else {
            let p = next(params, Box::new(kinds), Type::TEXT_ARRAY);
            clauses.push(format!("m.kind = ANY({p})"));
        }
    }
    if !filter.users.is_empty() {
        let users: Vec<String> = filter
            .users
            .iter()
            .map(|u| text::put(u).into_owned())
            .collect();
        if let [user] = users.as_slice() {
            let p = next(params, Box::new(user.clone()), Type::TEXT);
            clauses.push(format!(
                "m.user_key = (SELECT user_key FROM participants WHERE user_id = {p})"
            ));
        } else {
            let p = next(params, Box::new(users), Type::TEXT_ARRAY);
            clauses.push(format!(
                "m.user_key IN (SELECT user_key FROM participants WHERE user_id = ANY({p}))"
            ));
        }
    }
    if let Some(session) = &filter.session {
        let p = next(
            params,
            Box::new(text::put(session).into_owned()),
            Type::TEXT,
        );
        clauses.push(format!(
            "m.session_key = (SELECT session_key FROM sessions WHERE session_id = {p})"
        ));
    }
    if let Some(meeting) = &filter.meeting {
        let p = next(
            params,
            Box::new(text::put(meeting).into_owned()),
            Type::TEXT,
        );
        clauses.push(format!(
            "m.meeting_key = (SELECT meeting_key FROM meetings WHERE meeting_id = {p})"
        ));
    }
    // A scoped token's meetings.
    if let Some(visible) = &filter.visible {
        let p = next(params, Box::new(put_all(visible)), Type::TEXT_ARRAY);
        clauses.push(format!(
            "m.meeting_key IN (SELECT meeting_key FROM meetings WHERE meeting_id = ANY({p}))"
        ));
    }
    // Literals, so the partial indexes (`WHERE pinned`, `WHERE edited`) can be chosen.
    if let Some(pinned) = filter.pinned {
        clauses.push(format!("m.pinned = {pinned}"));
    }
    if let Some(edited) = filter.edited {
        clauses.push(format!("m.edited = {edited}"));
    }
    if let Some(private) = filter.private {
        let not = if private { "NOT " } else { "" };
        clauses.push(format!("m.target_user_ids IS {not}NULL"));
    }
    // The senders the app knows by this id, in each session whose participants name them.
    if let Some(custom) = &filter.custom_participant {
        let p = next(params, Box::new(text::put(custom).into_owned()), Type::TEXT);
        clauses.push(format!(
            "(m.session_key, m.user_key) IN (
                 SELECT sp.session_key, pt.user_key FROM session_participants sp
                 JOIN participants pt ON pt.user_id = sp.participant_id OR pt.user_id = sp.rtk_user_id
                 WHERE sp.custom_participant_id = {p})"
        ));
    }
    if let Some(since) = filter.since_ms {
        let p = next(params, Box::new(since), Type::INT8);
        clauses.push(format!("m.created_ms >= {p}"));
    }
    if let Some(until) = filter.until_ms {
        let p = next(params, Box::new(until), Type::INT8);
        clauses.push(format!("m.created_ms < {p}"));
    }
    if let Some(q) = &filter.text_query {
        let query = search::tsquery(q)?;
        let p = next(params, Box::new(query), Type::TEXT);
        clauses.push(format!("m.search @@ ({p}::text)::tsquery"));
    }
    Some(if clauses.is_empty() {
        "true".to_owned()
    } else {
        clauses.join(" AND ")
    })
}

const SESSION_COLUMNS: &str = "session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id, organizer_name,
     sort_ms, status, message_count, text_count, image_count, file_count, other_count, pinned_count, rejected_count,
     first_message_ms, last_message_ms, loaded_ms,
     (SELECT j.last_error FROM jobs j WHERE j.session_id = sessions.session_id ORDER BY j.id DESC LIMIT 1)";

fn session_from_row(row: &Row) -> SessionRecord {
    SessionRecord {
        session_id: text::get(row.get(0)),
        meeting_id: text::get_opt(row.get(1)),
        title: text::get_opt(row.get(2)),
        created_at: row.get(3),
        started_at: row.get(4),
        ended_at: row.get(5),
        organizer_id: text::get_opt(row.get(6)),
        organizer_name: text::get_opt(row.get(7)),
        sort_ms: row.get(8),
        status: row.get(9),
        message_count: row.get(10),
        text_count: row.get(11),
        image_count: row.get(12),
        file_count: row.get(13),
        other_count: row.get(14),
        pinned_count: row.get(15),
        rejected_count: row.get(16),
        first_message_ms: row.get(17),
        last_message_ms: row.get(18),
        loaded_ms: row.get(19),
        last_error: text::get_opt(row.get(20)),
    }
}

impl PgStore {
    /// A read-only transaction whose statements may each run for `budget`.
    pub(super) async fn reading<T>(
        &self,
        budget: Duration,
        work: impl for<'t> FnOnce(
            &'t Transaction<'t>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + Send + 't>,
        >,
    ) -> Result<T, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.build_transaction().read_only(true).start().await?;
        // Sent back to back: the budget arrives just before the work, in one round trip.
        let set = format!(
            "SET LOCAL statement_timeout = {}",
            budget.as_millis().max(1)
        );
        // statement_timeout bounds each statement; a read of several (stats) is bounded as a
        // whole here, and its running statement cancelled on the server when time is up.
        let cancel = tx.cancel_token();
        let both = async { tokio::join!(tx.batch_execute(&set), work(&tx)) };
        let Ok((set, result)) = tokio::time::timeout(budget, both).await else {
            if let Err(e) = cancel.cancel_query(self.listener.1.clone()).await {
                tracing::warn!(error = %e, "cannot cancel a read past its budget; it runs on to its statement_timeout");
            }
            return Err(StoreError::ReadBudget(budget));
        };
        set?;
        let result = result.map_err(|e| budget_error(e, budget))?;
        tx.commit().await?;
        Ok(result)
    }

    pub async fn message_page(
        &self,
        filter: MessageFilter,
        order: Order,
        after: Option<After>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut params: Params = Vec::new();
        let Some(mut condition) = conditions(&filter, &mut params) else {
            return Ok(Vec::new());
        };
        let direction = match order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        if let Some(after) = after {
            params.push((Box::new(after.created_ms), Type::INT8));
            params.push((Box::new(after.seq), Type::INT8));
            let cmp = if order == Order::Asc { ">" } else { "<" };
            condition.push_str(&format!(
                " AND (m.created_ms, m.seq) {cmp} (${}, ${})",
                params.len() - 1,
                params.len()
            ));
        }
        // The limit as a literal: a prepared statement's generic plan cannot see a `$n` limit,
        // and plans for every match (sorting them) where a page of 100 reads 100 index entries.
        // It is a number the API bounded (1 to 1,000), never text.
        // The page first, on its own (an index read in page order that stops at the limit), and
        // only then the ids it names: joined before the limit, the planner would join and sort
        // every match.
        let sql = format!(
            "SELECT m.seq, m.id, s.session_id, mt.meeting_id, p.user_id, m.display_name, m.kind, m.pinned,
                    m.edited, CASE WHEN m.kind = 'text' THEN m.payload END, m.link, m.file_name, m.file_size,
                    m.payload, m.created_ms, m.extra, m.target_user_ids, cp.custom_participant_id
             FROM (SELECT m.seq, m.id, m.session_key, m.meeting_key, m.user_key, m.display_name, m.kind,
                          m.pinned, m.edited, m.link, m.file_name, m.file_size, m.payload, m.created_ms,
                          m.extra, m.target_user_ids
                   FROM messages m
                   WHERE {condition}
                   ORDER BY m.created_ms {direction}, m.seq {direction}
                   LIMIT {limit}) m
             JOIN sessions s ON s.session_key = m.session_key
             JOIN meetings mt ON mt.meeting_key = m.meeting_key
             JOIN participants p ON p.user_key = m.user_key
             LEFT JOIN LATERAL (SELECT sp.custom_participant_id FROM session_participants sp
                                WHERE sp.session_key = m.session_key
                                  AND (sp.participant_id = p.user_id OR sp.rtk_user_id = p.user_id)
                                  AND sp.custom_participant_id IS NOT NULL
                                ORDER BY sp.participant_id LIMIT 1) cp ON true
             ORDER BY m.created_ms {direction}, m.seq {direction}"
        );
        self.reading(budget, move |tx| {
            Box::pin(async move {
                // Prepared once per connection and shape (filters present, order, cursor), so a
                // page is one round trip and the server plans each shape once, not per request.
                // The shapes are bounded (a few thousand), and the cache is emptied past
                // `MAX_CACHED`, so no sequence of queries grows it without limit.
                if tx.statement_cache.size() > MAX_CACHED {
                    tx.statement_cache.clear();
                }
                let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                let statement = tx.prepare_typed_cached(&sql, &types).await?;
                let rows = tx.query(&statement, &refs(&params)).await?;
                Ok(rows
                    .iter()
                    .map(|r| MessageRow {
                        seq: r.get(0),
                        id: text::get(r.get(1)),
                        session_id: text::get(r.get(2)),
                        meeting_id: text::get(r.get(3)),
                        user_id: text::get(r.get(4)),
                        display_name: text::get(r.get(5)),
                        kind: text::get(r.get(6)),
                        pinned: r.get(7),
                        edited: r.get(8),
                        text: text::get_opt(r.get(9)),
                        link: text::get_opt(r.get(10)),
                        file_name: text::get_opt(r.get(11)),
                        file_size: r.get(12),
                        payload: text::get(r.get(13)),
                        created_ms: r.get(14),
                        extra: text::get_opt(r.get(15)),
                        target_user_ids: r
                            .get::<_, Option<Vec<String>>>(16)
                            .map(|t| t.into_iter().map(text::get).collect()),
                        custom_participant_id: text::get_opt(r.get(17)),
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn stats(
        &self,
        filter: MessageFilter,
        top: u32,
        budget: Duration,
    ) -> Result<MessageStats, StoreError> {
        let mut params: Params = Vec::new();
        let Some(condition) = conditions(&filter, &mut params) else {
            return Ok(MessageStats::default());
        };
        // Names as each participant last wrote them where the reader may look: a parameter of
        // the top-users query only (a statement must use every parameter it is given).
        let shared = params.len();
        let visible = match &filter.visible {
            Some(meetings) => {
                params.push((Box::new(put_all(meetings)), Type::TEXT_ARRAY));
                format!(
                    "latest.meeting_key IN (SELECT meeting_key FROM meetings WHERE meeting_id = ANY(${}))",
                    params.len()
                )
            }
            None => "true".to_owned(),
        };
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let p = refs(&params[..shared]);
                let top_params = refs(&params);
                let pairs = |rows: Vec<Row>| -> Vec<(String, i64)> {
                    rows.iter().map(|r| (text::get(r.get(0)), r.get(1))).collect()
                };
                let by_kind = pairs(
                    tx.query(
                        &format!(
                            "SELECT m.kind, count(*) FROM messages m WHERE {condition} GROUP BY m.kind ORDER BY m.kind"
                        ),
                        &p,
                    )
                    .await?,
                );
                let by_pinned = pairs(
                    tx.query(
                        &format!(
                            "SELECT CASE WHEN m.pinned THEN '1' ELSE '0' END, count(*) FROM messages m
                             WHERE {condition} GROUP BY m.pinned"
                        ),
                        &p,
                    )
                    .await?,
                );
                // Days as numbers, named in Rust (as on SQLite), each time clamped to the years
                // 0000-9999 where it is also served.
                let by_day = tx
                    .query(
                        &format!(
                            "SELECT floor(t / 86400000.0)::bigint AS day, count(*)
                             FROM (SELECT greatest(least(m.created_ms, {max}), {min}) AS t FROM messages m
                                   WHERE {condition}) c
                             GROUP BY day ORDER BY day",
                            max = crate::domain::timestamp::MAX_MILLIS,
                            min = crate::domain::timestamp::MIN_MILLIS,
                        ),
                        &p,
                    )
                    .await?
                    .iter()
                    .map(|r| (Timestamp::day_of(r.get(0)), r.get(1)))
                    .collect();
                let top_users = tx
                    .query(
                        &format!(
                            "SELECT (SELECT user_id FROM participants p WHERE p.user_key = c.user_key) AS user_id, c.n,
                                    (SELECT display_name FROM messages latest WHERE latest.user_key = c.user_key
                                       AND {visible}
                                     ORDER BY created_ms DESC, seq DESC LIMIT 1)
                             FROM (SELECT m.user_key, count(*) AS n FROM messages m WHERE {condition}
                                   GROUP BY m.user_key) c
                             ORDER BY c.n DESC, user_id LIMIT {top}"
                        ),
                        &top_params,
                    )
                    .await?
                    .iter()
                    .map(|r| (text::get(r.get(0)), text::get(r.get(2)), r.get(1)))
                    .collect();
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
            })
        })
        .await
    }

    pub async fn session(
        &self,
        id: String,
        budget: Duration,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let row = tx
                    .query_opt(
                        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = $1"),
                        &[&text::put(&id)],
                    )
                    .await?;
                Ok(row.as_ref().map(session_from_row))
            })
        })
        .await
    }

    pub async fn session_page(
        &self,
        after: Option<(i64, String)>,
        visible: Option<Vec<String>>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let visible = visible.as_deref().map(put_all);
        let (ms, id) = match after {
            Some((ms, id)) => (Some(ms), Some(id)),
            None => (None, None),
        };
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        &format!(
                            "SELECT {SESSION_COLUMNS} FROM sessions
                             WHERE ($1::bigint IS NULL OR (sort_ms, session_id) < ($1, $2))
                               AND ($4::text[] IS NULL OR meeting_id = ANY($4))
                             ORDER BY sort_ms DESC, session_id DESC LIMIT $3"
                        ),
                        &[&ms, &id, &i64::from(limit), &visible],
                    )
                    .await?;
                Ok(rows.iter().map(session_from_row).collect())
            })
        })
        .await
    }

    pub async fn user_exists(
        &self,
        id: String,
        visible: Option<Vec<String>>,
        budget: Duration,
    ) -> Result<bool, StoreError> {
        let visible = visible.as_deref().map(put_all);
        self.reading(budget, move |tx| {
            Box::pin(async move {
                Ok(tx
                    .query_one(
                        "SELECT CASE WHEN $2::text[] IS NULL
                                THEN EXISTS (SELECT 1 FROM participants WHERE user_id = $1)
                                ELSE EXISTS (SELECT 1 FROM messages
                                             WHERE user_key = (SELECT user_key FROM participants WHERE user_id = $1)
                                               AND meeting_key IN (SELECT meeting_key FROM meetings
                                                                   WHERE meeting_id = ANY($2)))
                                END",
                        &[&text::put(&id), &visible],
                    )
                    .await?
                    .get(0))
            })
        })
        .await
    }

    pub async fn user_page(
        &self,
        session: Option<String>,
        visible: Option<Vec<String>>,
        after: Option<String>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let visible = visible.as_deref().map(put_all);
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT p.user_id, count(*), count(DISTINCT m.session_key),
                                (SELECT display_name FROM messages latest WHERE latest.user_key = p.user_key
                                   AND ($4::text[] IS NULL OR latest.meeting_key IN
                                        (SELECT meeting_key FROM meetings WHERE meeting_id = ANY($4)))
                                 ORDER BY created_ms DESC, seq DESC LIMIT 1),
                                (SELECT sp.custom_participant_id FROM session_participants sp
                                 WHERE (sp.participant_id = p.user_id OR sp.rtk_user_id = p.user_id)
                                   AND sp.custom_participant_id IS NOT NULL
                                   AND sp.session_key IN (SELECT DISTINCT mine.session_key FROM messages mine
                                        WHERE mine.user_key = p.user_key
                                          AND ($4::text[] IS NULL OR mine.meeting_key IN
                                               (SELECT meeting_key FROM meetings WHERE meeting_id = ANY($4))))
                                 ORDER BY sp.session_key DESC LIMIT 1)
                         FROM participants p JOIN messages m ON m.user_key = p.user_key
                         WHERE ($1::text IS NULL OR p.user_id > $1)
                           AND ($2::text IS NULL
                                OR m.session_key = (SELECT session_key FROM sessions WHERE session_id = $2))
                           AND ($4::text[] IS NULL OR m.meeting_key IN
                                (SELECT meeting_key FROM meetings WHERE meeting_id = ANY($4)))
                         GROUP BY p.user_id, p.user_key ORDER BY p.user_id LIMIT $3",
                        &[
                            &after.as_deref().map(text::put),
                            &session.as_deref().map(text::put),
                            &i64::from(limit),
                            &visible,
                        ],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| UserRecord {
                        user_id: text::get(r.get(0)),
                        message_count: r.get(1),
                        session_count: r.get(2),
                        display_name: text::get(r.get(3)),
                        custom_participant_id: text::get_opt(r.get(4)),
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn rejected_page(
        &self,
        session: String,
        after: Option<i64>,
        limit: u32,
        budget: Duration,
    ) -> Result<Vec<StoredRejectedRow>, StoreError> {
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT id, line, reason, raw FROM rejected_rows
                         WHERE session_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                        &[&text::put(&session), &after.unwrap_or(0), &i64::from(limit)],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| StoredRejectedRow {
                        id: r.get(0),
                        line: r.get(1),
                        reason: text::get(r.get(2)),
                        raw: r.get(3),
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn stored_dump(&self, session: SessionId) -> Result<Option<SessionDump>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT dump_path, dump_sha256 FROM sessions WHERE session_id = $1 AND dump_path IS NOT NULL",
                &[&session.as_str()],
            )
            .await?;
        Ok(row.map(|r| SessionDump {
            key: r.get(0),
            sha256: r.get(1),
        }))
    }

    pub async fn deliveries(&self, limit: u32) -> Result<Vec<DeliveryRecord>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, delivery_id, scheme, event, session_id, received_ms, body, body_sha256, webhook_id
                 FROM inbox ORDER BY id DESC LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRecord {
                inbox_id: r.get(0),
                delivery_id: text::get_opt(r.get(1)),
                scheme: r.get(2),
                event: text::get(r.get(3)),
                session_id: text::get_opt(r.get(4)),
                received_ms: r.get(5),
                body: r.get(6),
                body_sha256: r.get(7),
                webhook_id: text::get_opt(r.get(8)),
            })
            .collect())
    }
}
