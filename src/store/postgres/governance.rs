//! Tokens, the erasure list, erasure itself, the dump trash and the audit log on PostgreSQL:
//! the same use cases and guarantees as SQLite's `governance.rs`.

use super::load::recount;
use super::retry::retrying;
use super::{text, PgStore};
use crate::domain::{
    names_as_field, scrub_user_fields, AuditEntry, AuditQuery, EraseStep, EraseTarget, ErasureList,
    ErasureRecord, TokenRecord,
};
use crate::store::StoreError;
use deadpool_postgres::Transaction;
use std::time::Duration;

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The advisory lock between loads (shared) and putting an id on the erasure list (exclusive):
/// a load reads the list under it, so an erasure listed while a load runs waits for that load
/// to commit, and then erases what it wrote. ("erasures" in ASCII.)
const ERASURE_LOCK: i64 = 0x65_72_61_73_75_72_65_73;

/// Takes the shared side of [`ERASURE_LOCK`] to the end of the transaction.
pub(super) async fn hold_erasures(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&ERASURE_LOCK])
        .await?;
    Ok(())
}

pub(super) async fn session_erased(
    client: &(impl tokio_postgres::GenericClient + Sync),
    session: &str,
) -> Result<bool, StoreError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = $1)",
            &[&text::put(session)],
        )
        .await?
        .get(0))
}

pub(super) async fn erasure_list(tx: &Transaction<'_>) -> Result<ErasureList, StoreError> {
    let mut list = ErasureList::default();
    for row in tx
        .query("SELECT kind, id FROM erasures WHERE kind <> 'session'", &[])
        .await?
    {
        let (kind, id): (String, String) = (row.get(0), text::get(row.get(1)));
        match kind.as_str() {
            "user" => list.users.insert(id),
            _ => list.messages.insert(id),
        };
    }
    Ok(list)
}

/// Puts a kept dump's key in the trash (a dump that holds erased rows).
pub(super) async fn trash_key(tx: &Transaction<'_>, key: Option<&str>) -> Result<(), StoreError> {
    if let Some(key) = key {
        tx.execute(
            &format!(
                "INSERT INTO dump_trash (key, at_ms) VALUES ($1, {NOW_MS}) ON CONFLICT DO NOTHING"
            ),
            &[&key],
        )
        .await?;
    }
    Ok(())
}

/// Moves the session's kept dump (if any) to the trash: 1 when there was one.
async fn trash_dump(tx: &Transaction<'_>, session_key: i64) -> Result<i64, StoreError> {
    let moved = tx
        .execute(
            &format!(
                "INSERT INTO dump_trash (key, at_ms)
                 SELECT dump_path, {NOW_MS} FROM sessions WHERE session_key = $1 AND dump_path IS NOT NULL
                 ON CONFLICT DO NOTHING"
            ),
            &[&session_key],
        )
        .await?;
    tx.execute(
        "UPDATE sessions SET dump_path = NULL WHERE session_key = $1",
        &[&session_key],
    )
    .await?;
    Ok(moved as i64)
}

/// Takes an erased user's id out of other messages' recipients and extra columns.
async fn scrub_mentions(tx: &Transaction<'_>, id: &str) -> Result<i64, StoreError> {
    let stored = text::put(id).into_owned();
    let mut touched: Vec<i64> = Vec::new();
    let candidates = tx
        .query(
            "SELECT seq, target_user_ids, extra, session_key FROM messages
             WHERE target_user_ids @> ARRAY[$1::text] OR strpos(extra, $1) > 0",
            &[&stored],
        )
        .await?;
    for row in candidates {
        let seq: i64 = row.get(0);
        let targets: Option<Vec<String>> = row
            .get::<_, Option<Vec<String>>>(1)
            .map(|t| t.into_iter().map(text::get).collect());
        let extra = text::get_opt(row.get(2));
        let (targets, extra) = scrub_user_fields(targets.as_deref(), extra.as_deref(), id);
        if targets.is_none() && extra.is_none() {
            continue;
        }
        let targets: Option<Vec<String>> =
            targets.map(|t| t.iter().map(|t| text::put(t).into_owned()).collect());
        tx.execute(
            "UPDATE messages SET target_user_ids = coalesce($2, target_user_ids),
                                 extra = coalesce($3, extra)
             WHERE seq = $1",
            &[&seq, &targets, &text::put_opt(&extra)],
        )
        .await?;
        touched.push(row.get(3));
    }
    // The kept dumps of those sessions still name the id: they go too.
    touched.sort_unstable();
    touched.dedup();
    let mut dumps = 0;
    for key in touched {
        dumps += trash_dump(tx, key).await?;
    }
    Ok(dumps)
}

