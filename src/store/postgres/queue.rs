//! PostgreSQL's inbox, owners and job queue: the same use cases as SQLite's `inbox.rs`,
//! `intake.rs`, `owners.rs` and `jobs.rs`, for several instances on one database. Duplicates
//! are settled by the UNIQUE constraints, a job is claimed with `FOR UPDATE SKIP LOCKED` on the
//! database's clock, and every finishing write is fenced by the lease token.

use super::retry::retrying;
use super::{text, PgStore};
use crate::domain::{
    ClaimedJob, IntakeOutcome, Job, JobKind, JobOutcome, JobState, NewDelivery, ReprocessSelector,
    SessionId, Timestamp,
};
use crate::store::{Owner, ProcessIdentity, QueueGauges, Selected, StoreError};
use deadpool_postgres::GenericClient;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;

/// The database's clock in epoch milliseconds, for SQL.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Deliveries written in one transaction at most.
const MAX_BATCH: usize = 512;

/// Batches in flight at once, each on a connection of its own: while one waits for its commit
/// to be durable, the next is already being written, and the server flushes their commits
/// together.
const WRITERS: usize = 3;

type Reply = oneshot::Sender<Result<IntakeOutcome, Arc<StoreError>>>;

/// Group commit for webhook intake: one task turns every delivery that arrived while the
/// previous commit was on its way into one transaction, and answers each caller after it.
#[derive(Clone)]
pub struct PgIntake {
    queue: mpsc::Sender<(NewDelivery, Reply)>,
}

impl PgIntake {
    pub fn start(store: PgStore) -> Self {
        let (queue, receiver) = mpsc::channel(4 * MAX_BATCH);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(run_writer(store.clone(), receiver.clone()));
        }
        Self { queue }
    }

    pub async fn store(&self, delivery: NewDelivery) -> Result<IntakeOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((delivery, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(cause)) => Err(StoreError::Intake(cause)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }
}

/// One of the [`WRITERS`]: takes what has arrived (the queue is held only while taking it) and
/// writes it as one transaction.
async fn run_writer(
    store: PgStore,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<(NewDelivery, Reply)>>>,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            batch
        };
        match retrying("intake batch", || write_batch(&store, &batch)).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = batch.len(), "intake commit failed; answering 503");
                let cause = Arc::new(e);
                for (_, reply) in batch {
                    let _ = reply.send(Err(cause.clone()));
                }
            }
        }
    }
}

/// One transaction for the batch; when a delivery fails in it, the batch is written again with
/// each delivery in a savepoint of its own, so the bad one fails alone.
async fn write_batch(
    store: &PgStore,
    batch: &[(NewDelivery, Reply)],
) -> Result<Vec<Result<IntakeOutcome, Arc<StoreError>>>, StoreError> {
    let mut client = store.pool.get().await?;
    {
        let tx = client.transaction().await?;
        // All the batch's statements in flight at once on the one connection (tokio-postgres
        // pipelines them, and the server runs them in the order sent), instead of a round
        // trip each.
        let results =
            futures_util::future::join_all(batch.iter().map(|(d, _)| insert_delivery(&tx, d)))
                .await;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut failed = false;
        for result in results {
            match result {
                Ok(outcome) => outcomes.push(Ok(outcome)),
                // The whole transaction was rolled back: the batch runs again as it is.
                Err(e) if e.is_transient_conflict() => return Err(e),
                Err(e) => {
                    if !failed {
                        tracing::warn!(error = %e, "a delivery failed in a batch; writing them one savepoint each");
                    }
                    failed = true;
                }
            }
        }
        if !failed {
            announce(&tx, &outcomes).await?;
            tx.commit().await?;
            return Ok(outcomes);
        }
    }
    let mut tx = client.transaction().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (delivery, _) in batch {
        let savepoint = tx.savepoint("delivery").await?;
        match insert_delivery(&savepoint, delivery).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                outcomes.push(Ok(outcome));
            }
            Err(e) if e.is_transient_conflict() => return Err(e),
            Err(e) => {
                savepoint.rollback().await?;
                outcomes.push(Err(Arc::new(e)));
            }
        }
    }
    announce(&tx, &outcomes).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// One NOTIFY for a batch that enqueued a job, delivered at commit to every instance listening
