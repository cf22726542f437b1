//! Pull as well as push: sessions found in RealtimeKit's sessions listing that the archive holds
//! nothing of become `pull` jobs, loaded through the same queue, download guard, parser and
//! loader as a webhook delivery.
//!
//! - `chatsink backfill` lists a window of ended sessions, enqueues the missing ones and runs
//!   them to the end itself (sharing any job another process has open, and waiting for it).
//! - Reconcile, inside `serve`, lists the sessions that ended since its last successful pass,
//!   once a grace period has given their webhooks the first chance, and enqueues the missing
//!   ones for the workers. One instance runs a pass at a time, under a lease in the database.

use super::manual::run_to_end;
use super::pipeline::IngestContext;
use super::walk::{ListingWalk, SessionPages, Shortfall};
use super::{IngestError, ListingQuery, ReprocessFailure, RtkApi};
use crate::domain::{
    JobOutcome, ListedSession, ListingStatus, LoadReport, PullPlan, PullSkip, SessionId, Timestamp,
};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// What became of one listed session in a backfill.
#[derive(Debug)]
pub enum Pulled {
    /// Loaded (or found to have no chat, or unchanged) by its pull job.
    Done(JobOutcome, LoadReport),
    /// No job: archived already, or a webhook delivery has it.
    Skipped(PullSkip),
    /// Still live: reconcile finds it once it ends.
    Live,
    /// Its job's attempt failed; the job retries later in `serve`.
    Failed(String),
}

/// One line of a backfill's progress.
#[derive(Debug)]
pub struct BackfillEvent {
    pub session: SessionId,
    pub pulled: Pulled,
}

/// A whole backfill, counted.
#[derive(Debug, Default)]
pub struct BackfillSummary {
    pub listed: usize,
    pub loaded: usize,
    pub no_chat: usize,
    pub skipped: usize,
    pub live: usize,
    /// Listing entries chatsink could not use (no id, an id it refuses), with why.
    pub not_understood: Vec<String>,
    /// Sessions that could not be loaded, with the error.
    pub failed: Vec<(SessionId, String)>,
    /// The listing's pages held fewer sessions than it counted.
    pub shortfall: Option<Shortfall>,
}

impl BackfillSummary {
    fn count(&mut self, pulled: &Pulled, session: &SessionId) {
        match pulled {
            Pulled::Done(JobOutcome::NoChat, _) => self.no_chat += 1,
            Pulled::Done(JobOutcome::Unchanged | JobOutcome::Erased, _) | Pulled::Skipped(_) => {
                self.skipped += 1
            }
            Pulled::Done(JobOutcome::Loaded, _) => self.loaded += 1,
            Pulled::Live => self.live += 1,
            Pulled::Failed(e) => self.failed.push((session.clone(), e.clone())),
        }
    }
}

/// Lists the ended sessions `query` picks, page by page, and loads each one the archive does not
/// hold, `concurrency` at a time. Run again after an interruption it resumes: sessions loaded
/// already are skipped without a download, and jobs left open are taken up again.
pub async fn backfill(
    ctx: &IngestContext,
    api: &RtkApi,
    query: &ListingQuery,
    concurrency: usize,
    mut on_event: impl FnMut(&BackfillEvent),
) -> Result<BackfillSummary, IngestError> {
    let mut summary = BackfillSummary::default();
    let mut pages = ListingWalk::new(SessionPages { api, query });
    while let Some(page) = pages.next().await? {
        summary.listed += page.entries;
        for why in &page.not_understood {
            tracing::warn!(entry = %why, "a listing entry is not a session chatsink can pull");
        }
        summary.not_understood.extend(page.not_understood);
        let (ended, live): (Vec<ListedSession>, Vec<ListedSession>) = page
            .items
            .into_iter()
            .partition(|s| s.status == ListingStatus::Ended);
        for session in live {
            let event = BackfillEvent {
                session: session.id,
                pulled: Pulled::Live,
            };
            summary.count(&event.pulled, &event.session);
            on_event(&event);
        }
        let plans = ctx.store.enqueue_pulls(ended).await?;
        let mut runs = futures_util::stream::iter(plans)
            .map(|plan| async move {
                let pulled = match plan.job {
                    Err(skip) => Pulled::Skipped(skip),
                    Ok(job) => match run_to_end(ctx, job).await {
                        Ok((outcome, report)) => Pulled::Done(outcome, report),
                        Err(ReprocessFailure::Storage(e)) => return Err(IngestError::from(e)),
                        Err(e) => Pulled::Failed(e.to_string()),
                    },
                };
                Ok(BackfillEvent {
                    session: plan.session,
                    pulled,
                })
            })
            .buffer_unordered(concurrency.max(1));
        while let Some(event) = runs.next().await {
            let event = event?;
            summary.count(&event.pulled, &event.session);
            on_event(&event);
        }
    }
    summary.shortfall = pages.shortfall();
    Ok(summary)
}

