//! The Chat Replay API: a fresh download URL for a session whose link expired.
//! Cloudflare: `GET {base}/accounts/{account}/realtime/kit/{app}/sessions/{session}/chat` with a
//! bearer token; Dyte v2: `GET {base}/sessions/{session}/chat` with HTTP Basic.

use crate::config::{DownloadSettings, ReplayApiCredentials};
use crate::domain::{SessionId, Timestamp};
use secrecy::ExposeSecret;
use std::time::Duration;

/// Waits up to this long for a 429's `retry-after` before giving the attempt up to backoff.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_INLINE_RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ReplayApiError {
    #[error("Chat Replay API: session not found ({0})")]
    NotFound(String),
    #[error("Chat Replay API rejected the credentials (HTTP {0}); check CHATSINK_RTK_API_TOKEN / CHATSINK_DYTE_API_KEY")]
    Unauthorized(u16),
    #[error("Chat Replay API rate limit; retry after {0:?}")]
    RateLimited(Duration),
    #[error("Chat Replay API answered HTTP {0}")]
    Status(u16),
    #[error("Chat Replay API answer is not understood: {0}")]
    BadAnswer(String),
    #[error("Chat Replay API unreachable: {0}")]
    Network(String),
}

impl ReplayApiError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Unauthorized(_))
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(d) => Some(*d),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct FreshUrl {
    pub url: String,
    pub expiry: Option<Timestamp>,
}

#[derive(Clone)]
pub struct ReplayApi {
    client: reqwest::Client,
    credentials: ReplayApiCredentials,
}

impl ReplayApi {
    pub fn new(settings: &DownloadSettings) -> Option<Self> {
        let credentials = settings.replay_api.clone()?;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.read_timeout)
            .user_agent(concat!("chatsink/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Self {
            client,
            credentials,
        })
    }

    #[tracing::instrument(skip(self), fields(session_id = %session))]
    pub async fn fresh_download_url(
        &self,
        session: &SessionId,
    ) -> Result<FreshUrl, ReplayApiError> {
        let mut tries = 0;
        loop {
            match self.request_once(session).await {
                Err(ReplayApiError::RateLimited(wait))
                    if wait <= MAX_INLINE_RETRY_AFTER && tries < MAX_INLINE_RETRIES =>
                {
                    tries += 1;
                    tracing::warn!(
                        wait_ms = wait.as_millis() as u64,
                        "Chat Replay API rate limit; waiting as told"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn request_once(&self, session: &SessionId) -> Result<FreshUrl, ReplayApiError> {
        let session_segment: String =
            url::form_urlencoded::byte_serialize(session.as_str().as_bytes()).collect();
        let request = match &self.credentials {
            ReplayApiCredentials::Cloudflare { base, account_id, app_id, token } => self
                .client
                .get(format!("{base}/accounts/{account_id}/realtime/kit/{app_id}/sessions/{session_segment}/chat"))
                .bearer_auth(token.expose_secret()),
            ReplayApiCredentials::Dyte { base, org_id, api_key } => self
                .client
                .get(format!("{base}/sessions/{session_segment}/chat"))
                .basic_auth(org_id, Some(api_key.expose_secret())),
        };
        let response = request
            .send()
            .await
            .map_err(|e| ReplayApiError::Network(super::download::error_chain(&e.without_url())))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 => return Err(ReplayApiError::NotFound(session.to_string())),
            401 | 403 => return Err(ReplayApiError::Unauthorized(status)),
            429 => {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(10);
                return Err(ReplayApiError::RateLimited(Duration::from_secs(wait)));
            }
            _ => return Err(ReplayApiError::Status(status)),
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ReplayApiError::BadAnswer(super::download::error_chain(&e)))?;
        let body: serde_json::Value = crate::domain::json::from_slice(&bytes)
            .map_err(|e| ReplayApiError::BadAnswer(format!("not JSON: {e}")))?;
        let data = body
            .get("data")
            .ok_or_else(|| ReplayApiError::BadAnswer("no 'data' object".into()))?;
        let url = data
            .get("chat_download_url")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ReplayApiError::BadAnswer("no 'data.chat_download_url'".into()))?;
        let expiry = data
            .get("chat_download_url_expiry")
            .and_then(|v| v.as_str())
            .and_then(|s| Timestamp::parse(s).ok());
        Ok(FreshUrl {
            url: url.to_owned(),
            expiry,
        })
    }
}
