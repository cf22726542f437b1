//! A verified webhook delivery on its way into the inbox, and what storing it did.

use super::{ChatSynced, Timestamp};

/// A verified delivery, ready to store.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: Option<String>,
    pub body_sha256: String,
    pub scheme: &'static str,
    pub event: String,
    pub session_id: Option<String>,
    pub body: Vec<u8>,
    pub received: Timestamp,
    pub chat_synced: Option<ChatSynced>,
    /// `rtk-webhook-id`: the webhook configuration that sent it (not a secret).
    pub webhook_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeOutcome {
    /// Newly stored; `job_id` is set when the event enqueued an ingest job.
    Stored { inbox_id: i64, job_id: Option<i64> },
    /// The same delivery id or the same body was stored before: nothing was created.
    Duplicate,
}

/// A stored delivery, as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub inbox_id: i64,
    pub delivery_id: Option<String>,
    /// How its signature was verified: `rtk-rsa`, `dyte-rsa`, `hmac` or `insecure`.
    pub scheme: String,
    pub event: String,
    pub session_id: Option<String>,
    pub received_ms: i64,
    /// The body exactly as it arrived, and its SHA-256 (hex).
    pub body: Vec<u8>,
    pub body_sha256: String,
    /// `rtk-webhook-id`: the webhook configuration that sent it.
    pub webhook_id: Option<String>,
}
