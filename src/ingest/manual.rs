//! The cron and operator side of ingest: `chatsink ingest FILE` and `chatsink reprocess`.

use super::pipeline::IngestContext;
use super::worker::{run_claimed_job, AttemptResult};
use super::{DumpReader, IngestError, ParsedAhead, ReadFailure};
use crate::domain::SessionId;
use crate::store::{
    jobs, load, Database, JobState, LoadBatch, LoadReport, LoadRow, ReprocessSelector,
};
use rusqlite::TransactionBehavior;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Rows after which `ingest` commits, at the end of the session it is in: large enough that a
/// batch's index pages and full-text segment are written once for many small sessions, small
/// enough that a running service's writers, which wait up to 10 s for the lock, wait about 2 s.
const BATCH_ROWS: i64 = 250_000;

/// The page cache (KiB) of `ingest`'s connection while it loads batches. Peak memory of a
/// 1M-row ingest stays near 100 MB.
const BATCH_CACHE_KIB: i64 = 65_536;

/// Loads a dump file by hand. With `session`, the file is that session's dump (rows of other
/// sessions are rejected). Without, each session in the file is loaded as its own unit (whole or
/// not at all; a session that shows up again later in the file is merged into what its first run
/// loaded, so the end state equals the file either way), committed in batches of about
/// [`BATCH_ROWS`] rows. `on_session` hears of each session once its batch is committed.
pub fn ingest_file(
    db: &Database,
    path: &Path,
    session: Option<&SessionId>,
    on_session: impl FnMut(&SessionId, &LoadReport),
) -> Result<Vec<(SessionId, LoadReport)>, IngestError> {
    let file = std::fs::File::open(path)
        .map_err(|e| IngestError::Permanent(format!("cannot open {}: {e}", path.display())))?;
    ingest_reader(db, file, path, session, on_session)
}

/// [`ingest_file`] over any reader (the CLI wraps the file in a progress bar); `path` names it
/// in errors.
pub fn ingest_reader(
    db: &Database,
    input: impl std::io::Read + Send + 'static,
    path: &Path,
    session: Option<&SessionId>,
    mut on_session: impl FnMut(&SessionId, &LoadReport),
) -> Result<Vec<(SessionId, LoadReport)>, IngestError> {
    let mut reader = DumpReader::new(std::io::BufReader::with_capacity(1 << 20, input))?;
    if let Some(session) = session {
        reader = reader.only_session(session.clone());
    }
    let mut reader = ParsedAhead::spawn(reader);
    let mut conn = db.conn()?;
    let mut results = Vec::new();
    if let Some(session) = session {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let report = load::load_session(&tx, session, reader.by_ref(), true)?;
        if let Some(e) = reader.error() {
            return Err(IngestError::transient(format!(
                "reading {}: {e}",
                path.display()
            )));
        }
        tx.commit()?;
        on_session(session, &report);
        results.push((session.clone(), report));
        return Ok(results);
    }

    let failure = reader.failure();
    let mut rows = reader.by_ref().peekable();
    let orphans = load::with_page_cache(&mut conn, BATCH_CACHE_KIB, |conn| {
        load_in_batches(conn, &mut rows, &failure, |session, report| {
            on_session(&session, &report);
            results.push((session, report));
        })
    })??;
    if let Some(e) = failure.get() {
        // The batch that was reading when it failed was rolled back; the ones before it stand.
        return Err(IngestError::transient(format!(
            "reading {} stopped early: {e}",
            path.display()
        )));
    }
    if !orphans.is_empty() {
        return Err(IngestError::Permanent(format!(
            "{} row(s) could not be parsed and no row names a session to attach them to",
            orphans.len()
        )));
    }
    Ok(results)
}