/// (see `watch_jobs`).
async fn announce(
    tx: &impl GenericClient,
    outcomes: &[Result<IntakeOutcome, Arc<StoreError>>],
) -> Result<(), StoreError> {
    let enqueued = outcomes.iter().any(|o| {
        matches!(
            o,
            Ok(IntakeOutcome::Stored {
                job_id: Some(_),
                ..
            })
        )
    });
    if enqueued {
        tx.execute(&format!("NOTIFY {JOBS_CHANNEL}"), &[]).await?;
    }
    Ok(())
}

async fn insert_delivery(
    tx: &impl GenericClient,
    delivery: &NewDelivery,
) -> Result<IntakeOutcome, StoreError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO inbox (delivery_id, body_sha256, scheme, event, session_id, body, received_at, received_ms,
                                webhook_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .await?;
    let inbox = tx
        .query_opt(
            &insert,
            &[
                &text::put_opt(&delivery.delivery_id),
                &delivery.body_sha256,
                &delivery.scheme,
                &text::put(&delivery.event),
                &text::put_opt(&delivery.session_id),
                &delivery.body,
                &delivery.received.to_rfc3339(),
                &delivery.received.millis(),
                &text::put_opt(&delivery.webhook_id),
            ],
        )
        .await?;
    let Some(inbox) = inbox else {
        return Ok(IntakeOutcome::Duplicate);
    };
    let inbox_id: i64 = inbox.get(0);
    let Some(chat) = &delivery.chat_synced else {
        return Ok(IntakeOutcome::Stored {
            inbox_id,
            job_id: None,
        });
    };
    // Due by the database's clock, which every instance's claim reads: an instance whose own
    // clock runs ahead must not make its deliveries wait.
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO jobs (kind, inbox_id, session_id, download_url, download_expiry_ms, state, next_attempt_ms,
                               created_ms, updated_ms)
             VALUES ('delivery', $1, $2, $3, $4, 'pending', {NOW_MS}, {NOW_MS}, {NOW_MS}) RETURNING id"
        ))
        .await?;
    let job_id: i64 = tx
        .query_one(
            &insert,
            &[
                &inbox_id,
                &chat.session_id.as_str(),
                &text::put(&chat.chat_download_url),
                &chat.chat_download_url_expiry.map(Timestamp::millis),
            ],
        )
        .await?
        .get(0);
    let iso = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let sort_ms = chat
        .started_at
        .or(chat.created_at)
        .map(Timestamp::millis)
        .unwrap_or(delivery.received.millis());
    let upsert = tx
        .prepare_cached(&format!(
        "INSERT INTO sessions (session_id, meeting_id, title, created_at, started_at, ended_at, organizer_id,
                               organizer_name, sort_ms, status, updated_ms)
         SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,
                $9::bigint, 'queued', {NOW_MS}
         WHERE NOT EXISTS (SELECT 1 FROM erasures WHERE kind = 'session' AND id = $1)
         ON CONFLICT (session_id) DO UPDATE SET
            meeting_id = coalesce(EXCLUDED.meeting_id, sessions.meeting_id),
            title = coalesce(EXCLUDED.title, sessions.title),
            created_at = coalesce(EXCLUDED.created_at, sessions.created_at),
            started_at = coalesce(EXCLUDED.started_at, sessions.started_at),
            ended_at = coalesce(EXCLUDED.ended_at, sessions.ended_at),
            organizer_id = coalesce(EXCLUDED.organizer_id, sessions.organizer_id),
            organizer_name = coalesce(EXCLUDED.organizer_name, sessions.organizer_name),
            sort_ms = CASE WHEN EXCLUDED.started_at IS NOT NULL OR EXCLUDED.created_at IS NOT NULL
                           THEN EXCLUDED.sort_ms ELSE sessions.sort_ms END,
            status = 'queued',
            updated_ms = EXCLUDED.updated_ms"
        ))
        .await?;
    tx.execute(
        &upsert,
        &[
            &chat.session_id.as_str(),
            &text::put_opt(&chat.meeting_id),
            &text::put_opt(&chat.title),
            &iso(chat.created_at),
            &iso(chat.started_at),
            &iso(chat.ended_at),
            &text::put_opt(&chat.organizer_id),
            &text::put_opt(&chat.organizer_name),
            &sort_ms,
        ],
    )
    .await?;
    Ok(IntakeOutcome::Stored {
        inbox_id,
        job_id: Some(job_id),
    })
}

