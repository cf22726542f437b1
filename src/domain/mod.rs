//! Typed values that the rest of chatsink works with. Raw strings from the wire become these at
//! the edge (parse, don't validate), so deeper stages cannot receive malformed data.

mod delivery;
mod event;
mod governance;
mod host_pattern;
mod ids;
mod job;
pub mod json;
mod listing;
mod message;
mod query;
mod records;
mod rows;
mod rsa_key;
mod search;
pub mod timestamp;

pub use delivery::{DeliveryRecord, IntakeOutcome, NewDelivery};
pub use event::{parse_event, ChatSynced, EventError, WebhookEvent, CHAT_SYNCED};
pub use governance::{
    decode_token_scope, names_as_field, parse_age, reserved_token_name, scrub_user,
    scrub_user_fields, AuditEntry, AuditQuery, EraseStep, EraseTarget, Erased, ErasedLast,
    ErasureList, ErasureRecord, Reader, Scrub, TokenRecord, CLI_ERASE_ACTOR,
    CLI_ERASURES_APPLY_ACTOR, CLI_PURGE_ACTOR, RETENTION_ACTOR,
};
pub use host_pattern::{HostPattern, HostPatternError};
pub use ids::{SessionId, SessionIdError};
pub use job::{ClaimedJob, Job, JobKind, JobOutcome, JobState, ReprocessSelector, UnknownValue};
pub use listing::{ListedSession, ListingStatus, Participant, PullPlan, PullSkip};
pub use message::{parse_bool, parse_target_user_ids, ChatMessage, FilePayload, MessageKind};
pub use query::{After, MessageFilter, Order};
pub use records::{
    MessageRow, MessageStats, SessionDump, SessionRecord, StoredRejectedRow, UserRecord,
};
pub use rows::{LoadReport, LoadRow, RejectedRow, RowSource};
pub use rsa_key::{parse_rsa_public_key, RsaKeyError, RsaPublicKey};
pub use search::{Phrase, SearchColumn, SearchError, TextQuery};
pub use timestamp::{Timestamp, TimestampError};
