//! Who may read what, what was erased, and what was asked: the values of tokens, erasure,
//! retention and the audit log (the work itself is in `crate::governance`).

use super::timestamp::now_ms;
use super::{ChatMessage, LoadRow};
use std::collections::HashSet;

/// Who is asking, as the API's token check found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    /// The token's name (never the token): what the audit log records.
    pub name: String,
    /// May delete and read the audit log.
    pub admin: bool,
    /// The meetings it may see; none: every meeting.
    pub meetings: Option<Vec<String>>,
}

/// The names the audit log gives chatsink's own actions; no token may take one (nor any name
/// beginning `chatsink `), so an entry under one of them was made by chatsink.
pub const CLI_ERASE_ACTOR: &str = "chatsink erase";
pub const CLI_PURGE_ACTOR: &str = "chatsink purge";
pub const CLI_ERASURES_APPLY_ACTOR: &str = "chatsink erasures apply";
pub const RETENTION_ACTOR: &str = "retention sweep";

/// Why a token name is one the audit log keeps for others, if it is.
pub fn reserved_token_name(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_lowercase();
    if lower.starts_with("chatsink_") || name.trim() == "-" {
        Some("the audit log's name for tokens from the environment, or for none")
    } else if lower.starts_with("chatsink ") || lower == RETENTION_ACTOR {
        Some("the audit log's name for one of chatsink's own actions")
    } else {
        None
    }
}

/// A token as `chatsink token list` shows it (the secret is never kept, so never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub name: String,
    pub admin: bool,
    pub meetings: Option<Vec<String>>,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub last_used_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// Why the stored scope could not be read, if it could not: such a token is refused, never
    /// taken for one that reads every meeting.
    pub unreadable_scope: Option<String>,
}

impl TokenRecord {
    /// Whether the token may be used at `now`.
    pub fn usable_at(&self, now: i64) -> bool {
        self.unreadable_scope.is_none()
            && self.revoked_ms.is_none()
            && self.expires_ms.is_none_or(|expiry| now < expiry)
    }

    pub fn reader(&self) -> Reader {
        Reader {
            name: self.name.clone(),
            admin: self.admin,
            meetings: self.meetings.clone(),
        }
    }
}

/// A token's scope as SQLite keeps it (a JSON array of meeting ids; NULL: every meeting). Text
/// that is not such an array, or an array holding an empty id, is an error: the caller refuses
/// the token rather than widen it.
pub fn decode_token_scope(raw: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let meetings: Vec<String> = serde_json::from_str(raw)
        .map_err(|e| format!("the scope {raw:?} is not a JSON array of meeting ids: {e}"))?;
    if meetings.iter().any(|m| m.trim().is_empty()) {
        return Err(format!("the scope {raw:?} holds an empty meeting id"));
    }
    Ok(Some(meetings))
}

/// What an erasure removes: everything chatsink keeps of a participant, one message (by its
/// id, in whichever session holds it) or a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EraseTarget {
    User(String),
    Message(String),
    Session(String),
}

impl EraseTarget {
    /// The erasure list's kind for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Message(_) => "message",
            Self::Session(_) => "session",
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::User(id) | Self::Message(id) | Self::Session(id) => id,
        }
    }
}

impl EraseTarget {
    /// A stored erasure's kind and id as a target; a kind chatsink does not know is an error,
    /// never taken for another.
    pub fn from_stored(kind: &str, id: String) -> Result<Self, String> {
        match kind {
            "user" => Ok(Self::User(id)),
            "message" => Ok(Self::Message(id)),
            "session" => Ok(Self::Session(id)),
            other => Err(format!(
                "an erasure of kind {other:?} (known: user, message, session)"
            )),
        }
    }
}

/// One entry of the erasure list, as `chatsink erasures export` writes it (one JSON object a
/// line) and `chatsink erasures apply` reads it back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErasureRecord {
    pub kind: String,
    pub id: String,
    /// `erased`, or `retention: ...` for a session retention purged.
    pub reason: String,
    /// When it was first erased, epoch milliseconds.
    pub at_ms: i64,
}