fn kind_of(row: &Row, index: usize) -> Result<JobKind, StoreError> {
    Ok(JobKind::parse(row.get::<_, &str>(index))?)
}

fn state_of(row: &Row, index: usize) -> Result<JobState, StoreError> {
    Ok(JobState::parse(row.get::<_, &str>(index))?)
}

const JOB_COLUMNS: &str = "id, kind, session_id, state, attempts, next_attempt_ms, last_error, rows_loaded, rows_rejected, created_ms, updated_ms, outcome";

fn job_from_row(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: row.get(0),
        kind: kind_of(row, 1)?,
        session_id: row.get(2),
        state: state_of(row, 3)?,
        attempts: row.get::<_, i32>(4) as u32,
        next_attempt_ms: row.get(5),
        last_error: text::get_opt(row.get(6)),
        rows_loaded: row.get(7),
        rows_rejected: row.get(8),
        created_ms: row.get(9),
        updated_ms: row.get(10),
        outcome: row
            .get::<_, Option<&str>>(11)
            .map(JobOutcome::parse)
            .transpose()?,
    })
}

impl PgStore {
    pub fn intake(&self) -> PgIntake {
        PgIntake::start(self.clone())
    }

    pub async fn heartbeat(&self, owner: Owner) -> Result<(), StoreError> {
        let owner = &owner;
        retrying("heartbeat", || async move {
            let client = self.pool.get().await?;
            beat(&client, owner).await
        })
        .await
    }

