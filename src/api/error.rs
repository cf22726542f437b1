//! Query API errors and their one mapping to HTTP. Any query string gets a 4xx naming the
//! parameter at fault, never a 500; a 500 means the database itself failed.

use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{parameter}: {message}")]
    InvalidParameter { parameter: String, message: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("this route needs an admin token")]
    Forbidden,
    #[error("the archive could not be read")]
    Storage(#[from] StoreError),
    /// A read ran past the read budget; `searched` when the filter had a `q`, which is then
    /// what to change.
    #[error("the query ran past the read budget of {budget_ms} ms")]
    TooExpensive { searched: bool, budget_ms: u128 },
    #[error("too many full-text searches are running; retry shortly")]
    Busy,
    #[error("this route answers {allow} only")]
    MethodNotAllowed { allow: String },
}

impl ApiError {
    pub fn invalid(parameter: &str, message: impl Into<String>) -> Self {
        Self::InvalidParameter {
            parameter: parameter.to_owned(),
            message: message.into(),
        }
    }
}

impl ApiError {
    /// A store error of a read: past the budget is [`ApiError::TooExpensive`].
    pub fn from_read(e: StoreError, searched: bool) -> Self {
        match e {
            StoreError::ReadBudget(budget) => Self::TooExpensive {
                searched,
                budget_ms: budget.as_millis(),
            },
            other => Self::Storage(other),
        }
    }

    /// [`ApiError::from_read`] for a read without a `q`.
    pub fn from_light_read(e: StoreError) -> Self {
        Self::from_read(e, false)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Storage(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TooExpensive { searched: true, .. } => StatusCode::BAD_REQUEST,
            Self::TooExpensive {
                searched: false, ..
            }
            | Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            Self::InvalidParameter { parameter, message } => {
                serde_json::json!({"error": "invalid_parameter", "parameter": parameter, "message": message})
            }
            Self::NotFound { .. } => {
                serde_json::json!({"error": "not_found", "message": self.to_string()})
            }
            Self::Unauthorized => {
                serde_json::json!({"error": "unauthorized", "message": self.to_string()})
            }
            Self::Forbidden => {
                serde_json::json!({"error": "forbidden", "message": self.to_string()})
            }
            Self::Storage(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "query failed: storage unavailable");
                serde_json::json!({"error": "storage_unavailable", "message": "the database is unavailable; retry later"})
            }
            Self::Storage(e) => {
                tracing::error!(error = %e, "query failed");
                serde_json::json!({"error": "internal", "message": self.to_string()})
            }
            Self::TooExpensive { searched: true, .. } => serde_json::json!({
                "error": "query_too_expensive", "parameter": "q",
                "message": format!("{self}; use rarer words, fewer prefix terms or narrower filters (user, session, since/until)")
            }),
            Self::TooExpensive {
                searched: false, ..
            } => {
                tracing::warn!(error = %self, "read past its budget");
                serde_json::json!({"error": "query_too_expensive", "message": format!("{self}; retry later or narrow the filters")})
            }
            Self::Busy => serde_json::json!({"error": "busy", "message": self.to_string()}),
            Self::MethodNotAllowed { .. } => {
                serde_json::json!({"error": "method_not_allowed", "message": self.to_string()})
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header(("Allow", allow.as_str()));
        }
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "2"));
        }
        response.json(body)
    }
}
