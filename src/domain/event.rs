use super::{SessionId, Timestamp};
use serde_json::Value;

pub const CHAT_SYNCED: &str = "meeting.chatSynced";

/// A verified delivery's JSON, reduced to what chatsink acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub name: String,
    /// The session the event is about, when it names one (top level or under `meeting`).
    pub session_id: Option<String>,
    pub chat_synced: Option<ChatSynced>,
}

/// The `meeting.chatSynced` payload as RealtimeKit sends it: all fields at the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatSynced {
    pub session_id: SessionId,
    pub meeting_id: Option<String>,
    pub title: Option<String>,
    pub chat_download_url: String,
    pub chat_download_url_expiry: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub organizer_id: Option<String>,
    pub organizer_name: Option<String>,
}

/// Why a body is not an event chatsink can accept; `field` names the culprit for the 400 body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct EventError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> EventError {
    EventError {
        field,
        message: message.into(),
    }
}

/// Parses a delivery body. Only what chatsink needs is required; optional fields that do not
/// parse are dropped rather than rejected, because a 4xx is never retried by the sender and
/// would lose the chat for a cosmetic field.
pub fn parse_event(body: &[u8]) -> Result<WebhookEvent, EventError> {
    let value: Value =
        super::json::from_slice(body).map_err(|e| bad("body", format!("not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("body", "must be a JSON object"))?;
    let name = match object.get("event") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        Some(_) => return Err(bad("event", "must be a non-empty string")),
        None => return Err(bad("event", "is required")),
    };
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    let time = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .and_then(|s| Timestamp::parse(s).ok())
    };
    let nested_session = object
        .get("meeting")
        .and_then(|m| m.get("sessionId").or_else(|| m.get("session_id")))
        .and_then(Value::as_str)
        .map(str::to_owned);

    if name != CHAT_SYNCED {
        return Ok(WebhookEvent {
            name,
            session_id: text("sessionId").or(nested_session),
            chat_synced: None,
        });
    }

    let session_id = match object.get("sessionId") {
        Some(Value::String(s)) => {
            SessionId::parse(s).map_err(|e| bad("sessionId", e.to_string()))?
        }
        Some(_) => return Err(bad("sessionId", "must be a string")),
        None => return Err(bad("sessionId", "is required for meeting.chatSynced")),
    };
    let chat_download_url = match object.get("chatDownloadUrl") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            let url = s.trim();
            url::Url::parse(url)
                .map_err(|e| bad("chatDownloadUrl", format!("not a valid URL: {e}")))?;
            url.to_owned()
        }
        Some(_) => return Err(bad("chatDownloadUrl", "must be a non-empty string")),
        None => return Err(bad("chatDownloadUrl", "is required for meeting.chatSynced")),
    };
    let organizer = object.get("organizedBy");
    let organizer_field = |key: &str| {
        organizer
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let chat_synced = ChatSynced {
        session_id: session_id.clone(),
        meeting_id: text("meetingId"),
        title: text("title"),
        chat_download_url,
        chat_download_url_expiry: time("chatDownloadUrlExpiry"),
        created_at: time("createdAt"),
        started_at: time("startedAt"),
        ended_at: time("endedAt"),
        organizer_id: organizer_field("id"),
        organizer_name: organizer_field("name"),
    };
    Ok(WebhookEvent {
        name,
        session_id: Some(session_id.to_string()),
        chat_synced: Some(chat_synced),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_current_payload() {
        let body = br#"{"event":"meeting.chatSynced","sessionId":"s-1","meetingId":"m-1","title":"Weekly",
            "chatDownloadUrl":"https://b.s3.amazonaws.com/x.csv","chatDownloadUrlExpiry":"2026-06-10T10:30:00.000Z",
            "organizedBy":{"id":"o-1","name":"Org"}}"#;
        let event = parse_event(body).unwrap();
        let chat = event.chat_synced.unwrap();
        assert_eq!(chat.session_id.as_str(), "s-1");
        assert_eq!(chat.organizer_name.as_deref(), Some("Org"));
        assert_eq!(
            chat.chat_download_url_expiry.unwrap().to_rfc3339(),
            "2026-06-10T10:30:00.000Z"
        );
    }

    #[test]
    fn parses_the_legacy_dyte_expiry() {
        let body = br#"{"event":"meeting.chatSynced","sessionId":"s","chatDownloadUrl":"https://x/y","chatDownloadUrlExpiry":"2022-12-13 07:08:39.051621Z"}"#;
        let chat = parse_event(body).unwrap().chat_synced.unwrap();
        assert_eq!(
            chat.chat_download_url_expiry.unwrap().to_rfc3339(),
            "2022-12-13T07:08:39.051Z"
        );
    }

    #[test]
    fn names_the_missing_field() {
        assert_eq!(parse_event(b"nope").unwrap_err().field, "body");
        assert_eq!(parse_event(b"[]").unwrap_err().field, "body");
        assert_eq!(parse_event(b"{}").unwrap_err().field, "event");
        assert_eq!(
            parse_event(br#"{"event":"meeting.chatSynced","chatDownloadUrl":"https://x"}"#)
                .unwrap_err()
                .field,
            "sessionId"
        );
        assert_eq!(
            parse_event(br#"{"event":"meeting.chatSynced","sessionId":"s"}"#)
                .unwrap_err()
                .field,
            "chatDownloadUrl"
        );
    }

    #[test]
    fn a_lone_surrogate_escape_is_accepted_as_u_fffd() {
        for escape in [r"\ud83d", r"\udc00"] {
            let body = format!(
                r#"{{"event":"meeting.chatSynced","sessionId":"s","chatDownloadUrl":"https://x/y","title":"Weekly {escape} sync"}}"#
            );
            let chat = parse_event(body.as_bytes()).unwrap().chat_synced.unwrap();
            assert_eq!(chat.title.as_deref(), Some("Weekly \u{FFFD} sync"));
        }
    }

    #[test]
    fn other_events_find_their_nested_session() {
        let event =
            parse_event(br#"{"event":"meeting.ended","meeting":{"sessionId":"s-9"}}"#).unwrap();
        assert_eq!(event.session_id.as_deref(), Some("s-9"));
        assert!(event.chat_synced.is_none());
    }
}