impl ErasureRecord {
    pub fn target(&self) -> Result<EraseTarget, String> {
        if self.id.is_empty() {
            return Err("an erasure without an id".into());
        }
        EraseTarget::from_stored(&self.kind, self.id.clone())
    }
}

/// What an erasure (or a purge) removed. Repeating it removes nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erased {
    pub messages: i64,
    pub rejected_rows: i64,
    pub sessions: i64,
    /// Webhook deliveries (their bodies) removed with their sessions.
    pub deliveries: i64,
    /// Kept dumps deleted because they held the erased rows.
    pub dumps: i64,
}

impl Erased {
    pub fn add(&mut self, other: &Erased) {
        self.messages += other.messages;
        self.rejected_rows += other.rejected_rows;
        self.sessions += other.sessions;
        self.deliveries += other.deliveries;
        self.dumps += other.dumps;
    }

    /// Rows removed in all, for the audit log.
    pub fn rows(&self) -> i64 {
        self.messages + self.rejected_rows + self.sessions + self.deliveries
    }
}

/// How far below the rows an erasure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scrub {
    /// The rows go, and with them all a query, export or load can find: retention's purge.
    Rows,
    /// The bytes below them too, so no file of the database still holds them: an erasure asked
    /// for by id. On SQLite the step rewrites the full-text entries out of their segments
    /// (FTS5's `secure-delete`) and zeroes the pages it frees (`secure_delete = ON`), and the
    /// WAL is checkpointed and truncated after the last step.
    Bytes,
}

/// One step of an erasure: what it removed, the dumps it moved to the trash, and whether more
/// remains (each step is one short transaction, so the writer is never held for long).
#[derive(Debug, Clone, Default)]
pub struct EraseStep {
    pub removed: Erased,
    pub more: bool,
    /// How long the step's transaction ran: from holding the writer (SQLite) or from its
    /// `BEGIN` (PostgreSQL) to the end of its commit. Waiting for the lock is not in it.
    pub held: std::time::Duration,
}

/// The erased users and messages every load leaves out. (An erased session is looked up by its
/// id instead: retention leaves a tombstone per purged session, and those may be many.)
#[derive(Debug, Clone, Default)]
pub struct ErasureList {
    pub users: HashSet<String>,
    pub messages: HashSet<String>,
}

impl ErasureList {
    /// Whether a dump row may be stored: a message neither by an erased user nor itself
    /// erased; a rejected row whose bytes name neither (they are kept raw, so any mention of
    /// an erased id leaves it out).
    pub fn keeps(&self, row: &LoadRow) -> bool {
        match row {
            LoadRow::Message(m) => {
                !self.users.contains(&m.user_id) && !self.messages.contains(&m.id)
            }
            LoadRow::Rejected(r) => !self
                .users
                .iter()
                .chain(&self.messages)
                .any(|id| names_as_field(&r.raw, id)),
        }
    }
}

/// The ids of one session's dump whose last appearance so far is a row that may not be stored.
/// A dump's last row of an id is the message; when that row is an erased user's, the message is
/// not stored at all, whatever an earlier row of the same id (another sender's) said.
#[derive(Debug, Default)]
pub struct ErasedLast(HashSet<String>);

impl ErasedLast {
    /// Notes a message row of the session being loaded, and whether it is kept.
    pub fn note(&mut self, id: &str, kept: bool) {
        if kept {
            self.0.remove(id);
        } else {
            self.0.insert(id.to_owned());
        }
    }

    /// Whether a message row of the load ends erased: what it stored for `id` must go.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ErasureList {
    /// Whether a session participant is an erased user (by their peer id or user id).
    pub fn names_participant(&self, participant: &super::Participant) -> bool {
        self.users.contains(&participant.participant_id)
            || participant
                .user_id
                .as_ref()
                .is_some_and(|id| self.users.contains(id))
    }

