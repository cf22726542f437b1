//! The query parameters of each route, declared once: the parser validates against this table
//! and the OpenAPI document is generated from it, so the two cannot disagree.

use super::cursor::Cursor;
use super::error::ApiError;
use crate::domain::{After, MessageFilter, Order};
use crate::domain::{MessageKind, TextQuery, Timestamp};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
pub enum ParamKind {
    Text,
    Bool,
    Time,
    Integer { min: i64, max: i64 },
    Choice(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub repeatable: bool,
    pub description: &'static str,
}

const fn spec(
    name: &'static str,
    kind: ParamKind,
    repeatable: bool,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        repeatable,
        description,
    }
}

pub const MAX_LIMIT: i64 = 1000;
/// How often a repeatable parameter may be given.
pub const MAX_REPEATS: usize = 50;
/// The longest text parameter, in bytes.
pub const MAX_TEXT_BYTES: usize = 1000;
pub const DEFAULT_LIMIT: u32 = 100;

const USER: ParamSpec = spec(
    "user",
    ParamKind::Text,
    true,
    "Sender's participant id; repeat for any of several.",
);
const TYPE: ParamSpec = spec(
    "type",
    ParamKind::Text,
    true,
    "Message type: text, image, file (or TEXT_MESSAGE, IMAGE_MESSAGE, FILE_MESSAGE), or any other type the \
     archive holds, as messages serve it (e.g. CUSTOM_MESSAGE); repeat for any of several.",
);
const PINNED: ParamSpec = spec(
    "pinned",
    ParamKind::Bool,
    false,
    "Only pinned (true) or unpinned (false) messages.",
);
const EDITED: ParamSpec = spec(
    "edited",
    ParamKind::Bool,
    false,
    "Only edited (true) or unedited (false) messages.",
);
const PRIVATE: ParamSpec = spec(
    "private",
    ParamKind::Bool,
    false,
    "Only private messages (true: sent to some participants, with targetUserIds) or only messages to everyone (false).",
);
const CUSTOM_PARTICIPANT: ParamSpec = spec(
    "custom_participant",
    ParamKind::Text,
    false,
    "The app's own id for the sender (custom_participant_id, from the session's participants), across sessions.",
);
const SESSION: ParamSpec = spec("session", ParamKind::Text, false, "Session id.");
const MEETING: ParamSpec = spec("meeting", ParamKind::Text, false, "Meeting id.");
const SINCE: ParamSpec = spec(
    "since",
    ParamKind::Time,
    false,
    "Messages sent at or after this time: an RFC 3339 date-time (2026-06-03T10:00:00Z), a date (2026-06-03, \
     midnight UTC), or epoch seconds or milliseconds; years 0000 to 9999.",
);
const UNTIL: ParamSpec = spec(
    "until",
    ParamKind::Time,
    false,
    "Messages sent before this time, in the forms since takes; half-open with since.",
);
const Q: ParamSpec = spec(
    "q",
    ParamKind::Text,
    false,
    "Full-text search over message text, file names and display names: words are ANDed, \
     \"a phrase\" (\"\" for a quote inside), prefix*, AND, OR, NOT (a NOT b), NEAR(a b, N), column filters \
     text:, file_name:, display_name:, and parentheses. Equal terms fold; at most 32 terms, 4 prefix terms \
     and 8 levels of nesting; no control characters. A search that runs past the read budget is a 400 naming q.",
);
const LIMIT: ParamSpec = spec(
    "limit",
    ParamKind::Integer {
        min: 1,
        max: MAX_LIMIT,
    },
    false,
    "Page size, 1 to 1000 (default 100). Exports have no cap.",
);
const ORDER: ParamSpec = spec(
    "order",
    ParamKind::Choice(&["asc", "desc"]),
    false,
    "By time, then archive row id (default asc).",
);
const CURSOR: ParamSpec = spec(
    "cursor",
    ParamKind::Text,
    false,
    "next_cursor of the previous page, for the same query.",
);
const FORMAT: ParamSpec = spec(
    "format",
    ParamKind::Choice(&["json", "csv", "ndjson"]),
    false,
    "json (default; also by Accept), or a streamed export of the whole result: csv (also Accept: text/csv) or ndjson.",
);

