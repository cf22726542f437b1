//! What the archive holds, as the query API and the CLI read it back: sessions, messages,
//! participants, rejected rows and aggregates. Every store backend returns these.

use super::Timestamp;

/// A session's raw dump: its key in the dump store (`<session>/<sha256>.csv`; `None` when the
/// store keeps none) and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDump {
    pub key: Option<String>,
    pub sha256: String,
}

/// A session row as the query API serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub session_id: String,
    pub meeting_id: Option<String>,
    pub title: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub organizer_id: Option<String>,
    pub organizer_name: Option<String>,
    pub sort_ms: i64,
    pub status: String,
    pub message_count: i64,
    pub text_count: i64,
    pub image_count: i64,
    pub file_count: i64,
    pub other_count: i64,
    pub pinned_count: i64,
    pub rejected_count: i64,
    pub first_message_ms: Option<i64>,
    pub last_message_ms: Option<i64>,
    pub loaded_ms: Option<i64>,
    /// The error of the session's newest job, when that job failed (or died).
    pub last_error: Option<String>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub seq: i64,
    pub id: String,
    pub session_id: String,
    pub meeting_id: String,
    pub user_id: String,
    pub display_name: String,
    pub kind: String,
    pub pinned: bool,
    pub edited: bool,
    pub text: Option<String>,
    pub link: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<i64>,
    pub payload: String,
    pub created_ms: i64,
    /// The dump's columns chatsink has no field for: a JSON object of column name to text.
    pub extra: Option<String>,
    /// A private message's recipients; `None`: not private.
    pub target_user_ids: Option<Vec<String>>,
    /// The app's own id for the sender, when the session's participants name them.
    pub custom_participant_id: Option<String>,
}

impl MessageRow {
    /// The message's time in RFC 3339 (kept only as `created_ms`).
    pub fn created_at(&self) -> String {
        Timestamp::from_millis(self.created_ms).to_rfc3339()
    }
}

/// A participant seen in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub user_id: String,
    pub display_name: String,
    pub message_count: i64,
    pub session_count: i64,
    /// The app's own id for them, from the newest session whose participants name them.
    pub custom_participant_id: Option<String>,
}

/// Aggregates for `/v1/stats` over the same filters as `/v1/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageStats {
    pub total: i64,
    pub by_kind: Vec<(String, i64)>,
    pub pinned: i64,
    pub unpinned: i64,
    /// (UTC day `YYYY-MM-DD`, count), oldest first.
    pub by_day: Vec<(String, i64)>,
    /// (user id, latest display name, count), most messages first.
    pub top_users: Vec<(String, String, i64)>,
}

/// A stored rejected row, for `GET /v1/sessions/{id}/rejected` and `chatsink rejected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRejectedRow {
    pub id: i64,
    pub line: i64,
    pub reason: String,
    pub raw: Vec<u8>,
}