    /// Takes erased users' ids out of what a kept message says of others: its recipients
    /// (`targetUserIds`) and its extra columns. The message itself stays (its sender was not
    /// erased).
    /// Whether anything was taken out.
    pub fn scrub(&self, message: &mut ChatMessage) -> bool {
        if message.target_user_ids.is_none() && message.extra.is_none() {
            return false;
        }
        let mut changed = false;
        for id in &self.users {
            changed |= scrub_user(message, id);
        }
        changed
    }
}

/// Takes `id` out of `message`'s recipients and extra columns; whether anything changed.
pub fn scrub_user(message: &mut ChatMessage, id: &str) -> bool {
    let (targets, extra) = scrub_user_fields(
        message.target_user_ids.as_deref(),
        message.extra.as_deref(),
        id,
    );
    let changed = targets.is_some() || extra.is_some();
    if let Some(targets) = targets {
        message.target_user_ids = Some(targets);
    }
    if let Some(extra) = extra {
        message.extra = Some(extra);
    }
    changed
}

/// `id` taken out of a message's recipients and extra columns (a JSON object of column name to
/// text): the new value of each that held it, `None` for each that did not. A private
/// message whose only recipient goes stays private, with no recipient left.
pub fn scrub_user_fields(
    targets: Option<&[String]>,
    extra: Option<&str>,
    id: &str,
) -> (Option<Vec<String>>, Option<String>) {
    let targets = targets
        .filter(|t| t.iter().any(|t| t == id))
        .map(|t| t.iter().filter(|t| *t != id).cloned().collect());
    let extra = extra.filter(|e| names_as_field(e.as_bytes(), id)).map(|e| {
        match super::json::from_str::<serde_json::Map<String, serde_json::Value>>(e) {
            Ok(mut columns) => {
                for value in columns.values_mut() {
                    if let serde_json::Value::String(text) = value {
                        *text = remove_field(text, id);
                    }
                }
                serde_json::Value::Object(columns).to_string()
            }
            Err(_) => remove_field(e, id),
        }
    });
    (targets, extra)
}