    pub async fn register_owner(&self, owner: Owner) -> Result<(), StoreError> {
        let owner = &owner;
        retrying("register an owner", || async move {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        beat(&tx, owner).await?;
        let others = tx
            .query(
                &format!(
                    "SELECT id, host, boot_id, pid_namespace, pid, start_ticks, heartbeat_ms < {NOW_MS} - $2
                     FROM owners WHERE id <> $1"
                ),
                &[&owner.id, &crate::store::owner::FORGET_AFTER_MS],
            )
            .await?;
        for row in others {
            let identity = ProcessIdentity {
                host: row.get(1),
                boot_id: row.get(2),
                pid_namespace: row.get(3),
                pid: row.get::<_, i64>(4) as u32,
                start_ticks: row.get::<_, i64>(5) as u64,
            };
            let forgotten: bool = row.get(6);
            if forgotten || identity.is_gone() {
                let id: String = row.get(0);
                tracing::info!(owner = %id, pid = identity.pid, "an earlier owner of job leases is gone; its jobs can be claimed now");
                tx.execute("DELETE FROM owners WHERE id = $1", &[&id])
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
        })
        .await
    }

    pub async fn retire_owner(&self, owner: Owner) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute("DELETE FROM owners WHERE id = $1", &[&owner.id])
            .await?;
        Ok(())
    }

    pub async fn claim_job(
        &self,
        owner: Owner,
        lease: Duration,
        stale: Duration,
        only: Option<i64>,
        can_pull: bool,
    ) -> Result<Option<ClaimedJob>, StoreError> {
        let lease_token = uuid::Uuid::new_v4().to_string();
        let (lease_ms, stale_ms) = (lease.as_millis() as i64, stale.as_millis() as i64);
        let (token, owner_id) = (&lease_token, &owner.id);
        // SKIP LOCKED: instances claiming at once each take a different job, none waits.
        let row = retrying("claim a job", || async move {
            let client = self.pool.get().await?;
            Ok(client
            .query_opt(
                &format!(
                    "WITH now AS (SELECT {NOW_MS} AS ms),
                     picked AS (
                         SELECT id FROM jobs, now
                         WHERE ((state IN ('pending', 'failed') AND next_attempt_ms <= now.ms)
                             OR (state = 'running'
                                 AND (claimed_until_ms < now.ms
                                      OR (owner_id IS NOT NULL
                                          AND NOT EXISTS (SELECT 1 FROM owners
                                                          WHERE owners.id = jobs.owner_id
                                                            AND owners.heartbeat_ms >= now.ms - $3)))))
                           AND ($1::bigint IS NULL OR id = $1)
                           AND ($6 OR kind <> 'pull')
                         ORDER BY next_attempt_ms, id
                         LIMIT 1
                         FOR UPDATE SKIP LOCKED)
                     UPDATE jobs SET state = 'running', attempts = attempts + 1, claimed_until_ms = now.ms + $2,
                                     lease_token = $4, owner_id = $5, updated_ms = now.ms
                     FROM picked, now WHERE jobs.id = picked.id
                     RETURNING jobs.id, jobs.kind, jobs.session_id, jobs.download_url, jobs.download_expiry_ms,
                               jobs.attempts"
                ),
                &[&only, &lease_ms, &stale_ms, token, owner_id, &can_pull],
            )
            .await?)
        })
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.get(0);
        let session: String = row.get(2);
        let claimed = ClaimedJob {
            id,
            kind: kind_of(&row, 1)?,
            session_id: match SessionId::parse(&session) {
                Ok(s) => s,
                Err(e) => {
                    let job = ClaimedJob {
                        id,
                        kind: JobKind::Delivery,
                        session_id: SessionId::parse("invalid").expect("a valid id"),
                        download_url: None,
                        download_expiry_ms: None,
                        attempt: 1,
                        lease_token,
                    };
                    let msg = format!("stored session id '{session}' is invalid: {e}");
                    self.fail_job(job, msg, None).await?;
                    return Ok(None);
                }
            },
            download_url: row.get(3),
            download_expiry_ms: row.get(4),
            attempt: row.get::<_, i32>(5) as u32,
            lease_token,
        };
        Ok(Some(claimed))
    }

    pub async fn extend_lease(&self, job: ClaimedJob, lease: Duration) -> Result<bool, StoreError> {
        let job = &job;
        let changed = retrying("extend lease", || async move {
            let client = self.pool.get().await?;
            Ok(client
                .execute(
                    &format!(
                        "UPDATE jobs SET claimed_until_ms = {NOW_MS} + $3, updated_ms = {NOW_MS}
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'"
                    ),
                    &[&job.id, &job.lease_token, &(lease.as_millis() as i64)],
                )
                .await?)
        })
        .await?;
        Ok(changed == 1)
    }

    pub async fn release_job(&self, job: ClaimedJob) -> Result<bool, StoreError> {
        let job = &job;
        let changed = retrying("release job", || async move {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                &format!(
                    "UPDATE jobs SET state = CASE WHEN attempts > 1 THEN 'failed' ELSE 'pending' END,
                                     attempts = greatest(attempts - 1, 0), claimed_until_ms = NULL,
                                     lease_token = NULL, owner_id = NULL, updated_ms = {NOW_MS}
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'"
                ),
                &[&job.id, &job.lease_token],
            )
            .await?)
        })
        .await?;
        Ok(changed == 1)
    }

    pub async fn fail_job(
        &self,
        job: ClaimedJob,
        error: String,
        retry_in: Option<Duration>,
    ) -> Result<Option<JobState>, StoreError> {
        let (state, delay) = match retry_in {
            Some(delay) => (JobState::Failed, delay.as_millis() as i64),
            None => (JobState::Dead, 0),
        };
        let error = text::put(&error);
        let (job, state, error) = (&job, &state, &error);
        retrying("record a failed attempt", || async move {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            let changed = tx
                .execute(
                    &format!(
                    "UPDATE jobs SET state = $3, next_attempt_ms = {NOW_MS} + $4, last_error = $5,
                                     claimed_until_ms = NULL, updated_ms = {NOW_MS}
                     WHERE id = $1 AND lease_token = $2 AND state = 'running'"
                ),
                    &[&job.id, &job.lease_token, &state.as_str(), &delay, error],
                )
                .await?;
            if changed == 1 {
                tx.execute(
                    &format!(
                        "UPDATE sessions SET status = $2, updated_ms = {NOW_MS}
                     WHERE session_id = (SELECT session_id FROM jobs WHERE id = $1)"
                    ),
                    &[&job.id, &state.as_str()],
                )
                .await?;
            }
            tx.commit().await?;
            Ok((changed == 1).then_some(*state))
        })
        .await
    }

    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    pub async fn jobs(&self, state: Option<JobState>, limit: u32) -> Result<Vec<Job>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR state = $1)
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&state.map(JobState::as_str), &i64::from(limit)],
            )
            .await?;
        rows.iter().map(job_from_row).collect()
    }

    pub async fn delivery_link(
        &self,
        session: SessionId,
    ) -> Result<Option<(String, Option<i64>)>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT download_url, download_expiry_ms FROM jobs
                 WHERE session_id = $1 AND kind = 'delivery' AND download_url IS NOT NULL
                 ORDER BY id DESC LIMIT 1",
                &[&session.as_str()],
            )
            .await?;
        Ok(row.map(|r| (text::get(r.get(0)), r.get(1))))
    }

    pub async fn select_for_reprocess(
        &self,
        selector: ReprocessSelector,
    ) -> Result<Selected, StoreError> {
        let client = self.pool.get().await?;
        let ids = |rows: Vec<Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let sessions: Vec<String> = match &selector {
            ReprocessSelector::Sessions(ids) => ids.iter().map(|s| s.to_string()).collect(),
            ReprocessSelector::All => ids(client
                .query("SELECT session_id FROM sessions ORDER BY session_id", &[])
                .await?),
            ReprocessSelector::Since(ms) => ids(client
                .query(
                    "SELECT session_id FROM sessions WHERE sort_ms >= $1 ORDER BY session_id",
                    &[ms],
                )
                .await?),
            ReprocessSelector::LastJobIn(state) => ids(client
                .query(
                    "SELECT j.session_id FROM jobs j
                     WHERE j.id = (SELECT max(id) FROM jobs WHERE session_id = j.session_id) AND j.state = $1
                     ORDER BY j.session_id",
                    &[&state.as_str()],
                )
                .await?),
        };
        let unknown = match selector {
            ReprocessSelector::Sessions(_) => ids(client
                .query(
                    "SELECT id FROM unnest($1::text[]) AS asked (id)
                     WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE session_id = asked.id)
                       AND NOT EXISTS (SELECT 1 FROM jobs WHERE session_id = asked.id)",
                    &[&sessions],
                )
                .await?),
            _ => Vec::new(),
        };
        Ok(Selected { sessions, unknown })
    }

    pub async fn enqueue_reprocess(
        &self,
        sessions: Vec<String>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sessions = &sessions;
        retrying("enqueue reprocess jobs", || async move {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let mut out = Vec::with_capacity(sessions.len());
        for session in sessions {
            // The partial UNIQUE index allows one open reprocess job per session: concurrent
            // runs, on any instance, share it.
            tx.execute(
                &format!(
                    "INSERT INTO jobs (kind, session_id, state, next_attempt_ms, created_ms, updated_ms)
                     VALUES ('reprocess', $1, 'pending', {NOW_MS}, {NOW_MS}, {NOW_MS})
                     ON CONFLICT DO NOTHING"
                ),
                &[&session],
            )
            .await?;
            let id: i64 = tx
                .query_one(
                    &format!(
                        "UPDATE jobs SET next_attempt_ms = least(next_attempt_ms, {NOW_MS})
                         WHERE session_id = $1 AND kind = 'reprocess' AND state IN ('pending', 'running', 'failed')
                         RETURNING id"
                    ),
                    &[&session],
                )
                .await?
                .get(0);
            out.push((session.clone(), id));
        }
        // Not announced: the `reprocess` that asked for these claims them at once, with its own
        // settings (credentials, say); serve's workers take any it leaves by polling.
        tx.commit().await?;
        Ok(out)
        })
        .await
    }

    pub async fn backlog(&self) -> Result<i64, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(
                &format!(
                    "SELECT count(*) FROM jobs WHERE state IN ('pending', 'failed') AND next_attempt_ms <= {NOW_MS}"
                ),
                &[],
            )
            .await?
            .get(0))
    }

    pub async fn queue_gauges(&self) -> Result<QueueGauges, StoreError> {
        let client = self.pool.get().await?;
        let by_state = client
            .query(
                "SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((state_of(r, 0)?, r.get::<_, i64>(1))))
            .collect::<Result<_, StoreError>>()?;
        let lag_ms: i64 = client
            .query_one(
                &format!(
                    "SELECT coalesce({NOW_MS} - min(next_attempt_ms), 0) FROM jobs
                     WHERE state IN ('pending', 'failed') AND next_attempt_ms <= {NOW_MS}"
                ),
                &[],
            )
            .await?
            .get(0);
        Ok(QueueGauges { by_state, lag_ms })
    }

    pub async fn check_writable(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        // A write that changes nothing still needs a primary that accepts writes.
        client
            .batch_execute("BEGIN; CREATE TEMP TABLE IF NOT EXISTS health_probe (x int); COMMIT;")
            .await?;
        Ok(())
    }
}

