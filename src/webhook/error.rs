//! How receive failures map to HTTP: the sender retries 5xx and gives up on other 4xx, so a
//! 4xx is kept for requests that are truly bad and every storage problem is a 503.

use super::VerifyError;
use crate::domain::EventError;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading the body failed: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Signature(#[from] VerifyError),
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("the delivery could not be stored: {0}")]
    Storage(StoreError),
}

impl WebhookError {
    /// The machine-readable code of the JSON body (also the metrics' `result` label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "body_too_large",
            Self::BodyRead(_) => "bad_body",
            Self::Signature(VerifyError::Missing) => "missing_signature",
            Self::Signature(VerifyError::Rejected { .. }) => "invalid_signature",
            Self::Signature(VerifyError::KeyUnavailable(_)) => "key_unavailable",
            Self::Signature(VerifyError::KeyStale { .. }) => "key_stale",
            Self::Event(_) => "invalid_event",
            Self::Storage(_) => "storage_unavailable",
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::TooLarge { .. } | Self::BodyRead(_) => Some("body"),
            Self::Signature(
                VerifyError::Rejected { header, .. } | VerifyError::KeyStale { header, .. },
            ) => Some(header),
            Self::Event(e) => Some(e.field),
            _ => None,
        }
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyRead(_) | Self::Event(_) => StatusCode::BAD_REQUEST,
            Self::Signature(VerifyError::KeyUnavailable(_) | VerifyError::KeyStale { .. })
            | Self::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, field) = (self.code(), self.field());
        match self.status_code() {
            s if s.is_server_error() => {
                tracing::error!(error = %self, "delivery not accepted; sender will retry")
            }
            _ => tracing::warn!(error = %self, "delivery refused"),
        }
        let message = match self {
            // Storage internals are for the log, not for the sender.
            Self::Storage(_) => "the delivery could not be stored; retry later".to_owned(),
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = match self {
                Self::Signature(VerifyError::KeyStale { retry_after, .. }) => {
                    retry_after.as_secs_f64().ceil().max(1.0) as u64
                }
                _ => 5,
            };
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(serde_json::json!({"error": code, "field": field, "message": message}))
    }
}
