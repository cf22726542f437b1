//! One job attempt, start to finish.

use super::dump_store::{DumpStore, DumpStoreLocation, LocalDump};
use super::{Downloaded, Downloader, DumpReader, IngestError, ParsedAhead, RtkApi, RtkApiError};
use crate::config::{DownloadSettings, JobSettings};
use crate::domain::{ClaimedJob, JobKind, JobOutcome, LoadReport, SessionDump, SessionId};
use crate::store::{JobLoad, Owner, Store};
use std::path::Path;

/// Everything a job attempt needs; shared by the workers of `serve` and by `reprocess`.
pub struct IngestContext {
    pub store: Store,
    /// This process, as the owner of the leases its attempts hold.
    pub owner: Owner,
    pub downloader: Downloader,
    pub dumps: DumpStore,
    pub api: Option<RtkApi>,
    pub jobs: JobSettings,
}

impl IngestContext {
    pub fn new(
        store: Store,
        owner: Owner,
        data_dir: &Path,
        dumps: &DumpStoreLocation,
        download: &DownloadSettings,
        jobs: JobSettings,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            downloader: Downloader::new(download, data_dir)?,
            dumps: DumpStore::open(dumps, data_dir)?,
            api: RtkApi::new(download),
            store,
            owner,
            jobs,
        })
    }
}

/// How an attempt ended for the job row.
#[derive(Debug)]
pub enum Attempt {
    /// The job is done: how (`Loaded` or, for a dump without a row, `NoChat`), and what its
    /// load wrote (nothing, for a session with no chat or a dump loaded before).
    Done(JobOutcome, LoadReport),
    /// Another worker holds the job now (our lease expired); nothing was written.
    LeaseLost,
}

/// Runs one attempt of a claimed job: obtain the dump, then load it and mark the job done in one
/// commit. Failures are returned for the caller to record (retry or dead).
///
/// Two ends load nothing: a pulled session the Chat Replay API has no chat for is recorded as
/// having none (not retried); a delivery or pull whose dump is the one the session was last
/// loaded from (a late webhook for a session reconcile already loaded) is done unchanged. Only
/// `reprocess` loads the same dump again: that is what it is for.
#[tracing::instrument(skip_all, fields(job_id = job.id, session_id = %job.session_id, attempt = job.attempt))]
pub async fn process_job(ctx: &IngestContext, job: &ClaimedJob) -> Result<Attempt, IngestError> {
    if ctx.store.session_erased(&job.session_id).await? {
        tracing::info!("the session is erased (or purged by retention); nothing to load");
        return finish_unloaded(ctx, job, JobOutcome::Erased).await;
    }
    let (local, dump) = match obtain_dump(ctx, job).await {
        Err(IngestError::RtkApi(RtkApiError::NotFound(_))) if job.kind == JobKind::Pull => {
            tracing::info!("the Chat Replay API has no chat for this session");
            return finish_unloaded(ctx, job, JobOutcome::NoChat).await;
        }
        obtained => obtained?,
    };
    let previous = match job.kind {
        JobKind::Reprocess => None,
        _ => ctx.store.loaded_dump_sha256(&job.session_id).await?,
    };
    if job.kind != JobKind::Reprocess && previous.as_deref() == Some(dump.sha256.as_str()) {
        tracing::info!("the session was loaded from this same dump already; nothing to load");
        // The copy just kept is the session's kept dump, unless that one was not kept (it held
        // erased rows): then no copy may stay.
        let kept = ctx
            .store
            .stored_dump(&job.session_id)
            .await?
            .and_then(|d| d.key);
        if let Some(key) = dump
            .key
            .as_deref()
            .filter(|key| kept.as_deref() != Some(*key))
        {
            ctx.dumps.remove(key).await?;
        }
        return finish_unloaded(ctx, job, JobOutcome::Unchanged).await;
    }
    // The load trashes the dump it replaces (a reprocess reloads the kept one, its own).
    let replaces_a_dump = previous.is_some();
    let path = local.path().to_owned();
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
    let loaded = ctx.store.load_job(job, rows, dump).await;
    // A working copy (the dump store is a bucket, or none) goes once the load is over.
    drop(local);
    let report = match loaded? {
        JobLoad::Loaded(report) => report,
        JobLoad::LeaseLost => return Ok(Attempt::LeaseLost),
        JobLoad::Erased => {
            // Erased while the dump was on its way: the kept copy went to the trash.
            crate::governance::empty_trash(&ctx.store, &ctx.dumps).await?;
            return Ok(Attempt::Done(JobOutcome::Erased, LoadReport::default()));
        }
        JobLoad::InputFailed(reason) => {
            return Err(IngestError::InputCut {
                what: "the stored dump".into(),
                reason,
            })
        }
    };
    // A dump that held erased rows is not kept, and the one this load replaced goes.
    if report.rows_erased > 0 || replaces_a_dump {
        crate::governance::empty_trash(&ctx.store, &ctx.dumps).await?;
    }
    tracing::info!(
        rows_loaded = report.rows_loaded,
        rows_rejected = report.rows_rejected,
        rows_erased = report.rows_erased,
        "session loaded"
    );
    let outcome = if report.rows_loaded == 0 && report.rows_rejected == 0 {
        JobOutcome::NoChat
    } else {
        JobOutcome::Loaded
    };
    // The rows are committed (queryable) already; who the senders are follows.
    if outcome == JobOutcome::Loaded {
        super::participants::fetch_participants(&ctx.store, ctx.api.as_ref(), &job.session_id)
            .await;
    }
    Ok(Attempt::Done(outcome, report))
}