/// `text` with every occurrence of `id` as a field of its own (see [`names_as_field`]) removed.
fn remove_field(text: &str, id: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for at in memchr::memmem::find_iter(bytes, id.as_bytes()) {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + id.len()).copied();
        if at >= copied
            && before.is_none_or(is_field_delimiter)
            && after.is_none_or(is_field_delimiter)
        {
            out.push_str(&text[copied..at]);
            copied = at + id.len();
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_field_delimiter(b: u8) -> bool {
    matches!(b, b',' | b'"' | b'[' | b']' | b';') || b.is_ascii_whitespace()
}

/// Whether a rejected row's raw bytes hold `id` as a field of their own: between the CSV's or a
/// JSON list's delimiters (`,` `"` `[` `]` `;`, whitespace, the row's ends), not inside a longer
/// id. Erasing `u-1` so leaves `u-10`'s, `xu-1`'s and `u-1b`'s rows alone, while a row whose
/// quoting is broken (the reason it was rejected) still gives its fields up.
pub fn names_as_field(raw: &[u8], id: &str) -> bool {
    let id = id.as_bytes();
    if id.is_empty() {
        return false;
    }
    memchr::memmem::find_iter(raw, id).any(|at| {
        let before = at.checked_sub(1).map(|i| raw[i]);
        let after = raw.get(at + id.len()).copied();
        before.is_none_or(is_field_delimiter) && after.is_none_or(is_field_delimiter)
    })
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    /// The token's name; `-` when none was presented or it was not accepted.
    pub token: String,
    pub method: String,
    pub route: String,
    /// The request's query string, or what a deletion named.
    pub filters: String,
    /// Rows returned (a page, a list, an export as far as it went) or removed (a deletion);
    /// none for an error.
    pub rows: Option<i64>,
    pub status: u16,
}

impl AuditEntry {
    /// An entry for now (its id is given by the store).
    pub fn now(
        token: &str,
        method: &str,
        route: &str,
        filters: &str,
        rows: Option<i64>,
        status: u16,
    ) -> Self {
        Self {
            id: 0,
            at_ms: now_ms(),
            token: token.to_owned(),
            method: method.to_owned(),
            route: route.to_owned(),
            filters: filters.to_owned(),
            rows,
            status,
        }
    }
}

/// Which audit entries to read: newest first, keyset before `before` (an entry id).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub token: Option<String>,
    pub before: Option<i64>,
    pub limit: u32,
}

/// The units of every duration chatsink reads, with their length in milliseconds. A month is
/// 30 days and a year 365, as retention means them.
const AGE_UNITS: [(&[&str], i64); 7] = [
    (&["s", "sec", "secs", "second", "seconds"], 1_000),
    (&["min", "mins", "minute", "minutes"], 60_000),
    (&["h", "hour", "hours"], 3_600_000),
    (&["d", "day", "days"], 86_400_000),
    (&["w", "week", "weeks"], 7 * 86_400_000),
    (&["month", "months"], 30 * 86_400_000),
    (&["y", "year", "years"], 365 * 86_400_000),
];

/// Parses an age such as `90d`, `6months`, `2w`, `12h`, `30min` or `45s` into milliseconds: the
/// one grammar of every duration chatsink reads (`--older-than`, `--expires`, retention). A
/// bare number is refused (days or seconds would both be a guess), and so is `m` (minutes or
/// months: the two readings differ by a factor of 43,200, and one of them deletes an archive).
pub fn parse_age(raw: &str) -> Result<i64, String> {
    const EXAMPLE: &str = "as in 90d, 6months, 2w, 12h, 30min or 45s";
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{raw}' needs a unit ({EXAMPLE})"))?;
    let (number, unit) = raw.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{raw}' is not a whole number with a unit ({EXAMPLE})"))?;
    let unit = unit.trim();
    if unit == "m" || unit == "M" {
        return Err(format!(
            "'{raw}' is ambiguous: write {n}min for {n} minutes or {n}months for {n} months"
        ));
    }
    let lower = unit.to_ascii_lowercase();
    let unit_ms = AGE_UNITS
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map(|(_, ms)| *ms)
        .ok_or_else(|| format!("'{raw}' has an unknown unit '{unit}' ({EXAMPLE})"))?;
    if n == 0 {
        return Err(format!("'{raw}' is no time at all ({EXAMPLE})"));
    }
    n.checked_mul(unit_ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| format!("'{raw}' is more than a hundred years"))
}

#[cfg(test)]
mod tests {
    use super::{names_as_field, parse_age, ErasureList};
    use crate::domain::{ChatMessage, LoadRow, MessageKind, RejectedRow, SessionId, Timestamp};

    fn message(id: &str, user: &str) -> LoadRow {
        LoadRow::Message(ChatMessage {
            id: id.into(),
            user_id: user.into(),
            session_id: SessionId::parse("s").unwrap(),
            meeting_id: "m".into(),
            display_name: "Name".into(),
            kind: MessageKind::from_payload_type("TEXT_MESSAGE"),
            pinned: false,
            edited: false,
            payload: "hi".into(),
            link: None,
            file_name: None,
            file_size: None,
            created: Timestamp::from_millis(0),
            extra: None,
            target_user_ids: None,
        })
    }

    #[test]
    fn the_erasure_list_leaves_out_erased_users_messages_and_rows_that_name_them() {
        let mut list = ErasureList::default();
        list.users.insert("u-gone".into());
        list.messages.insert("m-gone".into());
        assert!(list.keeps(&message("m-1", "u-stay")));
        assert!(!list.keeps(&message("m-1", "u-gone")));
        assert!(!list.keeps(&message("m-gone", "u-stay")));
        let rejected = |raw: &[u8]| {
            LoadRow::Rejected(RejectedRow {
                session_id: None,
                line: 2,
                reason: "bad".into(),
                raw: raw.to_vec(),
            })
        };
        assert!(list.keeps(&rejected(b"x,u-stay,s")));
        assert!(!list.keeps(&rejected(b"x,u-gone,s")));
        assert!(!list.keeps(&rejected(b"m-gone,u-stay,\xff")));
        // A longer id that begins with an erased one is not it.
        assert!(list.keeps(&rejected(b"x,u-gone2,s")));
        assert!(list.keeps(&rejected(b"m-gone-too,u-stay,s")));
    }

    #[test]
    fn a_rejected_row_names_an_id_only_as_a_field_of_its_own() {
        let ids = ["u-1", "u-10", "xu-1", "u-1b", "1"];
        let row = |sender: &str| format!("m-9,{sender},s-1,mt,Name,perhaps,0,TEXT_MESSAGE,hi,2026");
        for id in ids {
            for other in ids {
                assert_eq!(
                    names_as_field(row(other).as_bytes(), id),
                    id == other,
                    "erasing {id:?} in a row by {other:?}"
                );
            }
        }
        // Quoted, at either end, in a JSON list (targetUserIds), in a row whose quote is broken.
        assert!(names_as_field(b"\"u-1\",x", "u-1"));
        assert!(names_as_field(b"x,u-1", "u-1"));
        assert!(names_as_field(b"u-1\r\n", "u-1"));
        assert!(names_as_field(br#"a,"[""u-2"",""u-1""]",b"#, "u-1"));
        assert!(names_as_field(b"a,\"u-1,unclosed", "u-1"));
        assert!(!names_as_field(br#"a,"[""u-10""]",b"#, "u-1"));
        assert!(!names_as_field(b"anything", ""));
    }

    #[test]
    fn an_erased_user_leaves_recipient_lists_and_extra_columns_but_longer_ids_stay() {
        let targets = vec!["u-1".to_owned(), "u-10".to_owned()];
        let extra = r#"{"mentions":"u-1, u-10","note":"xu-1 and u-1"}"#;
        let (t, e) = super::scrub_user_fields(Some(&targets), Some(extra), "u-1");
        assert_eq!(t, Some(vec!["u-10".to_owned()]));
        let e: serde_json::Value = serde_json::from_str(&e.unwrap()).unwrap();
        assert_eq!(e["mentions"], ", u-10");
        assert_eq!(e["note"], "xu-1 and ");
        assert_eq!(
            super::scrub_user_fields(Some(&targets), Some(extra), "u-2"),
            (None, None)
        );
    }

    #[test]
    fn ages_parse_with_their_unit_and_nonsense_is_refused() {
        assert_eq!(parse_age("90d"), Ok(90 * 86_400_000));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600_000));
        assert_eq!(parse_age("30min"), Ok(30 * 60_000));
        assert_eq!(parse_age(" 45s "), Ok(45_000));
        assert_eq!(parse_age("2w"), Ok(14 * 86_400_000));
        assert_eq!(parse_age("6months"), Ok(180 * 86_400_000));
        assert_eq!(parse_age("1 month"), Ok(30 * 86_400_000));
        assert_eq!(parse_age("1y"), Ok(365 * 86_400_000));
        assert_eq!(parse_age("3 Days"), Ok(3 * 86_400_000));
        for bad in [
            "",
            "90",
            "d",
            "-3d",
            "0d",
            "1.5d",
            "99999999999999d",
            "3fortnights",
        ] {
            assert!(parse_age(bad).is_err(), "{bad:?} was accepted");
        }
        // `m` could be minutes or months: refused, naming both.
        for ambiguous in ["6m", "6M", "6 m"] {
            let said = parse_age(ambiguous).unwrap_err();
            assert!(said.contains("6min") && said.contains("6months"), "{said}");
        }
    }
}
