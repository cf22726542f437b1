//! What an analyst asks for: the filters of the message routes and where a keyset page starts.
//! Validated at the API edge; every backend answers the same filter with the same rows.

use super::TextQuery;

/// The filters of `/v1/messages`, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageFilter {
    pub users: Vec<String>,
    /// Stored kinds: `text`, `image`, `file`.
    pub kinds: Vec<String>,
    pub pinned: Option<bool>,
    pub edited: Option<bool>,
    /// Only private messages (true: with `targetUserIds`) or only public ones (false).
    pub private: Option<bool>,
    /// Senders the app knows by this id (`custom_participant_id`), in any session.
    pub custom_participant: Option<String>,
    pub session: Option<String>,
    pub meeting: Option<String>,
    /// Half-open: `since <= created_ms < until`.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// A full-text query over text, file names and display names.
    pub text_query: Option<TextQuery>,
    /// The meetings the reader's token may see (none: every meeting). Not a parameter: set from
    /// the token, so it is part of every cursor the filter issues.
    pub visible: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Asc,
    Desc,
}

/// Where a keyset page starts: strictly after this (created_ms, seq) in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub created_ms: i64,
    pub seq: i64,
}