fn token_from_row(r: &tokio_postgres::Row) -> TokenRecord {
    let meetings: Option<Vec<String>> = r.get::<_, Option<Vec<Option<String>>>>(2).map(|m| {
        m.into_iter()
            .map(|m| text::get(m.unwrap_or_default()))
            .collect()
    });
    // As on SQLite: a scope with an empty (or NULL) meeting id refuses the token.
    let unreadable_scope = meetings
        .as_ref()
        .filter(|m| m.iter().any(|m| m.trim().is_empty()))
        .map(|m| format!("the scope {m:?} holds an empty meeting id"));
    TokenRecord {
        name: text::get(r.get(0)),
        admin: r.get(1),
        meetings,
        created_ms: r.get(3),
        expires_ms: r.get(4),
        last_used_ms: r.get(5),
        revoked_ms: r.get(6),
        unreadable_scope,
    }
}

const TOKEN_COLUMNS: &str =
    "name, admin, meetings, created_ms, expires_ms, last_used_ms, revoked_ms";

impl PgStore {
    pub async fn create_token(
        &self,
        token: TokenRecord,
        secret_sha256: String,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let meetings: Option<Vec<String>> = token
            .meetings
            .as_ref()
            .map(|m| m.iter().map(|id| text::put(id).into_owned()).collect());
        Ok(client
            .execute(
                "INSERT INTO tokens (name, secret_sha256, admin, meetings, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &text::put(&token.name),
                    &secret_sha256,
                    &token.admin,
                    &meetings,
                    &token.created_ms,
                    &token.expires_ms,
                ],
            )
            .await?
            == 1)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"),
                &[],
            )
            .await?
            .iter()
            .map(token_from_row)
            .collect())
    }

    pub async fn revoke_token(&self, name: String) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                &format!(
                    "UPDATE tokens SET revoked_ms = coalesce(revoked_ms, {NOW_MS}) WHERE name = $1"
                ),
                &[&text::put(&name)],
            )
            .await?
            == 1)
    }

    /// The token, with the database's clock at the look-up: every instance judges expiry by
    /// the same clock, whatever its own says.
    pub async fn token_by_hash(
        &self,
        sha256: String,
    ) -> Result<Option<(TokenRecord, i64)>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS}, {NOW_MS} FROM tokens WHERE secret_sha256 = $1"
            ))
            .await?;
        Ok(client
            .query_opt(&statement, &[&sha256])
            .await?
            .as_ref()
            .map(|r| (token_from_row(r), r.get(7))))
    }

    /// The database's clock, in epoch milliseconds.
    pub async fn clock_ms(&self) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(&format!("SELECT {NOW_MS}"), &[])
            .await?
            .get(0))
    }

    pub async fn erasures(&self) -> Result<Vec<ErasureRecord>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT kind, id, reason, at_ms FROM erasures ORDER BY at_ms, kind, id",
                &[],
            )
            .await?
            .iter()
            .map(|r| ErasureRecord {
                kind: r.get(0),
                id: text::get(r.get(1)),
                reason: text::get(r.get(2)),
                at_ms: r.get(3),
            })
            .collect())
    }

    pub async fn session_erased(
        &self,
        session: crate::domain::SessionId,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        session_erased(&**client, session.as_str()).await
    }

    /// Puts `target` on the erasure list, under the exclusive side of [`ERASURE_LOCK`].
    pub async fn list_erasure(
        &self,
        target: EraseTarget,
        reason: String,
    ) -> Result<Vec<i64>, StoreError> {
        let (target, reason) = (&target, &reason);
        retrying("list an erasure", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ERASURE_LOCK])
                .await?;
            tx.execute(
                &format!(
                    "INSERT INTO erasures (kind, id, reason, at_ms) VALUES ($1, $2, $3, {NOW_MS})
                     ON CONFLICT DO NOTHING"
                ),
                &[&target.kind(), &text::put(target.id()), &text::put(reason)],
            )
            .await?;
            tx.commit().await?;
            Ok(Vec::new())
        })
        .await
    }

    /// One step of erasing `target`, as SQLite's `erase_step`.
    pub async fn erase_step(
        &self,
        target: EraseTarget,
        max_rows: usize,
    ) -> Result<EraseStep, StoreError> {
        let target = &target;
        retrying("erase", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let began = std::time::Instant::now();
            let id = text::put(target.id()).into_owned();
            let mut step = EraseStep::default();
            let key: Option<i64> = match target {
                EraseTarget::User(_) => tx
                    .query_opt("SELECT user_key FROM participants WHERE user_id = $1", &[&id])
                    .await?
                    .map(|r| r.get(0)),
                EraseTarget::Session(_) => tx
                    .query_opt("SELECT session_key FROM sessions WHERE session_id = $1", &[&id])
                    .await?
                    .map(|r| r.get(0)),
                EraseTarget::Message(_) => None,
            };
            let limit = max_rows as i64;
            let gone = match (target, key) {
                (EraseTarget::Message(_), _) => {
                    tx.query("DELETE FROM messages WHERE id = $1 RETURNING session_key", &[&id])
                        .await?
                }
                (_, Some(key)) => {
                    // The index the target's messages are found by (a literal, never input).
                    let column = match target {
                        EraseTarget::User(_) => "user_key",
                        _ => "session_key",
                    };
                    tx.query(
                        &format!(
                            "DELETE FROM messages WHERE seq IN
                                 (SELECT seq FROM messages WHERE {column} = $1 LIMIT $2)
                             RETURNING session_key"
                        ),
                        &[&key, &limit],
                    )
                    .await?
                }
                (_, None) => Vec::new(),
            };
            step.removed.messages = gone.len() as i64;
            let mut sessions: Vec<i64> = gone.iter().map(|r| r.get(0)).collect();
            sessions.sort_unstable();
            sessions.dedup();
            for session in &sessions {
                step.removed.dumps += trash_dump(&tx, *session).await?;
                if !matches!(target, EraseTarget::Session(_)) {
                    recount(&tx, *session).await?;
                }
            }
            step.more = gone.len() >= max_rows && !matches!(target, EraseTarget::Message(_));
            if !step.more {
                match target {
                    EraseTarget::User(_) | EraseTarget::Message(_) => {
                        // Rows holding the id as a field go; the substring search only finds
                        // the candidates.
                        let named: Vec<i64> = tx
                            .query(
                                "SELECT id, raw FROM rejected_rows WHERE position($1::bytea IN raw) > 0",
                                &[&target.id().as_bytes()],
                            )
                            .await?
                            .iter()
                            .filter(|r| names_as_field(r.get::<_, &[u8]>(1), target.id()))
                            .map(|r| r.get(0))
                            .collect();
                        let touched = tx
                            .query(
                                "DELETE FROM rejected_rows WHERE id = ANY($1) RETURNING session_id",
                                &[&named],
                            )
                            .await?;
                        step.removed.rejected_rows = touched.len() as i64;
                        let mut ids: Vec<Option<String>> =
                            touched.iter().map(|r| r.get(0)).collect();
                        ids.sort();
                        ids.dedup();
                        for session in ids.into_iter().flatten() {
                            if let Some(row) = tx
                                .query_opt(
                                    "SELECT session_key FROM sessions WHERE session_id = $1",
                                    &[&session],
                                )
                                .await?
                            {
                                let key: i64 = row.get(0);
                                step.removed.dumps += trash_dump(&tx, key).await?;
                                recount(&tx, key).await?;
                            }
                        }
                        if let EraseTarget::User(raw) = target {
                            step.removed.dumps += scrub_mentions(&tx, raw).await?;
                            tx.execute(
                                "DELETE FROM session_participants
                                 WHERE participant_id = $1 OR rtk_user_id = $1",
                                &[&id],
                            )
                            .await?;
                        }
                        if let (EraseTarget::User(_), Some(key)) = (target, key) {
                            // Dumps that named them in a row a later one replaced still hold
                            // their rows.
                            let named: Vec<i64> = tx
                                .query(
                                    "DELETE FROM dump_senders WHERE user_key = $1 RETURNING session_key",
                                    &[&key],
                                )
                                .await?
                                .iter()
                                .map(|r| r.get(0))
                                .collect();
                            for session_key in named {
                                step.removed.dumps += trash_dump(&tx, session_key).await?;
                            }
                            tx.execute("DELETE FROM participants WHERE user_key = $1", &[&key])
                                .await?;
                        }
                    }
                    EraseTarget::Session(_) => {
                        step.removed.rejected_rows = tx
                            .execute("DELETE FROM rejected_rows WHERE session_id = $1", &[&id])
                            .await? as i64;
                        if let Some(key) = key {
                            step.removed.dumps += trash_dump(&tx, key).await?;
                            tx.execute(
                                "DELETE FROM session_participants WHERE session_key = $1",
                                &[&key],
                            )
                            .await?;
                            tx.execute("DELETE FROM dump_senders WHERE session_key = $1", &[&key])
                                .await?;
                            step.removed.sessions = tx
                                .execute("DELETE FROM sessions WHERE session_key = $1", &[&key])
                                .await? as i64;
                        }
                        // As on SQLite: a running job and the delivery it names stay.
                        tx.execute(
                            "DELETE FROM jobs WHERE session_id = $1 AND state <> 'running'",
                            &[&id],
                        )
                        .await?;
                        step.removed.deliveries = tx
                            .execute(
                                "DELETE FROM inbox WHERE session_id = $1 AND id NOT IN
                                     (SELECT inbox_id FROM jobs WHERE inbox_id IS NOT NULL AND session_id = $1)",
                                &[&id],
                            )
                            .await? as i64;
                    }
                }
            }
            tx.commit().await?;
            step.held = began.elapsed();
            Ok(step)
        })
        .await
    }

    pub async fn trash(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT key FROM dump_trash ORDER BY at_ms, key LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub async fn forget_trash(&self, keys: Vec<String>) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM dump_trash WHERE key = ANY($1)", &[&keys])
            .await?;
        Ok(())
    }

    pub async fn expired_sessions(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query(
                "SELECT session_id FROM sessions WHERE coalesce(last_message_ms, sort_ms) < $1
                   AND status <> 'queued'
                 ORDER BY coalesce(last_message_ms, sort_ms) LIMIT $2",
                &[&cutoff_ms, &i64::from(limit)],
            )
            .await?
            .iter()
            .map(|r| text::get(r.get(0)))
            .collect())
    }

    /// The entries in one statement (unnest of arrays), and the tokens' last use in another.
    pub async fn record_audit(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let column =
            |f: &dyn Fn(&AuditEntry) -> String| -> Vec<String> { entries.iter().map(f).collect() };
        let at: Vec<i64> = entries.iter().map(|e| e.at_ms).collect();
        let token = column(&|e| text::put(&e.token).into_owned());
        let method = column(&|e| e.method.clone());
        let route = column(&|e| text::put(&e.route).into_owned());
        let filters = column(&|e| text::put(&e.filters).into_owned());
        let rows: Vec<Option<i64>> = entries.iter().map(|e| e.rows).collect();
        let status: Vec<i32> = entries.iter().map(|e| i32::from(e.status)).collect();
        client
            .execute(
                "INSERT INTO audit (at_ms, token, method, route, filters, rows, status)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::bigint[], $7::int[])",
                &[&at, &token, &method, &route, &filters, &rows, &status],
            )
            .await?;
        client
            .execute(
                "UPDATE tokens t SET last_used_ms = u.at FROM
                     (SELECT name, max(at) AS at FROM unnest($1::text[], $2::bigint[]) AS x(name, at)
                      GROUP BY name) u
                 WHERE t.name = u.name AND coalesce(t.last_used_ms, 0) < u.at",
                &[&token, &at],
            )
            .await?;
        Ok(())
    }

    pub async fn audit_page(
        &self,
        query: AuditQuery,
        budget: Duration,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.reading(budget, move |tx| {
            Box::pin(async move {
                let rows = tx
                    .query(
                        "SELECT id, at_ms, token, method, route, filters, rows, status FROM audit
                         WHERE ($1::bigint IS NULL OR at_ms >= $1) AND ($2::bigint IS NULL OR at_ms < $2)
                           AND ($3::text IS NULL OR token = $3) AND ($4::bigint IS NULL OR id < $4)
                         ORDER BY id DESC LIMIT $5",
                        &[
                            &query.since_ms,
                            &query.until_ms,
                            &query.token.as_deref().map(text::put),
                            &query.before,
                            &i64::from(query.limit),
                        ],
                    )
                    .await?;
                Ok(rows
                    .iter()
                    .map(|r| AuditEntry {
                        id: r.get(0),
                        at_ms: r.get(1),
                        token: text::get(r.get(2)),
                        method: r.get(3),
                        route: text::get(r.get(4)),
                        filters: text::get(r.get(5)),
                        rows: r.get(6),
                        status: r.get::<_, i32>(7) as u16,
                    })
                    .collect())
            })
        })
        .await
    }

    pub async fn purge_audit(&self, cutoff_ms: i64, max_rows: u32) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)",
                &[&cutoff_ms, &i64::from(max_rows)],
            )
            .await? as i64)
    }
}
