//! The ingest queue is this table. Workers claim a job with a lease in one `UPDATE ... RETURNING`
//! statement, work outside any transaction, and finish with an update that only succeeds while
//! their lease token is still the job's: a worker that lost its lease cannot overwrite a newer
//! claim.

use super::now_ms;
use crate::domain::{
    ClaimedJob, Job, JobKind, JobOutcome, JobState, ListedSession, PullPlan, PullSkip,
    ReprocessSelector, SessionId, UnknownValue,
};
use crate::store::Owner;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use std::time::Duration;

/// A job's kind or state column, read back: a value this build does not know is an error.
fn known<T>(
    row: &Row<'_>,
    index: usize,
    parse: fn(&str) -> Result<T, UnknownValue>,
) -> rusqlite::Result<T> {
    let raw: String = row.get(index)?;
    parse(&raw).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

const JOB_COLUMNS: &str =
    "id, kind, session_id, state, attempts, next_attempt_ms, last_error, rows_loaded, rows_rejected, created_ms, updated_ms, outcome";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        id: row.get(0)?,
        kind: known(row, 1, JobKind::parse)?,
        session_id: row.get(2)?,
        state: known(row, 3, JobState::parse)?,
        attempts: row.get(4)?,
        next_attempt_ms: row.get(5)?,
        last_error: row.get(6)?,
        rows_loaded: row.get(7)?,
        rows_rejected: row.get(8)?,
        created_ms: row.get(9)?,
        updated_ms: row.get(10)?,
        outcome: match row.get_ref(11)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(known(row, 11, JobOutcome::parse)?),
        },
    })
}

/// Claims the runnable job that has waited longest for `owner`: pending, failed and due, or
/// running under a lease that expired or whose owner has not beaten for `stale` (or is gone from
/// `owners`). `only` restricts the claim to one job id.
pub fn claim_next_job(
    conn: &mut Connection,
    owner: &Owner,
    lease: Duration,
    stale: Duration,
    only: Option<i64>,
    can_pull: bool,
) -> rusqlite::Result<Option<ClaimedJob>> {
    let now = now_ms();
    let lease_token = uuid::Uuid::new_v4().to_string();
    // The owner's heartbeat is refreshed with the claim (an idle owner beats rarely), and the
    // transaction rolled back, writing nothing, when there is no job to take.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    super::owners::refresh(&tx, owner)?;
    // One statement picks and takes the job, so no other claim can come between the two
    // whatever the locking: the claim is atomic by itself, not by SQLite's single writer.
    let claimed = tx
        .prepare_cached(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_until_ms = ?4, lease_token = ?5,
                             owner_id = ?6, updated_ms = ?1
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE ((state IN ('pending', 'failed') AND next_attempt_ms <= ?1)
                     OR (state = 'running'
                         AND (claimed_until_ms < ?1
                              OR (owner_id IS NOT NULL
                                  AND NOT EXISTS (SELECT 1 FROM owners
                                                  WHERE owners.id = jobs.owner_id AND owners.heartbeat_ms >= ?3)))))
                   AND (?2 IS NULL OR id = ?2)
                   AND (?7 OR kind <> 'pull')
                 ORDER BY next_attempt_ms, id
                 LIMIT 1)
             RETURNING id, kind, session_id, download_url, download_expiry_ms, attempts",
        )?
        .query_row(
            params![
                now,
                only,
                now - stale.as_millis() as i64,
                now + lease.as_millis() as i64,
                lease_token,
                owner.id,
                can_pull
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    known(row, 1, JobKind::parse)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, u32>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((id, kind, session, download_url, download_expiry_ms, attempt)) = claimed else {
        return Ok(None);
    };
    tx.commit()?;
    let session_id = match SessionId::parse(&session) {
        Ok(s) => s,
        Err(e) => {
            // Cannot happen for rows chatsink wrote; bury the job rather than loop on it.
            let msg = format!("stored session id '{session}' is invalid: {e}");
            fail_job(conn, id, &lease_token, &msg, None)?;
            return Ok(None);
        }
    };
    Ok(Some(ClaimedJob {
        id,
        kind,
        session_id,
        download_url,
        download_expiry_ms,
        attempt,
        lease_token,
    }))
}

/// Extends the lease while work goes on. False when the lease was lost.
pub fn extend_lease(
    conn: &Connection,
    job: &ClaimedJob,
    lease: Duration,
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let changed = conn.execute(
        "UPDATE jobs SET claimed_until_ms = ?3, updated_ms = ?4 WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        params![job.id, job.lease_token, now + lease.as_millis() as i64, now],
    )?;
    Ok(changed == 1)
}

/// True while `token` is still the job's lease; call inside the transaction that finishes it.
pub fn holds_lease(conn: &Connection, job_id: i64, token: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND lease_token = ?2 AND state = 'running')",
        params![job_id, token],
        |r| r.get(0),
    )
}

