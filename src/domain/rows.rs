//! What the dump parser yields and the loader consumes: parsed messages and the rows that could
//! not be parsed, kept with their exact bytes.

use super::{ChatMessage, SessionId};

/// A dump row that could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    /// The session the row claimed, when it could be read.
    pub session_id: Option<String>,
    /// 1-based line of the file where the row starts.
    pub line: u64,
    pub reason: String,
    pub raw: Vec<u8>,
}

impl RejectedRow {
    /// The reason a row naming `found` gets in the dump of `expected`: the one wording of the
    /// rule that a session's dump holds only that session's rows.
    pub fn other_session_reason(found: &str, expected: &SessionId) -> String {
        format!("row belongs to session {found}, not {expected}")
    }
}

/// What the dump parser yields, row by row.
// Nearly every row is a message: boxing it would cost an allocation per row for the rare
// rejected one's sake.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadRow {
    Message(ChatMessage),
    Rejected(RejectedRow),
}

impl LoadRow {
    /// The session the row names, when it names a readable one.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            Self::Message(m) => Some(m.session_id.clone()),
            Self::Rejected(r) => r
                .session_id
                .as_deref()
                .and_then(|s| SessionId::parse(s).ok()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub rows_loaded: i64,
    pub rows_rejected: i64,
    /// Messages stored for the session after the load.
    pub messages: i64,
    /// Rows left out because the erasure list names them (or their session), or stored with an
    /// erased user's id taken out of their recipients or extra columns: the dump holding them
    /// is not kept.
    pub rows_erased: i64,
}

/// Parsed rows on their way to a store, from a reader that may stop early (a cut download, a
/// read error). A store checks [`RowSource::failure`] after the last row and before it commits:
/// a load whose input ended early is discarded.
pub trait RowSource: Iterator<Item = LoadRow> + Send {
    /// Why the rows ended early, if they did.
    fn failure(&self) -> Option<String>;
}

/// Rows already in memory: they cannot end early.
impl RowSource for std::vec::IntoIter<LoadRow> {
    fn failure(&self) -> Option<String> {
        None
    }
}
