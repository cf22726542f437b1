//! The cron and operator side of ingest: `chatsink ingest FILE` and `chatsink reprocess`.

use super::pipeline::IngestContext;
use super::worker::{run_claimed_job, AttemptResult};
use super::{DumpReader, IngestError, ParsedAhead};
use crate::domain::{JobOutcome, JobState, LoadReport, ReprocessSelector, SessionId};
use crate::store::{Selected, Store, StoreError};
use std::path::Path;
use std::time::Duration;

/// Loads a dump file by hand. With `session`, the file is that session's dump (rows of other
/// sessions are rejected). Without, each session in the file is loaded as its own unit (see
/// [`Store::load_file`]). `on_session` hears of each session once its batch is committed.
pub async fn ingest_file(
    store: &Store,
    path: &Path,
    session: Option<&SessionId>,
    on_session: impl FnMut(&SessionId, &LoadReport) + Send + 'static,
) -> Result<Vec<(SessionId, LoadReport)>, IngestError> {
    let file = std::fs::File::open(path).map_err(|source| IngestError::Open {
        path: path.to_owned(),
        source,
    })?;
    ingest_reader(store, file, path, session, on_session).await
}

/// [`ingest_file`] over any reader (the CLI wraps the file in a progress bar); `path` names it
/// in errors.
pub async fn ingest_reader(
    store: &Store,
    input: impl std::io::Read + Send + 'static,
    path: &Path,
    session: Option<&SessionId>,
    on_session: impl FnMut(&SessionId, &LoadReport) + Send + 'static,
) -> Result<Vec<(SessionId, LoadReport)>, IngestError> {
    let only = session.cloned();
    let rows = tokio::task::spawn_blocking(move || {
        DumpReader::new(std::io::BufReader::with_capacity(1 << 20, input)).map(|reader| {
            ParsedAhead::spawn(match only {
                Some(session) => reader.only_session(session),
                None => reader,
            })
        })
    })
    .await
    .map_err(crate::store::StoreError::from_join)??;
    let loaded = store.load_file(rows, session.cloned(), on_session).await?;
    if let Some(reason) = loaded.input_failed {
        // The batch that was reading when it failed was rolled back; the ones before it stand.
        return Err(IngestError::InputCut {
            what: path.display().to_string(),
            reason,
        });
    }
    if loaded.orphans > 0 {
        return Err(IngestError::OrphanRows(loaded.orphans));
    }
    Ok(loaded.sessions)
}

/// What `reprocess` did for one session.
#[derive(Debug)]
pub struct ReprocessOutcome {
    pub session_id: String,
    pub job_id: i64,
    pub result: Result<LoadReport, ReprocessFailure>,
}

/// Why one session's reprocess did not load.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessFailure {
    /// The attempt failed; `error` is what the job recorded.
    #[error("{error} ({})", .state.as_str())]
    Failed { state: JobState, error: String },
    #[error("database: {0}")]
    Storage(#[from] StoreError),
    #[error("job {0} disappeared")]
    Vanished(i64),
}

/// Enqueues one reprocess job per selected session (sharing any already open, so two runs at
/// once cannot double up) and works through them; a job another process is running is waited for.
pub async fn reprocess(
    ctx: &IngestContext,
    selector: &ReprocessSelector,
    mut on_done: impl FnMut(&ReprocessOutcome),
) -> Result<Vec<ReprocessOutcome>, IngestError> {
    let Selected { sessions, unknown } = ctx.store.select_for_reprocess(selector).await?;
    if !unknown.is_empty() {
        return Err(IngestError::UnknownSessions(unknown));
    }
    let queued = ctx.store.enqueue_reprocess(sessions).await?;
    let mut outcomes = Vec::with_capacity(queued.len());
    for (session_id, job_id) in queued {
        let result = run_to_end(ctx, job_id).await.map(|(_, report)| report);
        let outcome = ReprocessOutcome {
            session_id,
            job_id,
            result,
        };
        on_done(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Claims `job_id` and runs it, or waits while another process runs it; one attempt either way.
pub(super) async fn run_to_end(
    ctx: &IngestContext,
    job_id: i64,
) -> Result<(JobOutcome, LoadReport), ReprocessFailure> {
    loop {
        let claimed = ctx
            .store
            .claim_job(
                &ctx.owner,
                ctx.jobs.lease,
                ctx.jobs.owner_stale,
                Some(job_id),
                ctx.api.is_some(),
            )
            .await;
        match claimed? {
            Some(job) => {
                return match run_claimed_job(ctx, job, None).await {
                    AttemptResult::Done(outcome, report) => Ok((outcome, report)),
                    AttemptResult::Failed { state, error } => {
                        Err(ReprocessFailure::Failed { state, error })
                    }
                    AttemptResult::LeaseLost | AttemptResult::Released => continue,
                };
            }
            None => {
                let Some(job) = ctx.store.job(job_id).await? else {
                    return Err(ReprocessFailure::Vanished(job_id));
                };
                match job.state {
                    JobState::Done => {
                        let report = LoadReport {
                            rows_loaded: job.rows_loaded.unwrap_or(0),
                            rows_rejected: job.rows_rejected.unwrap_or(0),
                            messages: job.rows_loaded.unwrap_or(0),
                            rows_erased: 0,
                        };
                        return Ok((job.outcome.unwrap_or(JobOutcome::Loaded), report));
                    }
                    JobState::Dead | JobState::Failed => {
                        return Err(ReprocessFailure::Failed {
                            state: job.state,
                            error: job.last_error.unwrap_or_default(),
                        })
                    }
                    JobState::Running | JobState::Pending => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
            }
        }
    }
}