/// Marks the job done, inside the transaction that loaded its rows (or found nothing to load):
/// a dump without a row is a session with no chat. A reprocess or pull supersedes older failed
/// or dead jobs of the same session. False when the lease was lost.
pub fn complete_job(
    conn: &Connection,
    job: &ClaimedJob,
    rows_loaded: i64,
    rows_rejected: i64,
    outcome: JobOutcome,
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let outcome = match outcome {
        JobOutcome::Loaded if rows_loaded == 0 && rows_rejected == 0 => JobOutcome::NoChat,
        other => other,
    };
    let changed = conn.execute(
        "UPDATE jobs SET state = 'done', claimed_until_ms = NULL, last_error = NULL, rows_loaded = ?3, rows_rejected = ?4,
                         updated_ms = ?5, outcome = ?6
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        params![job.id, job.lease_token, rows_loaded, rows_rejected, now, outcome.as_str()],
    )?;
    if changed == 1 && job.kind != JobKind::Delivery {
        conn.execute(
            "UPDATE jobs SET state = 'done', last_error = 'superseded by job ' || ?2 || ': ' || coalesce(last_error, ''),
                             updated_ms = ?3
             WHERE session_id = ?1 AND id < ?2 AND state IN ('failed', 'dead')",
            params![job.session_id.as_str(), job.id, now],
        )?;
    }
    Ok(changed == 1)
}

/// Records a failed attempt: `retry_in` schedules the next one, `None` buries the job as dead.
/// Returns the new state, or `None` when the lease was lost (someone else owns the job now).
pub fn fail_job(
    conn: &mut Connection,
    job_id: i64,
    token: &str,
    error: &str,
    retry_in: Option<Duration>,
) -> rusqlite::Result<Option<JobState>> {
    let now = now_ms();
    let (state, next) = match retry_in {
        Some(delay) => (JobState::Failed, now + delay.as_millis() as i64),
        None => (JobState::Dead, now),
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.execute(
        "UPDATE jobs SET state = ?3, next_attempt_ms = ?4, last_error = ?5, claimed_until_ms = NULL, updated_ms = ?6
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        params![job_id, token, state.as_str(), next, error, now],
    )?;
    if changed == 1 {
        super::sessions::set_status_for_job(&tx, job_id, state, now)?;
    }
    tx.commit()?;
    Ok((changed == 1).then_some(state))
}

/// Gives a claimed job back untouched (shutdown): the attempt does not count.
pub fn release_job(conn: &Connection, job: &ClaimedJob) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE jobs SET state = CASE WHEN attempts > 1 THEN 'failed' ELSE 'pending' END,
                         attempts = max(attempts - 1, 0), claimed_until_ms = NULL, lease_token = NULL, owner_id = NULL, updated_ms = ?3
         WHERE id = ?1 AND lease_token = ?2 AND state = 'running'",
        params![job.id, job.lease_token, now_ms()],
    )?;
    Ok(changed == 1)
}

