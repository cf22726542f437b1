//! Pulling sessions found in RealtimeKit's sessions listing (`backfill`, reconcile): pull jobs,
//! jobs done without a load, and the lease on a pass one instance runs at a time. As SQLite's
//! `jobs.rs`, on the database's clock.

use super::load::complete_job;
use super::retry::retrying;
use super::{text, PgStore};
use crate::domain::{
    ClaimedJob, JobOutcome, ListedSession, LoadReport, PullPlan, PullSkip, SessionId, Timestamp,
};
use crate::store::{Owner, PassLease, PassState, StoreError};
use std::time::Duration;

const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

impl PgStore {
    pub async fn enqueue_pulls(
        &self,
        listed: Vec<ListedSession>,
    ) -> Result<Vec<PullPlan>, StoreError> {
        let listed = &listed;
        retrying("enqueue pull jobs", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let mut plans = Vec::with_capacity(listed.len());
            for session in listed {
                let id = session.id.as_str();
                // A load that ever committed left `loaded_ms`; a webhook left a delivery job.
                let row = tx
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM sessions WHERE session_id = $1 AND loaded_ms IS NOT NULL),
                                EXISTS (SELECT 1 FROM jobs WHERE session_id = $1 AND kind = 'delivery')",
                        &[&id],
                    )
                    .await?;
                let skip = if row.get::<_, bool>(0) {
                    Some(PullSkip::Archived)
                } else if row.get::<_, bool>(1) {
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
                let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
                let sort_ms = session
                    .started_at
                    .or(session.created_at)
                    .map(Timestamp::millis);
                // Metadata fills only what no webhook brought.
                tx.execute(
                    &format!(
                        "INSERT INTO sessions (session_id, meeting_id, title, created_at, started_at, ended_at, sort_ms, status, updated_ms)
                         SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text,
                                coalesce($7::bigint, {NOW_MS}), 'queued', {NOW_MS}
                         WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = $1)
                         ON CONFLICT (session_id) DO UPDATE SET
                            meeting_id = coalesce(sessions.meeting_id, excluded.meeting_id),
                            title = coalesce(sessions.title, excluded.title),
                            created_at = coalesce(sessions.created_at, excluded.created_at),
                            started_at = coalesce(sessions.started_at, excluded.started_at),
                            ended_at = coalesce(sessions.ended_at, excluded.ended_at),
                            sort_ms = CASE WHEN sessions.started_at IS NULL AND sessions.created_at IS NULL
                                           THEN excluded.sort_ms ELSE sessions.sort_ms END,
                            status = 'queued',
                            updated_ms = excluded.updated_ms"
                    ),
                    &[
                        &id,
                        &text::put_opt(&session.meeting_id),
                        &text::put_opt(&session.title),
                        &iso(session.created_at),
                        &iso(session.started_at),
                        &iso(session.ended_at),
                        &sort_ms,
                    ],
                )
                .await?;
                // The partial UNIQUE index allows one open pull job per session: backfills and
                // reconcile passes at once, on any instance, share it.
                let created = tx
                    .execute(
                        &format!(
                            "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
                             VALUES ('pull', $1, 'pending', {NOW_MS}, {NOW_MS}, {NOW_MS})
                             ON CONFLICT DO NOTHING"
                        ),
                        &[&id],
                    )
                    .await?
                    == 1;
                let job: i64 = tx
                    .query_one(
                        &format!(
                            "UPDATE jobs SET next_attempt_ms = least(next_attempt_ms, {NOW_MS})
                             WHERE session_id = $1 AND kind = 'pull' AND state IN ('pending', 'running', 'failed')
                             RETURNING id"
                        ),
                        &[&id],
                    )
                    .await?
                    .get(0);
                plans.push(PullPlan {
                    session: session.id.clone(),
                    job: Ok(job),
                    created,
                });
            }
            tx.execute(&format!("NOTIFY {}", super::queue::JOBS_CHANNEL), &[])
                .await?;
            tx.commit().await?;
            Ok(plans)
        })
        .await
    }

    pub async fn finish_unloaded(
        &self,
        job: ClaimedJob,
        outcome: JobOutcome,
    ) -> Result<bool, StoreError> {
        let job = &job;
        retrying("finish a job without a load", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            if !complete_job(&tx, job, &LoadReport::default(), outcome).await? {
                return Ok(false);
            }
            let sql = match outcome {
                // The session's row went with its erasure; its tombstone is all there is.
                JobOutcome::Erased => {
                    tx.commit().await?;
                    return Ok(true);
                }
                JobOutcome::NoChat => format!(
                    "UPDATE sessions SET status = 'no_chat', loaded_ms = {NOW_MS}, updated_ms = {NOW_MS}
                     WHERE session_id = $1"
                ),
                JobOutcome::Unchanged | JobOutcome::Loaded => format!(
                    "UPDATE sessions SET status = CASE WHEN message_count = 0 AND rejected_count = 0
                                                       THEN 'no_chat' ELSE 'loaded' END,
                                         updated_ms = {NOW_MS}
                     WHERE session_id = $1"
                ),
            };
            tx.execute(&sql, &[&job.session_id.as_str()]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    pub async fn loaded_dump_sha256(
        &self,
        session: SessionId,
    ) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT dump_sha256 FROM sessions WHERE session_id = $1 AND loaded_ms IS NOT NULL",
                &[&session.as_str()],
            )
            .await?;
        Ok(row.and_then(|r| r.get(0)))
    }

    pub async fn begin_pass(
        &self,
        name: &'static str,
        owner: Owner,
        lease: Duration,
        stale: Duration,
    ) -> Result<Option<PassLease>, StoreError> {
        let owner = &owner;
        retrying("take a pass's lease", || async move {
            let client = self.pool.get().await?;
            let token = uuid::Uuid::new_v4().to_string();
            client
                .execute(
                    &format!(
                        "INSERT INTO passes (name, updated_ms) VALUES ($1, {NOW_MS}) ON CONFLICT DO NOTHING"
                    ),
                    &[&name],
                )
                .await?;
            // One statement takes the row's lock, checks and takes the lease: two instances
            // at once take turns on the row, and the second finds it taken.
            let row = client
                .query_opt(
                    &format!(
                        "UPDATE passes SET owner_id = $2, lease_token = $3, lease_until_ms = {NOW_MS} + $4,
                                           updated_ms = {NOW_MS}
                         WHERE name = $1
                           AND (lease_token IS NULL OR lease_until_ms < {NOW_MS}
                                OR NOT EXISTS (SELECT 1 FROM owners WHERE owners.id = passes.owner_id
                                                                      AND owners.heartbeat_ms >= {NOW_MS} - $5))
                         RETURNING watermark_ms"
                    ),
                    &[
                        &name,
                        &owner.id,
                        &token,
                        &(lease.as_millis() as i64),
                        &(stale.as_millis() as i64),
                    ],
                )
                .await?;
            Ok(row.map(|r| PassLease {
                name: name.to_owned(),
                token,
                watermark: r.get::<_, Option<i64>>(0).map(Timestamp::from_millis),
            }))
        })
        .await
    }

    pub async fn end_pass(
        &self,
        lease: PassLease,
        result: Result<Timestamp, String>,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let changed = match result {
            Ok(watermark) => {
                client
                    .execute(
                        &format!(
                            "UPDATE passes SET lease_token = NULL, lease_until_ms = NULL, watermark_ms = $3,
                                               last_success_ms = {NOW_MS}, last_error = NULL, updated_ms = {NOW_MS}
                             WHERE name = $1 AND lease_token = $2"
                        ),
                        &[&lease.name, &lease.token, &watermark.millis()],
                    )
                    .await?
            }
            Err(error) => {
                client
                    .execute(
                        &format!(
                            "UPDATE passes SET lease_token = NULL, lease_until_ms = NULL, last_error = $3,
                                               updated_ms = {NOW_MS}
                             WHERE name = $1 AND lease_token = $2"
                        ),
                        &[&lease.name, &lease.token, &text::put(&error)],
                    )
                    .await?
            }
        };
        Ok(changed == 1)
    }

    pub async fn pass_state(&self, name: &'static str) -> Result<Option<PassState>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT last_success_ms, last_error FROM passes WHERE name = $1",
                &[&name],
            )
            .await?;
        Ok(row.map(|r| PassState {
            last_success: r.get::<_, Option<i64>>(0).map(Timestamp::from_millis),
            last_error: r.get::<_, Option<String>>(1).map(text::get),
        }))
    }
}