/// Reconcile's settings: how often a pass runs, and how long after a session ends its webhook
/// has before a pass pulls it.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    pub interval: Duration,
    pub grace: Duration,
}

/// The reconcile pass's name in the database's `passes` table.
pub const RECONCILE_PASS: &str = "reconcile";

/// Each pass looks again at this much before where the last one stopped: a session the listing
/// shows late (its `ended_at` set after the pass looked) is still seen.
const OVERLAP: Duration = Duration::from_secs(3600);

/// The first pass ever looks back this far; older sessions are `backfill`'s.
const FIRST_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// The listing filters by a session's time, not its end: a pass asks from this much before its
/// window so a session that started earlier and ended in the window is listed too.
const LONGEST_SESSION: Duration = Duration::from_secs(24 * 3600);

/// What one reconcile pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Ended sessions in the window, past the grace period.
    pub due: usize,
    /// Of those, sessions the archive had no delivery or load for.
    pub missing: usize,
    /// Pull jobs made for them (a missing session's job may be open already).
    pub enqueued: usize,
    /// The listing's pages held fewer sessions than it counted.
    pub shortfall: Option<Shortfall>,
}

/// One reconcile pass, if no other process is running one: list the sessions that ended between
/// the last pass's watermark (less [`OVERLAP`]) and now less the grace period, and enqueue those
/// the archive holds nothing of. `None` when another process holds the pass.
pub async fn reconcile_pass(
    ctx: &IngestContext,
    api: &RtkApi,
    settings: &ReconcileSettings,
) -> Result<Option<PassReport>, IngestError> {
    // Long enough for a pass over many pages at the API's rate; a holder that dies is passed
    // over as soon as its owner heartbeat stops.
    let lease = (settings.interval * 2).max(Duration::from_secs(600));
    let Some(lease) = ctx
        .store
        .begin_pass(RECONCILE_PASS, &ctx.owner, lease, ctx.jobs.owner_stale)
        .await?
    else {
        return Ok(None);
    };
    let result = run_pass(ctx, api, settings, lease.watermark).await;
    let ended = match &result {
        // The watermark stays where it was: the next pass lists the same window again.
        Ok((report, _)) if report.shortfall.is_some() => {
            let shortfall = report.shortfall.expect("checked");
            ctx.store.end_pass(lease, Err(shortfall.to_string())).await
        }
        Ok((_, cutoff)) => ctx.store.end_pass(lease, Ok(*cutoff)).await,
        Err(e) => ctx.store.end_pass(lease, Err(e.to_string())).await,
    };
    if let Err(e) = ended {
        tracing::warn!(error = %e, "could not record the reconcile pass's end");
    }
    result.map(|(report, _)| Some(report))
}