pub fn list_jobs(
    conn: &Connection,
    state: Option<JobState>,
    limit: u32,
) -> rusqlite::Result<Vec<Job>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![state.map(JobState::as_str), limit], job_from_row)?;
    rows.collect()
}

pub fn get_job(conn: &Connection, id: i64) -> rusqlite::Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        job_from_row,
    )
    .optional()
}

/// Counts of jobs by state, for health and metrics.
pub fn count_jobs_by_state(conn: &Connection) -> rusqlite::Result<Vec<(JobState, i64)>> {
    let mut stmt =
        conn.prepare("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")?;
    let rows = stmt.query_map([], |r| Ok((known(r, 0, JobState::parse)?, r.get(1)?)))?;
    rows.collect()
}

pub fn select_sessions(
    conn: &Connection,
    selector: &ReprocessSelector,
) -> rusqlite::Result<Vec<String>> {
    let collect =
        |sql: &str, param: Option<&dyn rusqlite::ToSql>| -> rusqlite::Result<Vec<String>> {
            let mut stmt = conn.prepare(sql)?;
            let rows = match param {
                Some(p) => stmt.query_map([p], |r| r.get(0))?.collect(),
                None => stmt.query_map([], |r| r.get(0))?.collect(),
            };
            rows
        };
    match selector {
        ReprocessSelector::Sessions(ids) => Ok(ids.iter().map(|s| s.to_string()).collect()),
        ReprocessSelector::All => collect("SELECT session_id FROM sessions ORDER BY session_id", None),
        ReprocessSelector::Since(ms) => {
            collect("SELECT session_id FROM sessions WHERE sort_ms >= ?1 ORDER BY session_id", Some(ms))
        }
        ReprocessSelector::LastJobIn(state) => collect(
            "SELECT j.session_id FROM jobs j
             WHERE j.id = (SELECT max(id) FROM jobs WHERE session_id = j.session_id) AND j.state = ?1
             ORDER BY j.session_id",
            Some(&state.as_str()),
        ),
    }
}

/// The ids among `ids` that the archive has never seen (no session row, no job).
pub fn unknown_sessions(conn: &Connection, ids: &[String]) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id = ?1)
             OR EXISTS (SELECT 1 FROM jobs WHERE session_id = ?1)",
    )?;
    let mut unknown = Vec::new();
    for id in ids {
        if !stmt.query_row([id], |r| r.get::<_, bool>(0))? {
            unknown.push(id.clone());
        }
    }
    Ok(unknown)
}

/// Enqueues one reprocess job per session, or finds the one already open: the partial UNIQUE
/// index allows one open reprocess job per session, so concurrent runs share it.
pub fn enqueue_reprocess(
    conn: &mut Connection,
    sessions: &[String],
) -> rusqlite::Result<Vec<(String, i64)>> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(sessions.len());
    {
        let mut insert = tx.prepare(
            "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
             VALUES ('reprocess', ?1, 'pending', ?2, ?2, ?2)
             ON CONFLICT DO NOTHING",
        )?;
        let mut open = tx.prepare(
            "SELECT id FROM jobs WHERE session_id = ?1 AND kind = 'reprocess' AND state IN ('pending', 'running', 'failed')",
        )?;
        for session in sessions {
            insert.execute(params![session, now])?;
            let id: i64 = open.query_row([session], |r| r.get(0))?;
            // A reprocess job waiting on backoff is made due now: the operator asked for it.
            tx.execute(
                "UPDATE jobs SET next_attempt_ms = min(next_attempt_ms, ?2) WHERE id = ?1 AND state = 'failed'",
                params![id, now],
            )?;
            out.push((session.clone(), id));
        }
    }
    tx.commit()?;
    Ok(out)
}

