//! One job attempt, start to finish.

use super::{Downloader, DumpReader, IngestError, ParsedAhead, ReplayApi};
use crate::config::{DownloadSettings, JobSettings};
use crate::domain::{ClaimedJob, JobKind, LoadReport, SessionDump, SessionId};
use crate::store::{JobLoad, Owner, Store};
use std::path::PathBuf;

/// Everything a job attempt needs; shared by the workers of `serve` and by `reprocess`.
pub struct IngestContext {
    pub store: Store,
    /// This process, as the owner of the leases its attempts hold.
    pub owner: Owner,
    pub data_dir: PathBuf,
    pub downloader: Downloader,
    pub replay_api: Option<ReplayApi>,
    pub jobs: JobSettings,
}

impl IngestContext {
    pub fn new(
        store: Store,
        owner: Owner,
        data_dir: PathBuf,
        download: &DownloadSettings,
        jobs: JobSettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            downloader: Downloader::new(download, &data_dir)?,
            replay_api: ReplayApi::new(download),
            store,
            owner,
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
/// commit. Failures are returned for the caller to record (retry or dead).
#[tracing::instrument(skip_all, fields(job_id = job.id, session_id = %job.session_id, attempt = job.attempt))]
pub async fn process_job(ctx: &IngestContext, job: &ClaimedJob) -> Result<JobOutcome, IngestError> {
    let dump = obtain_dump(ctx, job).await?;
    let path = ctx.data_dir.join(&dump.path);
    let session = job.session_id.clone();
    // Opening the file and reading its header are blocking I/O: off the async workers.
    let rows = tokio::task::spawn_blocking(move || -> Result<ParsedAhead, IngestError> {
        let file =
            std::fs::File::open(&path).map_err(|source| IngestError::Open { path, source })?;
        let reader = DumpReader::new(std::io::BufReader::with_capacity(256 * 1024, file))?;
        Ok(ParsedAhead::spawn(reader.only_session(session)))
    })
    .await
    .map_err(crate::store::StoreError::from_join)??;
    let report = match ctx.store.load_job(job, rows, dump).await? {
        JobLoad::Loaded(report) => report,
        JobLoad::LeaseLost => return Ok(JobOutcome::LeaseLost),
        JobLoad::InputFailed(reason) => {
            return Err(IngestError::InputCut {
                what: "the stored dump".into(),
                reason,
            })
        }
    };
    tracing::info!(
        rows_loaded = report.rows_loaded,
        rows_rejected = report.rows_rejected,
        "session loaded"
    );
    Ok(JobOutcome::Loaded(report))
}

/// The dump to load: a delivery downloads its URL; a reprocess prefers the stored copy, then the
/// session's delivery link (it may not have loaded yet). A link that has expired or is refused
/// is replaced through the Chat Replay API.
async fn obtain_dump(ctx: &IngestContext, job: &ClaimedJob) -> Result<SessionDump, IngestError> {
    let link = match job.kind {
        JobKind::Delivery => {
            let url = job.download_url.clone().ok_or(IngestError::NoDownloadUrl)?;
            Some((url, job.download_expiry_ms))
        }
        JobKind::Reprocess => {
            let stored = ctx.store.stored_dump(&job.session_id).await?;
            if let Some(dump) = stored.filter(|d| ctx.data_dir.join(&d.path).is_file()) {
                return Ok(dump);
            }
            ctx.store.delivery_link(&job.session_id).await?
        }
    };
    let Some((url, expiry)) = link else {
        return refresh_and_download(ctx, &job.session_id, "no stored dump").await;
    };
    if expiry.is_some_and(|expiry| expiry <= crate::domain::timestamp::now_ms()) {
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
    why: &'static str,
) -> Result<SessionDump, IngestError> {
    let Some(api) = &ctx.replay_api else {
        return Err(IngestError::NoCredentials { why });
    };
    tracing::info!(
        reason = why,
        "fetching a fresh download URL from the Chat Replay API"
    );
    let fresh = api.fresh_download_url(session).await?;
    Ok(ctx.downloader.download(&fresh.url, session).await?)
}