async fn beat(client: &impl GenericClient, owner: &Owner) -> Result<(), StoreError> {
    let me = &owner.identity;
    client
        .execute(
            &format!(
                "INSERT INTO owners (id, role, host, boot_id, pid_namespace, pid, start_ticks, started_ms, heartbeat_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, {NOW_MS}, {NOW_MS})
                 ON CONFLICT (id) DO UPDATE SET heartbeat_ms = EXCLUDED.heartbeat_ms"
            ),
            &[
                &owner.id,
                &owner.role,
                &me.host,
                &me.boot_id,
                &me.pid_namespace,
                &i64::from(me.pid),
                &(me.start_ticks as i64),
            ],
        )
        .await?;
    Ok(())
}

/// The channel an instance announces new jobs on; other instances' idle workers wake on it.
pub const JOBS_CHANNEL: &str = "chatsink_jobs";

impl PgStore {
    /// Wakes `wake` whenever any instance stores a delivery's job (LISTEN/NOTIFY), on a
    /// connection of its own that is made again when it drops. Where LISTEN is unavailable
    /// (CockroachDB, some poolers), workers still find jobs by polling; this only makes them
    /// find new ones sooner.
    pub fn watch_jobs(&self, wake: Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = store.listen_once(&wake).await {
                    tracing::warn!(error = %e, "LISTEN for new jobs failed; workers poll until it is back");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    }

    async fn listen_once(&self, wake: &Arc<tokio::sync::Notify>) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let (config, tls) = &*self.listener;
        let (client, mut connection) = config.connect(tls.clone()).await?;
        // The connection is driven by its own task, which hands notifications on.
        let wake = wake.clone();
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(_) = message? {
                    wake.notify_one();
                }
            }
            Ok::<(), tokio_postgres::Error>(())
        });
        client
            .batch_execute(&format!("LISTEN {JOBS_CHANNEL}"))
            .await?;
        // Until the connection ends; the client is kept, or the connection would close.
        let ended = driver.await.map_err(StoreError::from_join)?;
        drop(client);
        Ok(ended?)
    }
}