/// The multi-session part of [`ingest_reader`]: one transaction per batch of whole sessions (see
/// [`LoadBatch`]). Returns the rejected rows left over that name no session.
fn load_in_batches(
    conn: &mut rusqlite::Connection,
    rows: &mut std::iter::Peekable<impl Iterator<Item = LoadRow>>,
    failure: &ReadFailure,
    mut committed: impl FnMut(SessionId, LoadReport),
) -> Result<Vec<LoadRow>, IngestError> {
    let mut loaded: HashSet<SessionId> = HashSet::new();
    // Rejected rows that name no readable session join the next run.
    let mut orphans: Vec<LoadRow> = Vec::new();
    let mut current: Option<SessionId> = None;
    while rows.peek().is_some() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut batch = LoadBatch::begin(&tx)?;
        let mut batch_rows = 0;
        let mut reports = Vec::new();
        while let Some(next) = rows.peek() {
            if batch_rows >= BATCH_ROWS {
                break;
            }
            let Some(session) = row_session(next).or_else(|| current.clone()) else {
                orphans.push(rows.next().expect("peeked"));
                continue;
            };
            current = Some(session.clone());
            let run = orphans
                .drain(..)
                .chain(std::iter::from_fn(|| match rows.peek() {
                    Some(row) if row_session(row).is_none_or(|s| s == session) => rows.next(),
                    _ => None,
                }));
            let first_run = loaded.insert(session.clone());
            let report = batch.load_session(&session, run, first_run)?;
            batch_rows += report.rows_loaded + report.rows_rejected;
            reports.push((session, report));
        }
        if failure.get().is_some() {
            // Rows ended early: the last session may be cut short. Dropping tx rolls it back.
            return Ok(orphans);
        }
        batch.finish()?;
        tx.commit()?;
        for (session, report) in reports {
            committed(session, report);
        }
    }
    Ok(orphans)
}

fn row_session(row: &LoadRow) -> Option<SessionId> {
    match row {
        LoadRow::Message(m) => Some(m.session_id.clone()),
        LoadRow::Rejected(r) => r
            .session_id
            .as_deref()
            .and_then(|s| SessionId::parse(s).ok()),
    }
}

/// What `reprocess` did for one session.
#[derive(Debug)]
pub struct ReprocessOutcome {
    pub session_id: String,
    pub job_id: i64,
    pub result: Result<LoadReport, String>,
}

/// Enqueues one reprocess job per selected session (sharing any already open, so two runs at
/// once cannot double up) and works through them; a job another process is running is waited for.
pub async fn reprocess(
    ctx: &IngestContext,
    selector: &ReprocessSelector,
    mut on_done: impl FnMut(&ReprocessOutcome),
) -> Result<Vec<ReprocessOutcome>, IngestError> {
    let selector_owned = selector.clone();
    let (sessions, unknown) = ctx
        .db
        .run(move |conn| {
            let sessions = jobs::select_sessions(conn, &selector_owned)?;
            let unknown = match selector_owned {
                ReprocessSelector::Sessions(_) => jobs::unknown_sessions(conn, &sessions)?,
                _ => Vec::new(),
            };
            Ok((sessions, unknown))
        })
        .await?;
    if !unknown.is_empty() {
        return Err(IngestError::UnknownSessions(unknown));
    }
    let queued = ctx
        .db
        .run(move |conn| Ok(jobs::enqueue_reprocess(conn, &sessions)?))
        .await?;
    let mut outcomes = Vec::with_capacity(queued.len());
    for (session_id, job_id) in queued {
        let result = run_to_end(ctx, job_id).await;
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
async fn run_to_end(ctx: &IngestContext, job_id: i64) -> Result<LoadReport, String> {
    let lease = ctx.jobs.lease;
    loop {
        let claimed = ctx
            .db
            .run(move |conn| Ok(jobs::claim_next_job(conn, lease, Some(job_id))?))
            .await;
        match claimed.map_err(|e| e.to_string())? {
            Some(job) => {
                return match run_claimed_job(ctx, job, None).await {
                    AttemptResult::Done(report) => Ok(report),
                    AttemptResult::Failed { state, error } => {
                        Err(format!("{} ({})", error, state.as_str()))
                    }
                    AttemptResult::LeaseLost | AttemptResult::Released => continue,
                };
            }
            None => {
                let job = ctx
                    .db
                    .run(move |conn| Ok(jobs::get_job(conn, job_id)?))
                    .await
                    .map_err(|e| e.to_string())?;
                let Some(job) = job else {
                    return Err(format!("job {job_id} disappeared"));
                };
                match job.state {
                    JobState::Done => {
                        return Ok(LoadReport {
                            rows_loaded: job.rows_loaded.unwrap_or(0),
                            rows_rejected: job.rows_rejected.unwrap_or(0),
                            messages: job.rows_loaded.unwrap_or(0),
                        })
                    }
                    JobState::Dead | JobState::Failed => {
                        return Err(format!(
                            "{} ({})",
                            job.last_error.unwrap_or_default(),
                            job.state.as_str()
                        ))
                    }
                    JobState::Running | JobState::Pending => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                }
            }
        }
    }
}