pub const MESSAGE_PARAMS: &[ParamSpec] = &[
    USER,
    TYPE,
    PINNED,
    EDITED,
    PRIVATE,
    CUSTOM_PARTICIPANT,
    SESSION,
    MEETING,
    SINCE,
    UNTIL,
    Q,
    LIMIT,
    ORDER,
    CURSOR,
    FORMAT,
];
pub const SESSION_MESSAGE_PARAMS: &[ParamSpec] = &[
    USER,
    TYPE,
    PINNED,
    EDITED,
    PRIVATE,
    CUSTOM_PARTICIPANT,
    MEETING,
    SINCE,
    UNTIL,
    Q,
    LIMIT,
    ORDER,
    CURSOR,
    FORMAT,
];
pub const USER_MESSAGE_PARAMS: &[ParamSpec] = &[
    TYPE,
    PINNED,
    EDITED,
    PRIVATE,
    CUSTOM_PARTICIPANT,
    SESSION,
    MEETING,
    SINCE,
    UNTIL,
    Q,
    LIMIT,
    ORDER,
    CURSOR,
    FORMAT,
];
pub const STATS_PARAMS: &[ParamSpec] = &[
    USER,
    TYPE,
    PINNED,
    EDITED,
    PRIVATE,
    CUSTOM_PARTICIPANT,
    SESSION,
    MEETING,
    SINCE,
    UNTIL,
    Q,
];
pub const LIST_PARAMS: &[ParamSpec] = &[LIMIT, CURSOR];
const AUDIT_SINCE: ParamSpec = spec(
    "since",
    ParamKind::Time,
    false,
    "Entries recorded at or after this time, in the forms /v1/messages' since takes.",
);
const AUDIT_UNTIL: ParamSpec = spec(
    "until",
    ParamKind::Time,
    false,
    "Entries recorded before this time.",
);
const AUDIT_TOKEN: ParamSpec = spec(
    "token",
    ParamKind::Text,
    false,
    "Only the entries of the token of this name (never the token itself).",
);
pub const AUDIT_PARAMS: &[ParamSpec] = &[AUDIT_SINCE, AUDIT_UNTIL, AUDIT_TOKEN, LIMIT, CURSOR];
pub const USER_LIST_PARAMS: &[ParamSpec] = &[SESSION, LIMIT, CURSOR];

/// A parsed query string: every name known to `specs`, every value parsed once into its kind.
pub struct QueryParams {
    values: BTreeMap<&'static str, Vec<Value>>,
}

/// One parameter value, parsed by its [`ParamKind`].
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// Text and choices.
    Text(String),
    Bool(bool),
    /// Epoch milliseconds.
    Time(i64),
    Integer(i64),
}

