//! Typed values that the rest of chatsink works with. Raw strings from the wire become these at
//! the edge (parse, don't validate), so deeper stages cannot receive malformed data.

mod event;
mod ids;
pub mod json;
mod message;
mod search;
pub mod timestamp;

pub use event::{parse_event, ChatSynced, EventError, WebhookEvent, CHAT_SYNCED};
pub use ids::{SessionId, SessionIdError};
pub use message::{parse_bool, ChatMessage, FilePayload, MessageKind};
pub use search::{Phrase, SearchColumn, SearchError, TextQuery};
pub use timestamp::{Timestamp, TimestampError};