async fn run_pass(
    ctx: &IngestContext,
    api: &RtkApi,
    settings: &ReconcileSettings,
    watermark: Option<Timestamp>,
) -> Result<(PassReport, Timestamp), IngestError> {
    let ms = |d: Duration| d.as_millis() as i64;
    let cutoff = Timestamp::from_millis(Timestamp::now().millis() - ms(settings.grace));
    let from = Timestamp::from_millis(match watermark {
        Some(w) => w.millis() - ms(OVERLAP),
        None => cutoff.millis() - ms(FIRST_LOOKBACK),
    });
    let query = ListingQuery {
        since: Timestamp::from_millis(from.millis() - ms(LONGEST_SESSION)),
        until: Some(cutoff),
        meeting: None,
    };
    let mut report = PassReport::default();
    let mut pages = ListingWalk::new(SessionPages { api, query: &query });
    while let Some(page) = pages.next().await? {
        let due: Vec<ListedSession> = page
            .items
            .into_iter()
            .filter(|s| s.status == ListingStatus::Ended)
            .filter(|s| match s.ended_at {
                Some(end) => end >= from && end <= cutoff,
                // No end time: due once it began before the cutoff.
                None => s.started_at.or(s.created_at).is_some_and(|t| t <= cutoff),
            })
            .collect();
        report.due += due.len();
        // Archived sessions whose participants never came (their fetch failed): again now.
        let ids: Vec<SessionId> = due.iter().map(|s| s.id.clone()).collect();
        for session in ctx.store.sessions_without_participants(ids).await? {
            super::participants::fetch_participants(&ctx.store, ctx.api.as_ref(), &session).await;
        }
        let plans = ctx.store.enqueue_pulls(due).await?;
        for PullPlan { job, created, .. } in &plans {
            if job.is_ok() {
                report.missing += 1;
            }
            if *created {
                report.enqueued += 1;
            }
        }
    }
    report.shortfall = pages.shortfall();
    Ok((report, cutoff))
}

/// Runs reconcile passes every `settings.interval` until `stop`, the first soon after start;
/// `wake` tells the workers of new jobs. Off (None, with an info line) when the interval is 0
/// or no API credentials are configured.
pub fn spawn_reconcile(
    ctx: Arc<IngestContext>,
    settings: Option<ReconcileSettings>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some(settings) = settings else {
        tracing::info!("reconcile is off (CHATSINK_RECONCILE_INTERVAL_SECS=0)");
        return None;
    };
    let Some(api) = ctx.api.clone() else {
        tracing::info!(
            "reconcile is off: no RealtimeKit API credentials (set CHATSINK_RTK_ACCOUNT_ID, CHATSINK_RTK_APP_ID \
             and CHATSINK_RTK_API_TOKEN, or CHATSINK_DYTE_ORG_ID and CHATSINK_DYTE_API_KEY)"
        );
        return None;
    };
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let pass = reconcile_pass(&ctx, &api, &settings);
            let result = tokio::select! {
                result = pass => result,
                _ = stop.changed() => return,
            };
            record_pass(&result);
            if matches!(&result, Ok(Some(report)) if report.enqueued > 0) {
                wake.notify_waiters();
            }
        }
    }))
}

fn record_pass(result: &Result<Option<PassReport>, IngestError>) {
    match result {
        Ok(Some(report)) => {
            metrics::counter!("chatsink_reconcile_passes_total", "result" => "ok").increment(1);
            metrics::counter!("chatsink_reconcile_sessions_missing_total")
                .increment(report.missing as u64);
            metrics::counter!("chatsink_reconcile_sessions_enqueued_total")
                .increment(report.enqueued as u64);
            if let Some(shortfall) = report.shortfall {
                metrics::counter!("chatsink_reconcile_listing_shortfall_total")
                    .increment(shortfall.total - shortfall.seen);
                tracing::warn!(
                    listed = shortfall.total,
                    seen = shortfall.seen,
                    "reconcile: {shortfall}"
                );
            }
            let level_info = report.missing > 0;
            if level_info {
                tracing::info!(
                    due = report.due,
                    missing = report.missing,
                    enqueued = report.enqueued,
                    "reconcile: sessions whose webhook never came are queued"
                );
            } else {
                tracing::debug!(due = report.due, "reconcile: nothing missing");
            }
        }
        Ok(None) => {
            metrics::counter!("chatsink_reconcile_passes_total", "result" => "busy").increment(1);
            tracing::debug!("reconcile: another process is running a pass");
        }
        Err(e) => {
            metrics::counter!("chatsink_reconcile_passes_total", "result" => "failed").increment(1);
            tracing::warn!(error = %e, "reconcile pass failed; the next one tries again");
        }
    }
}