async fn finish_unloaded(
    ctx: &IngestContext,
    job: &ClaimedJob,
    outcome: JobOutcome,
) -> Result<Attempt, IngestError> {
    Ok(if ctx.store.finish_unloaded(job, outcome).await? {
        Attempt::Done(outcome, LoadReport::default())
    } else {
        Attempt::LeaseLost
    })
}

/// The dump to load, as a local file and its record: a delivery downloads its URL; a reprocess
/// or pull prefers the kept copy, then the session's delivery link (it may not have loaded yet),
/// then the Chat Replay API. A link that has expired or is refused is replaced through the API.
/// A download is kept in the dump store before its load can commit.
async fn obtain_dump(
    ctx: &IngestContext,
    job: &ClaimedJob,
) -> Result<(LocalDump, SessionDump), IngestError> {
    let link = match job.kind {
        JobKind::Delivery => {
            let url = job.download_url.clone().ok_or(IngestError::NoDownloadUrl)?;
            Some((url, job.download_expiry_ms))
        }
        JobKind::Reprocess | JobKind::Pull => {
            if let Some(dump) = ctx.store.stored_dump(&job.session_id).await? {
                let kept = match &dump.key {
                    Some(key) => ctx.dumps.fetch(key).await?,
                    None => None,
                };
                if let Some(local) = kept {
                    return Ok((local, dump));
                }
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
        other => keep(ctx, &job.session_id, other?).await,
    }
}

async fn keep(
    ctx: &IngestContext,
    session: &SessionId,
    downloaded: Downloaded,
) -> Result<(LocalDump, SessionDump), IngestError> {
    let (local, key) = ctx
        .dumps
        .keep(downloaded.file, session, &downloaded.sha256)
        .await?;
    Ok((
        local,
        SessionDump {
            key,
            sha256: downloaded.sha256,
        },
    ))
}

async fn refresh_and_download(
    ctx: &IngestContext,
    session: &SessionId,
    why: &'static str,
) -> Result<(LocalDump, SessionDump), IngestError> {
    let Some(api) = &ctx.api else {
        return Err(IngestError::NoCredentials { why });
    };
    tracing::info!(
        reason = why,
        "fetching a fresh download URL from the Chat Replay API"
    );
    let fresh = api.fresh_download_url(session).await?;
    let downloaded = ctx.downloader.download(&fresh.url, session).await?;
    keep(ctx, session, downloaded).await
}
