//! Sessions as RealtimeKit's sessions listing reports them, and what pulling one comes to.

use super::{SessionId, Timestamp};

/// A session's state in the listing. Only an ended session's chat can be complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListingStatus {
    Live,
    Ended,
    /// A state this build does not know: never pulled, reported as is.
    Other(String),
}

impl ListingStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "LIVE" => Self::Live,
            "ENDED" => Self::Ended,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One session from `GET .../sessions`: its id and the metadata the archive keeps when no
/// webhook brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSession {
    pub id: SessionId,
    pub status: ListingStatus,
    /// `associated_id`: the meeting.
    pub meeting_id: Option<String>,
    /// `meeting_display_name`.
    pub title: Option<String>,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
}

/// A participant of a session, from `GET .../sessions/{id}/participants`: who a sender is in
/// the app's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// `id`: the participant's peer id.
    pub participant_id: String,
    /// `user_id`: RealtimeKit's user id for them.
    pub user_id: Option<String>,
    /// `custom_participant_id`: the id the app gave when it added the participant.
    pub custom_participant_id: Option<String>,
    pub display_name: Option<String>,
    pub preset_name: Option<String>,
    pub joined_at: Option<Timestamp>,
    pub left_at: Option<Timestamp>,
}

impl Participant {
    /// Whether a dump's sender (`participantId`) is this participant: whether it names the
    /// peer id or the user id is not published, so either matches.
    pub fn is_sender(&self, sender: &str) -> bool {
        self.participant_id == sender || self.user_id.as_deref() == Some(sender)
    }
}

/// Why a listed session gets no pull job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullSkip {
    /// Its chat is archived already (loaded, or recorded as having none).
    Archived,
    /// A webhook delivery for it was received: that delivery's job loads it.
    Delivered,
}

impl PullSkip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Archived => "already archived",
            Self::Delivered => "a webhook delivery for it is in the archive",
        }
    }
}

/// What enqueueing one listed session came to: the pull job to run (a new one, or the one
/// already open), or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPlan {
    pub session: SessionId,
    pub job: Result<i64, PullSkip>,
    /// The job was made by this call (not one already open).
    pub created: bool,
}
