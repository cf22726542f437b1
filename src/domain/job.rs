//! The ingest queue's language: what a job is for, where it stands, and who holds it.

use super::SessionId;

/// A value read back from the database that this build does not know: a row written by a newer
/// chatsink or by hand. An error, never a silent default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (not one of: {known})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub known: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Created by a `meeting.chatSynced` delivery: download its URL.
    Delivery,
    /// Created by `reprocess`: re-parse the stored dump, or download a fresh one via the API.
    Reprocess,
    /// Created by `backfill` or reconcile for a session found in RealtimeKit's sessions listing
    /// that the archive holds nothing of: a download URL comes from the Chat Replay API.
    Pull,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivery => "delivery",
            Self::Reprocess => "reprocess",
            Self::Pull => "pull",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, UnknownValue> {
        match raw {
            "delivery" => Ok(Self::Delivery),
            "reprocess" => Ok(Self::Reprocess),
            "pull" => Ok(Self::Pull),
            _ => Err(UnknownValue {
                what: "job kind",
                value: raw.to_owned(),
                known: "delivery, reprocess, pull",
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    Running,
    /// Failed at least once; runs again at `next_attempt_ms`.
    Failed,
    Done,
    /// Gave up: a permanent error or too many attempts.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        Self::Pending,
        Self::Running,
        Self::Failed,
        Self::Done,
        Self::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownValue {
                what: "job state",
                value: raw.to_owned(),
                known: "pending, running, failed, done, dead",
            })
    }
}

/// How a `done` job ended: what its session holds now because of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The dump's rows were loaded as the session's content.
    Loaded,
    /// The session has no chat: the Chat Replay API has none for it, or its dump holds no row.
    NoChat,
    /// The dump is the one the session was last loaded from: nothing was written again (a late
    /// or repeated webhook for a session already archived).
    Unchanged,
    /// The session is on the erasure list (erased, or purged by retention): nothing was loaded
    /// and nothing was downloaded.
    Erased,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 4] = [Self::Loaded, Self::NoChat, Self::Unchanged, Self::Erased];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::NoChat => "no_chat",
            Self::Unchanged => "unchanged",
            Self::Erased => "erased",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, UnknownValue> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| UnknownValue {
                what: "job outcome",
                value: raw.to_owned(),
                known: "loaded, no_chat, unchanged, erased",
            })
    }
}

/// A job as listed by `chatsink jobs`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub session_id: String,
    pub state: JobState,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub rows_loaded: Option<i64>,
    pub rows_rejected: Option<i64>,
    /// How a `done` job ended (none for jobs finished by a build before outcomes were kept).
    pub outcome: Option<JobOutcome>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A job this worker holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: JobKind,
    pub session_id: SessionId,
    pub download_url: Option<String>,
    pub download_expiry_ms: Option<i64>,
    /// 1 on the first attempt.
    pub attempt: u32,
    /// Fences every write of this attempt: it holds only while the job's row still carries it.
    pub lease_token: String,
}

/// Which sessions `reprocess` works on.
#[derive(Debug, Clone)]
pub enum ReprocessSelector {
    Sessions(Vec<SessionId>),
    /// Sessions whose newest job is in this state (`failed` or `dead`).
    LastJobIn(JobState),
    All,
    /// Sessions whose time (start, creation, or first message) is at or after this instant.
    Since(i64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_states_read_back_or_fail_loudly() {
        for state in JobState::ALL {
            assert_eq!(JobState::parse(state.as_str()), Ok(state));
        }
        for kind in [JobKind::Delivery, JobKind::Reprocess, JobKind::Pull] {
            assert_eq!(JobKind::parse(kind.as_str()), Ok(kind));
        }
        for outcome in JobOutcome::ALL {
            assert_eq!(JobOutcome::parse(outcome.as_str()), Ok(outcome));
        }
        assert!(JobOutcome::parse("skipped").is_err());
        let e = JobState::parse("paused").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown job state 'paused' (not one of: pending, running, failed, done, dead)"
        );
        assert!(JobKind::parse("backfill").is_err());
    }
}