/// [`crate::store::Store::finish_unloaded`]: the job is done without a load, and its session says
/// why (no chat; or, for the dump it was last loaded from, what that load left).
pub fn finish_unloaded(
    conn: &mut Connection,
    job: &ClaimedJob,
    outcome: JobOutcome,
) -> rusqlite::Result<bool> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !complete_job(&tx, job, 0, 0, outcome)? {
        return Ok(false);
    }
    super::sessions::settle_unloaded(&tx, &job.session_id, outcome, now)?;
    tx.commit()?;
    Ok(true)
}

/// [`crate::store::Store::enqueue_pulls`] in one transaction.
pub fn enqueue_pulls(
    conn: &mut Connection,
    listed: &[ListedSession],
) -> rusqlite::Result<Vec<PullPlan>> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut plans = Vec::with_capacity(listed.len());
    {
        // A load that ever committed left `loaded_ms`; a webhook left a delivery job.
        let mut archived = tx.prepare(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id = ?1 AND loaded_ms IS NOT NULL),
                    EXISTS (SELECT 1 FROM jobs WHERE session_id = ?1 AND kind = 'delivery')",
        )?;
        let mut insert = tx.prepare(
            "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
             VALUES ('pull', ?1, 'pending', ?2, ?2, ?2)
             ON CONFLICT DO NOTHING",
        )?;
        let mut open = tx.prepare(
            "SELECT id FROM jobs WHERE session_id = ?1 AND kind = 'pull' AND state IN ('pending', 'running', 'failed')",
        )?;
        for session in listed {
            let id = session.id.as_str();
            let (loaded, delivered): (bool, bool) =
                archived.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let skip = if loaded {
                Some(PullSkip::Archived)
            } else if delivered {
                Some(PullSkip::Delivered)
            } else {
                None
            };
            if let Some(skip) = skip {
                plans.push(PullPlan {
                    session: session.id.clone(),
                    job: Err(skip),
                    created: false,
                });
                continue;
            }
            super::sessions::record_listed(&tx, session, now)?;
            let created = insert.execute(params![id, now])? == 1;
            let job: i64 = open.query_row([id], |r| r.get(0))?;
            // A pull waiting on backoff is made due now: someone asked for this session again.
            tx.execute(
                "UPDATE jobs SET next_attempt_ms = min(next_attempt_ms, ?2) WHERE id = ?1 AND state = 'failed'",
                params![job, now],
            )?;
            plans.push(PullPlan {
                session: session.id.clone(),
                job: Ok(job),
                created,
            });
        }
    }
    tx.commit()?;
    Ok(plans)
}

/// The sha256 of the dump the session's content was last loaded from (none: never loaded).
pub fn loaded_dump_sha256(conn: &Connection, session: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT dump_sha256 FROM sessions WHERE session_id = ?1 AND loaded_ms IS NOT NULL",
        [session],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// The download link (and its expiry) of the session's newest delivery.
pub fn delivery_link(
    conn: &Connection,
    session: &str,
) -> rusqlite::Result<Option<(String, Option<i64>)>> {
    conn.query_row(
        "SELECT download_url, download_expiry_ms FROM jobs
         WHERE session_id = ?1 AND kind = 'delivery' AND download_url IS NOT NULL
         ORDER BY id DESC LIMIT 1",
        [session],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Jobs due to run now that no worker holds (the backlog `/readyz` limits).
pub fn backlog(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM jobs WHERE state IN ('pending', 'failed') AND next_attempt_ms <= ?1",
        [now_ms()],
        |r| r.get(0),
    )
}

/// The oldest due job's age in milliseconds (queue lag), or 0 when none waits.
pub fn oldest_pending_age_ms(conn: &Connection) -> rusqlite::Result<i64> {
    let now = now_ms();
    let oldest: Option<i64> = conn.query_row(
        "SELECT min(next_attempt_ms) FROM jobs WHERE state IN ('pending', 'failed') AND next_attempt_ms <= ?1",
        [now],
        |r| r.get(0),
    )?;
    Ok(oldest.map(|t| now - t).unwrap_or(0))
}
