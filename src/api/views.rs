//! What the query API returns. Messages take the chat SDK's shape (`id, userId, displayName,
//! type, time, pinned, isEdited` and `message` | `link` | `name, size, link`), so code written
//! against RealtimeKit reads them unchanged.

use crate::domain::Timestamp;
use crate::domain::{MessageRow, MessageStats, SessionRecord, StoredRejectedRow, UserRecord};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub session_id: String,
    pub meeting_id: String,
    pub user_id: String,
    pub display_name: String,
    /// `text`, `image`, `file`, or the dump's raw payloadType for other kinds.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the message was sent, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub pinned: bool,
    pub is_edited: bool,
    /// Text messages: the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Image and file messages: the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// File messages: the file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// File messages: the size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Unknown types, and files whose payload was not JSON: the raw payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Sent to some participants only (the dump's `targetUserIds`).
    pub private: bool,
    /// A private message's recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_user_ids: Option<Vec<String>>,
    /// The dump's columns chatsink has no field for: column name to text, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
    /// The app's own id for the sender (`custom_participant_id`), when the session's
    /// participants name them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_participant_id: Option<String>,
}

impl From<MessageRow> for MessageView {
    fn from(row: MessageRow) -> Self {
        let typed = matches!(row.kind.as_str(), "text" | "image")
            || (row.kind == "file" && row.link.is_some());
        Self {
            time: row.created_at(),
            payload: (!typed).then(|| row.payload.clone()),
            id: row.id,
            session_id: row.session_id,
            meeting_id: row.meeting_id,
            user_id: row.user_id,
            display_name: row.display_name,
            kind: row.kind,
            pinned: row.pinned,
            is_edited: row.edited,
            message: row.text,
            link: row.link,
            name: row.file_name,
            size: row.file_size,
            private: row.target_user_ids.is_some(),
            custom_participant_id: row.custom_participant_id,
            target_user_ids: row.target_user_ids,
            extra: row
                .extra
                .map(|e| serde_json::from_str(&e).unwrap_or(serde_json::Value::String(e))),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub messages: Vec<MessageView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Organizer {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageCounts {
    pub total: i64,
    pub text: i64,
    pub image: i64,
    pub file: i64,
    pub other: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub meeting_id: Option<String>,
    pub title: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub organizer: Organizer,
    pub message_counts: MessageCounts,
    pub pinned_count: i64,
    /// Ingest status: `queued`, `loaded`, `no_chat` (RealtimeKit has no chat for the session, or
    /// its dump held no row), `failed` (retrying) or `dead`.
    pub status: String,
    pub rejected_rows: i64,
    pub first_message_at: Option<String>,
    pub last_message_at: Option<String>,
    pub loaded_at: Option<String>,
    /// Why the session's newest ingest job failed, while it is `failed` or `dead`.
    pub last_error: Option<String>,
}

fn iso(ms: Option<i64>) -> Option<String> {
    ms.map(|m| Timestamp::from_millis(m).to_rfc3339())
}

impl From<SessionRecord> for SessionView {
    fn from(s: SessionRecord) -> Self {
        Self {
            organizer: Organizer {
                id: s.organizer_id,
                name: s.organizer_name,
            },
            message_counts: MessageCounts {
                total: s.message_count,
                text: s.text_count,
                image: s.image_count,
                file: s.file_count,
                other: s.other_count,
            },
            first_message_at: iso(s.first_message_ms),
            last_message_at: iso(s.last_message_ms),
            loaded_at: iso(s.loaded_ms),
            session_id: s.session_id,
            meeting_id: s.meeting_id,
            title: s.title,
            created_at: s.created_at,
            started_at: s.started_at,
            ended_at: s.ended_at,
            pinned_count: s.pinned_count,
            // Only while it matters: a session loaded since keeps no stale error.
            last_error: s
                .last_error
                .filter(|_| s.status == "failed" || s.status == "dead"),
            status: s.status,
            rejected_rows: s.rejected_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    /// The display name on the user's newest message.
    pub display_name: String,
    pub message_count: i64,
    /// How many sessions the user wrote in.
    pub session_count: i64,
    /// The app's own id for them (`custom_participant_id`), from the newest session whose
    /// participants name them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_participant_id: Option<String>,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.user_id,
            display_name: u.display_name,
            message_count: u.message_count,
            session_count: u.session_count,
            custom_participant_id: u.custom_participant_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayCount {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopUser {
    pub user_id: String,
    pub display_name: String,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PinnedCounts {
    #[serde(rename = "true")]
    pub pinned: i64,
    #[serde(rename = "false")]
    pub unpinned: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsView {
    pub total: i64,
    /// Message count per type.
    pub by_type: std::collections::BTreeMap<String, i64>,
    pub by_pinned: PinnedCounts,
    pub by_day: Vec<DayCount>,
    pub top_users: Vec<TopUser>,
}

impl From<MessageStats> for StatsView {
    fn from(s: MessageStats) -> Self {
        Self {
            total: s.total,
            by_type: s.by_kind.into_iter().collect(),
            by_pinned: PinnedCounts {
                pinned: s.pinned,
                unpinned: s.unpinned,
            },
            by_day: s
                .by_day
                .into_iter()
                .map(|(day, count)| DayCount { day, count })
                .collect(),
            top_users: s
                .top_users
                .into_iter()
                .map(|(user_id, display_name, count)| TopUser {
                    user_id,
                    display_name,
                    count,
                })
                .collect(),
        }
    }
}

/// A dump row that could not be loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedRowView {
    /// 1-based line of the dump where the row starts.
    pub line: i64,
    pub reason: String,
    /// The row's bytes exactly as read, as text; bytes that are not UTF-8 are written `\xNN`
    /// (and a backslash itself as `\\`, so the bytes can be recovered).
    pub raw: String,
}

impl From<StoredRejectedRow> for RejectedRowView {
    fn from(r: StoredRejectedRow) -> Self {
        Self {
            line: r.line,
            reason: r.reason,
            raw: escape_bytes(&r.raw),
        }
    }
}

/// Bytes as text: UTF-8 as is, `\` doubled, every other byte `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedList {
    pub rejected: Vec<RejectedRowView>,
    pub next_cursor: Option<String>,
}
