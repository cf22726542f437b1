//! One job attempt, start to finish.

use super::{Downloader, DumpReader, IngestError, ParsedAhead, ReplayApi};
use crate::config::{DownloadSettings, JobSettings};
use crate::domain::SessionId;
use crate::store::{jobs, load, sessions, ClaimedJob, Database, JobKind, LoadReport, SessionDump};
use rusqlite::TransactionBehavior;
use std::path::PathBuf;

const NO_CREDENTIALS: &str = "no Chat Replay API credentials are configured: set CHATSINK_RTK_ACCOUNT_ID, \
     CHATSINK_RTK_APP_ID and CHATSINK_RTK_API_TOKEN (or CHATSINK_DYTE_ORG_ID and CHATSINK_DYTE_API_KEY) so chatsink \
     can fetch a fresh download URL";

/// Everything a job attempt needs; shared by the workers of `serve` and by `reprocess`.
pub struct IngestContext {
    pub db: Database,
    pub data_dir: PathBuf,
    pub downloader: Downloader,
    pub replay_api: Option<ReplayApi>,
    pub jobs: JobSettings,
}

impl IngestContext {
    pub fn new(
        db: Database,
        data_dir: PathBuf,
        download: &DownloadSettings,
        jobs: JobSettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            downloader: Downloader::new(download, &data_dir)?,
            replay_api: ReplayApi::new(download),
            db,
            data_dir,
            jobs,
        })
    }
}

/// How an attempt ended for the job row.
#[derive(Debug)]
pub enum JobOutcome {
    Loaded(LoadReport),
    /// Another worker holds the job now (our lease expired); nothing was written.
    LeaseLost,
}

/// Runs one attempt of a claimed job: obtain the dump, then load it and mark the job done in one
/// transaction. Failures are returned for the caller to record (retry or dead).
#[tracing::instrument(skip_all, fields(job_id = job.id, session_id = %job.session_id, attempt = job.attempt))]
pub async fn process_job(ctx: &IngestContext, job: &ClaimedJob) -> Result<JobOutcome, IngestError> {
    let dump = obtain_dump(ctx, job).await?;
    let db = ctx.db.clone();
    let path = ctx.data_dir.join(&dump.path);
    let job = job.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<JobOutcome, IngestError> {
        let file = std::fs::File::open(&path)
            .map_err(|e| IngestError::transient(format!("opening {}: {e}", path.display())))?;
        let reader = DumpReader::new(std::io::BufReader::with_capacity(256 * 1024, file))?
            .only_session(job.session_id.clone());
        let mut reader = ParsedAhead::spawn(reader);
        let mut conn = db.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !jobs::holds_lease(&tx, job.id, &job.lease_token)? {
            return Ok(JobOutcome::LeaseLost);
        }
        let report = load::load_session(&tx, &job.session_id, reader.by_ref(), true)?;
        if let Some(e) = reader.error() {
            // Dropping the transaction rolls the partial load back.
            return Err(IngestError::transient(format!(
                "reading the stored dump: {e}"
            )));
        }
        sessions::set_session_dump(&tx, &job.session_id, &dump)?;
        if !jobs::complete_job(&tx, &job, report.rows_loaded, report.rows_rejected)? {
            return Ok(JobOutcome::LeaseLost);
        }
        crate::failpoint::hit("load.before_commit");
        tx.commit()?;
        crate::failpoint::hit("load.after_commit");
        Ok(JobOutcome::Loaded(report))
    })
    .await
    .map_err(|e| IngestError::transient(format!("load task failed: {e}")))??;
    if let JobOutcome::Loaded(report) = &outcome {
        tracing::info!(
            rows_loaded = report.rows_loaded,
            rows_rejected = report.rows_rejected,
            "session loaded"
        );
    }
    Ok(outcome)
}

/// The dump to load: a delivery downloads its URL; a reprocess prefers the stored copy, then the
/// session's delivery link (it may not have loaded yet). A link that has expired or is refused
/// is replaced through the Chat Replay API.
async fn obtain_dump(ctx: &IngestContext, job: &ClaimedJob) -> Result<SessionDump, IngestError> {
    let link = match job.kind {
        JobKind::Delivery => {
            let url = job
                .download_url
                .clone()
                .ok_or_else(|| IngestError::Permanent("job has no download URL".into()))?;
            Some((url, job.download_expiry_ms))
        }
        JobKind::Reprocess => {
            let session = job.session_id.clone();
            let stored = ctx
                .db
                .run(move |conn| Ok(sessions::session_dump(conn, &session)?))
                .await?;
            if let Some(dump) = stored.filter(|d| ctx.data_dir.join(&d.path).is_file()) {
                return Ok(dump);
            }
            let session = job.session_id.clone();
            ctx.db
                .run(move |conn| Ok(jobs::delivery_link(conn, session.as_str())?))
                .await?
        }
    };
    let Some((url, expiry)) = link else {
        return refresh_and_download(ctx, &job.session_id, "no stored dump").await;
    };
    if expiry.is_some_and(|expiry| expiry <= crate::store::now_ms()) {
        return refresh_and_download(ctx, &job.session_id, "the download URL has expired").await;
    }
    match ctx.downloader.download(&url, &job.session_id).await {
        Err(super::DownloadError::Forbidden) => {
            refresh_and_download(ctx, &job.session_id, "storage answered 403 (expired link)").await
        }
        other => Ok(other?),
    }
}

async fn refresh_and_download(
    ctx: &IngestContext,
    session: &SessionId,
    why: &str,
) -> Result<SessionDump, IngestError> {
    let Some(api) = &ctx.replay_api else {
        return Err(IngestError::Permanent(format!(
            "{why}, and {NO_CREDENTIALS}"
        )));
    };
    tracing::info!(
        reason = why,
        "fetching a fresh download URL from the Chat Replay API"
    );
    let fresh = api.fresh_download_url(session).await?;
    Ok(ctx.downloader.download(&fresh.url, session).await?)
}
