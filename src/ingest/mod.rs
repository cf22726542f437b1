//! Ingest: claim a job -> obtain the session's dump (download, or the stored copy) -> parse the
//! CSV -> load it into SQLite, finishing the job in the same transaction as the load.
//!
//! Never loads a session twice for one delivery: the load and the job's `done` commit together,
//! and only while the worker still holds the job's lease.

mod download;
mod dump;
mod manual;
mod pipeline;
mod replay_api;
mod url_policy;
mod worker;

pub use download::{DownloadError, Downloader};
pub use dump::{DumpError, DumpReader, ParsedAhead, ReadFailure, REQUIRED_COLUMNS};
pub use manual::{ingest_file, ingest_reader, reprocess, ReprocessOutcome};
pub use pipeline::{process_job, IngestContext, JobOutcome};
pub use replay_api::{ReplayApi, ReplayApiError};
pub use url_policy::{HostPattern, PolicyError, UrlPolicy};
pub use worker::{retry_delay, run_claimed_job, spawn_workers, AttemptResult, WorkerPool};

use std::time::Duration;

/// Why a job attempt failed, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Will fail the same way every time: the job goes straight to `dead`.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later: retried with backoff (no sooner than `retry_after`).
    #[error("{message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Sessions asked for by id that the archive has never seen: nothing was enqueued.
    #[error("unknown session(s): {}", .0.join(", "))]
    UnknownSessions(Vec<String>),
}

impl IngestError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

impl From<DownloadError> for IngestError {
    fn from(e: DownloadError) -> Self {
        if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::transient(e.to_string())
        }
    }
}

impl From<ReplayApiError> for IngestError {
    fn from(e: ReplayApiError) -> Self {
        if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::Transient {
                message: e.to_string(),
                retry_after: e.retry_after(),
            }
        }
    }
}

impl From<DumpError> for IngestError {
    fn from(e: DumpError) -> Self {
        if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::transient(e.to_string())
        }
    }
}

impl From<crate::store::StoreError> for IngestError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::transient(format!("database: {e}"))
    }
}

impl From<rusqlite::Error> for IngestError {
    fn from(e: rusqlite::Error) -> Self {
        Self::transient(format!("database: {e}"))
    }
}

impl From<std::io::Error> for IngestError {
    fn from(e: std::io::Error) -> Self {
        Self::transient(format!("I/O: {e}"))
    }
}