impl QueryParams {
    pub fn parse(query: &str, specs: &[ParamSpec]) -> Result<Self, ApiError> {
        let mut values: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let Some(spec) = specs.iter().find(|s| s.name == name) else {
                let allowed: Vec<&str> = specs.iter().map(|s| s.name).collect();
                return Err(ApiError::invalid(
                    &name,
                    format!("unknown parameter; allowed: {}", allowed.join(", ")),
                ));
            };
            let entry = values.entry(spec.name).or_default();
            if !spec.repeatable && !entry.is_empty() {
                return Err(ApiError::invalid(spec.name, "may be given only once"));
            }
            if entry.len() >= MAX_REPEATS {
                return Err(ApiError::invalid(
                    spec.name,
                    format!("may be given at most {MAX_REPEATS} times"),
                ));
            }
            entry.push(parse_value(spec, value.into_owned())?);
        }
        Ok(Self { values })
    }

    fn first(&self, name: &str) -> Option<&Value> {
        self.values.get(name).and_then(|v| v.first())
    }

    /// Every text value of a repeatable parameter, sorted and without repeats.
    pub fn all(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .values
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        match self.first(name)? {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }

    fn bool(&self, name: &str) -> Option<bool> {
        match self.first(name)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn time(&self, name: &str) -> Option<i64> {
        match self.first(name)? {
            Value::Time(ms) => Some(*ms),
            _ => None,
        }
    }

    pub fn limit(&self) -> Option<u32> {
        match self.first("limit")? {
            Value::Integer(n) => u32::try_from(*n).ok(),
            _ => None,
        }
    }
}

fn parse_value(spec: &ParamSpec, value: String) -> Result<Value, ApiError> {
    let name = spec.name;
    match spec.kind {
        ParamKind::Text if value.is_empty() => Err(ApiError::invalid(name, "must not be empty")),
        ParamKind::Text if value.len() > MAX_TEXT_BYTES => Err(ApiError::invalid(
            name,
            format!("is longer than {MAX_TEXT_BYTES} bytes"),
        )),
        ParamKind::Text => Ok(Value::Text(value)),
        ParamKind::Bool => match value.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(ApiError::invalid(
                name,
                format!("'{value}' is not allowed; use true or false"),
            )),
        },
        ParamKind::Time => Timestamp::parse_date_or_time(&value)
            .map(|t| Value::Time(t.millis()))
            .map_err(|e| ApiError::invalid(name, e.to_string())),
        ParamKind::Integer { min, max } => match value.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Value::Integer(n)),
            _ => Err(ApiError::invalid(
                name,
                format!("'{value}' is not allowed; use an integer from {min} to {max}"),
            )),
        },
        ParamKind::Choice(choices) if choices.contains(&value.as_str()) => Ok(Value::Text(value)),
        ParamKind::Choice(choices) => Err(ApiError::invalid(
            name,
            format!(
                "'{value}' is not allowed; use one of {}",
                choices.join(", ")
            ),
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Ndjson,
}

/// A `/messages` request, validated: the filter, the page, and the output format.
#[derive(Debug, Clone)]
pub struct MessageQuery {
    pub filter: MessageFilter,
    pub order: Order,
    pub after: Option<After>,
    /// `None` only for exports without an explicit limit: the whole result.
    pub limit: Option<u32>,
    pub format: Format,
}

/// The scope a route imposes (`/sessions/{id}/messages`, `/users/{id}/messages`).
#[derive(Debug, Default, Clone)]
pub struct Scope {
    pub session: Option<String>,
    pub user: Option<String>,
    /// The reader's meetings, from its token (none: every meeting).
    pub visible: Option<Vec<String>>,
}

pub fn message_filter(params: &QueryParams, scope: &Scope) -> Result<MessageFilter, ApiError> {
    let filter = MessageFilter {
        users: scope
            .user
            .clone()
            .map(|u| vec![u])
            .unwrap_or_else(|| params.all("user")),
        kinds: {
            let mut kinds: Vec<String> = params
                .all("type")
                .iter()
                .map(|t| MessageKind::from_payload_type(t).as_str().to_owned())
                .collect();
            kinds.sort();
            kinds.dedup();
            kinds
        },
        pinned: params.bool("pinned"),
        edited: params.bool("edited"),
        private: params.bool("private"),
        custom_participant: params.one("custom_participant").map(str::to_owned),
        session: scope
            .session
            .clone()
            .or_else(|| params.one("session").map(str::to_owned)),
        meeting: params.one("meeting").map(str::to_owned),
        visible: scope.visible.clone(),
        since_ms: params.time("since"),
        until_ms: params.time("until"),
        text_query: params
            .one("q")
            .map(TextQuery::parse)
            .transpose()
            .map_err(|e| {
                ApiError::invalid(
                    "q",
                    format!("not a valid search, {e}; see the q syntax in /openapi.json"),
                )
            })?,
    };
    if let (Some(since), Some(until)) = (filter.since_ms, filter.until_ms) {
        if since > until {
            return Err(ApiError::invalid("since", "is after until"));
        }
    }
    Ok(filter)
}

impl MessageQuery {
    pub fn parse(
        query: &str,
        specs: &[ParamSpec],
        scope: &Scope,
        accept: Option<&str>,
    ) -> Result<Self, ApiError> {
        let params = QueryParams::parse(query, specs)?;
        let filter = message_filter(&params, scope)?;
        let order = if params.one("order") == Some("desc") {
            Order::Desc
        } else {
            Order::Asc
        };
        let format = match params.one("format") {
            Some("csv") => Format::Csv,
            Some("ndjson") => Format::Ndjson,
            Some(_) => Format::Json,
            None => match accept {
                Some(a) if a.contains("text/csv") => Format::Csv,
                Some(a) if a.contains("application/x-ndjson") => Format::Ndjson,
                _ => Format::Json,
            },
        };
        let after = match params.one("cursor") {
            Some(text) => Some(Cursor::for_messages(&filter, order).decode_after(text)?),
            None => None,
        };
        let limit = match (format, params.limit()) {
            (_, Some(limit)) => Some(limit),
            (Format::Json, None) => Some(DEFAULT_LIMIT),
            (_, None) => None,
        };
        Ok(Self {
            filter,
            order,
            after,
            limit,
            format,
        })
    }
}
