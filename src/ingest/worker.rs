//! The ingest workers that run inside `serve`: claim, run with a heartbeat on the lease, record
//! the outcome. On shutdown an in-flight job gets a grace period, then is released unfinished.

use super::pipeline::{process_job, Attempt, IngestContext};
use super::{IngestError, Retry};
use crate::config::JobSettings;
use crate::domain::{ClaimedJob, JobOutcome, JobState, LoadReport};
use crate::store::{Owner, Store};
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long a worker sleeps when the queue is empty and nobody wakes it.
const IDLE_POLL: Duration = Duration::from_millis(1000);
/// How long an in-flight job may run on after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Exponential backoff with jitter: attempt 1 waits about `base`, doubling per attempt, capped,
/// then drawn uniformly from the upper half so retries of many jobs spread out.
pub fn retry_delay(attempt: u32, settings: &JobSettings) -> Duration {
    let exp = settings
        .backoff_base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)));
    let capped = exp.min(settings.backoff_cap);
    let half = capped / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=half)
}

pub struct WorkerPool {
    handles: Vec<tokio::task::JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    wake: Arc<Notify>,
    alive: Arc<AtomicUsize>,
}

/// Counts a worker as alive from its start until its task ends, however it ends.
struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WorkerPool {
    /// Wakes a sleeping worker: a job was just enqueued.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// How many workers are running, readable from elsewhere (`/readyz`).
    pub fn alive(&self) -> Arc<AtomicUsize> {
        self.alive.clone()
    }

    /// Stops claiming, lets in-flight jobs finish within the grace period, releases the rest.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

pub fn spawn_workers(ctx: Arc<IngestContext>, count: usize) -> WorkerPool {
    let (shutdown, stop) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let alive = Arc::new(AtomicUsize::new(0));
    let handles = (0..count)
        .map(|n| {
            let ctx = ctx.clone();
            let stop = stop.clone();
            let wake = wake.clone();
            alive.fetch_add(1, Ordering::SeqCst);
            let guard = AliveGuard(alive.clone());
            tokio::spawn(async move {
                let _guard = guard;
                run_worker(n, ctx, wake, stop).await
            })
        })
        .collect();
    WorkerPool {
        handles,
        shutdown,
        wake,
        alive,
    }
}

async fn run_worker(
    n: usize,
    ctx: Arc<IngestContext>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!(worker = n, "ingest worker started");
    loop {
        let stopping = *stop.borrow();
        if stopping {
            break;
        }
        crate::failpoint::hit_async("worker.before_claim").await;
        match ctx
            .store
            .claim_job(
                &ctx.owner,
                ctx.jobs.lease,
                ctx.jobs.owner_stale,
                None,
                ctx.api.is_some(),
            )
            .await
        {
            Ok(Some(job)) => {
                run_claimed_job(&ctx, job, Some(stop.clone())).await;
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker = n, error = %e, "claiming a job failed; retrying shortly");
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
    tracing::debug!(worker = n, "ingest worker stopped");
}

/// What became of one attempt.
#[derive(Debug)]
pub enum AttemptResult {
    Done(JobOutcome, LoadReport),
    Failed { state: JobState, error: String },
    LeaseLost,
    Released,
}

/// Runs a claimed job to the end of this attempt and records the result in its row. `stop`
/// (shutdown) gives the job a grace period and then releases it.
pub async fn run_claimed_job(
    ctx: &IngestContext,
    job: ClaimedJob,
    stop: Option<watch::Receiver<bool>>,
) -> AttemptResult {
    let heartbeat = spawn_heartbeat(ctx, &job);
    let work = process_job(ctx, &job);
    tokio::pin!(work);
    let result = match stop {
        None => Some(work.await),
        Some(mut stop) => {
            tokio::select! {
                r = &mut work => Some(r),
                _ = async { drop(stop.wait_for(|s| *s).await) } => tokio::time::timeout(SHUTDOWN_GRACE, &mut work).await.ok(),
            }
        }
    };
    heartbeat.abort();
    let kind = job.kind.as_str();
    let Some(result) = result else {
        metrics::counter!("chatsink_job_attempts_total", "kind" => kind, "outcome" => "released")
            .increment(1);
        let released = ctx.store.release_job(&job).await;
        tracing::warn!(job_id = job.id, released = ?released, "shutdown: job released unfinished");
        return AttemptResult::Released;
    };
    let attempt = match result {
        Ok(Attempt::Done(outcome, report)) => {
            metrics::counter!("chatsink_rows_loaded_total").increment(report.rows_loaded as u64);
            metrics::counter!("chatsink_rows_rejected_total")
                .increment(report.rows_rejected as u64);
            metrics::counter!("chatsink_jobs_done_total", "kind" => kind, "outcome" => outcome.as_str())
                .increment(1);
            AttemptResult::Done(outcome, report)
        }
        Ok(Attempt::LeaseLost) => {
            tracing::warn!(
                job_id = job.id,
                "lease lost before the load committed; another worker owns the job"
            );
            AttemptResult::LeaseLost
        }
        Err(error) => record_failure(ctx, &job, error).await,
    };
    let outcome = match &attempt {
        AttemptResult::Done(..) => "done",
        AttemptResult::Failed {
            state: JobState::Dead,
            ..
        } => "dead",
        AttemptResult::Failed { .. } => "failed",
        AttemptResult::LeaseLost => "lease_lost",
        AttemptResult::Released => "released",
    };
    metrics::counter!("chatsink_job_attempts_total", "kind" => kind, "outcome" => outcome)
        .increment(1);
    attempt
}

async fn record_failure(
    ctx: &IngestContext,
    job: &ClaimedJob,
    error: IngestError,
) -> AttemptResult {
    let retry_in = match error.retry() {
        Retry::Never => None,
        Retry::Later(_) if job.attempt >= ctx.jobs.max_attempts => None,
        Retry::Later(after) => {
            let backoff = retry_delay(job.attempt, &ctx.jobs);
            Some(after.map_or(backoff, |after| after.max(backoff)))
        }
    };
    let message = error.to_string();
    let recorded = ctx.store.fail_job(job, &message, retry_in).await;
    match recorded {
        Ok(Some(state)) => {
            tracing::warn!(job_id = job.id, state = state.as_str(), retry_in_ms = retry_in.map(|d| d.as_millis() as u64), error = %message, "job attempt failed");
            AttemptResult::Failed {
                state,
                error: message,
            }
        }
        Ok(None) => AttemptResult::LeaseLost,
        Err(e) => {
            // The lease will expire and the job be claimed again: nothing is lost.
            tracing::error!(job_id = job.id, error = %e, "could not record the job's failure");
            AttemptResult::Failed {
                state: JobState::Running,
                error: message,
            }
        }
    }
}

/// Extends the lease every third of its length while the job runs.
fn spawn_heartbeat(ctx: &IngestContext, job: &ClaimedJob) -> tokio::task::JoinHandle<()> {
    let store = ctx.store.clone();
    let lease = ctx.jobs.lease;
    let job = job.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(lease / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            match store.extend_lease(&job, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
            }
        }
    })
}

/// This process's owner heartbeat: beats every fifth of `stale` (the silence after which other
/// processes take the owner's jobs) until the handle is aborted.
pub fn spawn_owner_heartbeat(
    store: Store,
    owner: Owner,
    stale: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((stale / 5).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = store.heartbeat(&owner).await {
                tracing::warn!(error = %e, "owner heartbeat failed; other processes may take this one's jobs");
            }
        }
    })
}
