use super::{SessionId, Timestamp};

/// What a chat message carries, named as the chat SDK names it (`text`, `image`, `file`). Any
/// other `payloadType` in a dump is kept verbatim rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    Image,
    File,
    Other(String),
}

impl MessageKind {
    /// Maps the dump's `payloadType` (`TEXT_MESSAGE`, `IMAGE_MESSAGE`, `FILE_MESSAGE`).
    pub fn from_payload_type(raw: &str) -> Self {
        match raw.trim().to_ascii_uppercase().as_str() {
            "TEXT_MESSAGE" | "TEXT" => Self::Text,
            "IMAGE_MESSAGE" | "IMAGE" => Self::Image,
            "FILE_MESSAGE" | "FILE" => Self::File,
            _ => Self::Other(raw.trim().to_owned()),
        }
    }

    /// The stored and served name; parses back with [`MessageKind::from_stored`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::File => "file",
            Self::Other(raw) => raw,
        }
    }

    pub fn from_stored(raw: &str) -> Self {
        match raw {
            "text" => Self::Text,
            "image" => Self::Image,
            "file" => Self::File,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The typed fields of a `FILE_MESSAGE` payload, `{"link": "...", "name": "...", "size": 123}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilePayload {
    pub link: Option<String>,
    pub name: Option<String>,
    pub size: Option<i64>,
}

impl FilePayload {
    /// `None` when the payload is not a JSON object; the message then keeps only its raw payload.
    pub fn parse(payload: &str) -> Option<Self> {
        let value: serde_json::Value = super::json::from_str(payload).ok()?;
        let object = value.as_object()?;
        let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let size = object.get("size").and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        Some(Self {
            link: text("link"),
            name: text("name"),
            size,
        })
    }
}

/// One chat message from a session's dump, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub id: String,
    pub session_id: SessionId,
    pub meeting_id: String,
    pub user_id: String,
    pub display_name: String,
    pub pinned: bool,
    pub edited: bool,
    pub kind: MessageKind,
    /// An image's URL or a file's link.
    pub link: Option<String>,
    pub file_name: Option<String>,
    pub file_size: Option<i64>,
    pub payload: String,
    pub created: Timestamp,
    /// The dump's columns chatsink has no field for, as a JSON object of column name to text:
    /// the archive keeps every column it was given. `None` when the dump has no such column.
    pub extra: Option<String>,
    /// A private message's recipients (the dump's `targetUserIds`); `None`: not private.
    pub target_user_ids: Option<Vec<String>>,
}

/// The dump's `targetUserIds`: a JSON array (`["u-1","u-2"]`), or ids separated by commas,
/// semicolons or spaces. Empty: not a private message.
pub fn parse_target_user_ids(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    if raw.is_empty() || raw == "[]" || raw.eq_ignore_ascii_case("null") {
        return None;
    }
    if let Ok(serde_json::Value::Array(items)) = super::json::from_str::<serde_json::Value>(raw) {
        let ids: Vec<String> = items
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s.trim().to_owned()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect();
        return (!ids.is_empty()).then_some(ids);
    }
    let ids: Vec<String> = raw
        .trim_matches(['[', ']'])
        .split([',', ';', ' ', '\t', '\n', '\r'])
        .map(|s| s.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    (!ids.is_empty()).then_some(ids)
}

impl ChatMessage {
    /// The message's text: a text message's payload. Not a field of its own, because the archive
    /// stores it once, as the payload (schema.sql derives `text` the same way).
    pub fn text(&self) -> Option<&str> {
        matches!(self.kind, MessageKind::Text).then_some(self.payload.as_str())
    }

    /// The link, file name and file size that `kind` implies, from the raw payload.
    pub fn typed_fields(
        kind: &MessageKind,
        payload: &str,
    ) -> (Option<String>, Option<String>, Option<i64>) {
        match kind {
            MessageKind::Image => (Some(payload.to_owned()), None, None),
            MessageKind::File => match FilePayload::parse(payload) {
                Some(file) => (file.link, file.name, file.size),
                None => (None, None, None),
            },
            MessageKind::Text | MessageKind::Other(_) => (None, None, None),
        }
    }
}

/// The dump's booleans: `true/false` in any case, `1/0`, and empty meaning false.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim() {
        "" | "0" => Some(false),
        "1" => Some(true),
        s if s.eq_ignore_ascii_case("true") => Some(true),
        s if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_every_documented_form() {
        for (raw, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("false", false),
            ("FALSE", false),
            ("0", false),
            ("", false),
        ] {
            assert_eq!(parse_bool(raw), Some(want), "{raw}");
        }
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn file_payloads_parse_or_stay_raw() {
        let file =
            FilePayload::parse(r#"{"link":"https://x/y.pdf","name":"y.pdf","size":"12"}"#).unwrap();
        assert_eq!(
            file,
            FilePayload {
                link: Some("https://x/y.pdf".into()),
                name: Some("y.pdf".into()),
                size: Some(12)
            }
        );
        assert_eq!(FilePayload::parse("not json"), None);
        assert_eq!(
            ChatMessage::typed_fields(&MessageKind::File, "not json"),
            (None, None, None)
        );
    }

    #[test]
    fn target_user_ids_in_every_plausible_form() {
        let two = Some(vec!["u-1".to_owned(), "u-2".to_owned()]);
        for raw in [
            r#"["u-1","u-2"]"#,
            "u-1,u-2",
            "u-1; u-2",
            "[u-1, u-2]",
            r#" [ "u-1" , "u-2" ] "#,
        ] {
            assert_eq!(parse_target_user_ids(raw), two, "{raw}");
        }
        for raw in ["", "  ", "[]", "null", r#"[""]"#] {
            assert_eq!(parse_target_user_ids(raw), None, "{raw}");
        }
        assert_eq!(parse_target_user_ids("[7]"), Some(vec!["7".to_owned()]));
    }

    #[test]
    fn unknown_payload_types_are_kept_verbatim() {
        assert_eq!(
            MessageKind::from_payload_type("POLL_MESSAGE").as_str(),
            "POLL_MESSAGE"
        );
        assert_eq!(
            MessageKind::from_payload_type("IMAGE_MESSAGE"),
            MessageKind::Image
        );
    }
}
