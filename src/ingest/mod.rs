//! Ingest: claim a job -> obtain the session's dump (download, or the stored copy) -> parse the
//! CSV -> load it through the store, which finishes the job in the same commit as the load.
//!
//! Never loads a session twice for one delivery: the load and the job's `done` commit together,
//! and only while the worker still holds the job's lease.

mod download;
mod dump;
pub mod dump_store;
mod manual;
mod participants;
mod pipeline;
mod pull;
mod rtk_api;
mod url_policy;
mod walk;
mod worker;

pub use download::{DownloadError, Downloaded, Downloader};
pub use dump::{DumpError, DumpReader, ParsedAhead, ReadFailure, REQUIRED_COLUMNS};
pub use dump_store::{DumpStore, DumpStoreError, DumpStoreLocation};
pub use manual::{ingest_file, ingest_reader, reprocess, ReprocessFailure, ReprocessOutcome};
pub use pipeline::{process_job, Attempt, IngestContext};
pub use pull::{
    backfill, reconcile_pass, spawn_reconcile, BackfillEvent, BackfillSummary, PassReport, Pulled,
    ReconcileSettings, RECONCILE_PASS,
};
pub use rtk_api::{ListingPage, ListingPaging, ListingQuery, RtkApi, RtkApiError, LISTING_PAGE};
pub use url_policy::{PolicyError, UrlPolicy};
pub use worker::{
    retry_delay, run_claimed_job, spawn_owner_heartbeat, spawn_workers, AttemptResult, WorkerPool,
};

use std::path::PathBuf;
use std::time::Duration;

/// Why ingest failed. Each kind says what happened; [`IngestError::retry`] says whether
/// trying again can help, and the worker and the CLI map that to a job state or an exit code.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database could not do its part (busy, full, gone): worth retrying.
    #[error("database: {0}")]
    Storage(#[from] crate::store::StoreError),
    #[error("{0}")]
    Download(#[from] DownloadError),
    #[error("{0}")]
    RtkApi(#[from] RtkApiError),
    /// The dump could not be kept in, or read back from, the dump store.
    #[error("{0}")]
    DumpStore(#[from] DumpStoreError),
    /// The dump cannot be read as a chat dump (no header, columns missing) or a read failed.
    #[error("{0}")]
    Dump(#[from] DumpError),
    /// The dump's rows ended early: what was read of it was discarded.
    #[error("reading {what} stopped early: {reason}")]
    InputCut { what: String, reason: String },
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A delivery job without a link to download (cannot happen for jobs chatsink wrote).
    #[error("job has no download URL")]
    NoDownloadUrl,
    /// A fresh download URL is needed and the Chat Replay API cannot be asked for one.
    #[error("{why}, and no Chat Replay API credentials are configured: set CHATSINK_RTK_ACCOUNT_ID, \
        CHATSINK_RTK_APP_ID and CHATSINK_RTK_API_TOKEN (or CHATSINK_DYTE_ORG_ID and CHATSINK_DYTE_API_KEY) so chatsink \
        can fetch a fresh download URL")]
    NoCredentials { why: &'static str },
    /// Rows that could not be parsed and that no row names a session for.
    #[error("{0} row(s) could not be parsed and no row names a session to attach them to")]
    OrphanRows(usize),
    /// Sessions asked for by id that the archive has never seen: nothing was enqueued.
    #[error("unknown session(s): {}", .0.join(", "))]
    UnknownSessions(Vec<String>),
}

/// Whether an attempt that failed is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// It will fail the same way every time: the job goes straight to `dead`.
    Never,
    /// It may succeed later: retried with backoff, and no sooner than the delay when one is set.
    Later(Option<Duration>),
}

impl IngestError {
    pub fn retry(&self) -> Retry {
        let permanent = match self {
            Self::Download(e) => e.is_permanent(),
            Self::RtkApi(e) => {
                if !e.is_permanent() {
                    return Retry::Later(e.retry_after());
                }
                true
            }
            Self::Dump(e) => e.is_permanent(),
            Self::Storage(_) | Self::InputCut { .. } | Self::Open { .. } => false,
            Self::DumpStore(e) => matches!(e, DumpStoreError::BadKey { .. }),
            Self::NoDownloadUrl
            | Self::NoCredentials { .. }
            | Self::OrphanRows(_)
            | Self::UnknownSessions(_) => true,
        };
        if permanent {
            Retry::Never
        } else {
            Retry::Later(None)
        }
    }
}
