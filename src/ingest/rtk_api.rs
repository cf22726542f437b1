//! RealtimeKit's REST API, the two endpoints chatsink pulls with:
//! - the Chat Replay API, a fresh download URL for a session's chat dump. Cloudflare:
//!   `GET {base}/accounts/{account}/realtime/kit/{app}/sessions/{session}/chat` with a bearer
//!   token; Dyte v2: `GET {base}/sessions/{session}/chat` with HTTP Basic;
//! - the sessions listing (`GET .../sessions`), for `backfill` and reconcile;
//! - a session's participants (`GET .../sessions/{session}/participants`): who each sender is
//!   in the app's own terms.
//!
//! Both share RealtimeKit's limit of 250 requests per 10 seconds: every request waits its turn
//! at a limiter below that rate, and a 429 is waited out as its `retry-after` says.

use crate::config::{DownloadSettings, ReplayApiCredentials};
use crate::domain::{ListedSession, ListingStatus, Participant, SessionId, Timestamp};
use governor::{DefaultDirectRateLimiter, Quota};
use secrecy::ExposeSecret;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// Waits up to this long for a 429's `retry-after` before giving the attempt up to backoff.
const MAX_INLINE_RETRY_AFTER: Duration = Duration::from_secs(30);
const MAX_INLINE_RETRIES: u32 = 3;

/// One request per 45 ms after a burst of 20: at most 20 + 10 s / 45 ms = 242 requests in any
/// 10 seconds, under RealtimeKit's 250.
const REQUEST_PERIOD: Duration = Duration::from_millis(45);
const REQUEST_BURST: u32 = 20;

/// The largest answer read from the API: a page of 100 sessions is a few tens of KiB, so more
/// than this is a broken or hostile server, not a listing.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Sessions asked for per listing page.
pub const LISTING_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RtkApiError {
    #[error("RealtimeKit API: {0} not found")]
    NotFound(String),
    #[error("RealtimeKit API rejected the credentials (HTTP {0}); check CHATSINK_RTK_API_TOKEN / CHATSINK_DYTE_API_KEY")]
    Unauthorized(u16),
    #[error("RealtimeKit API rate limit; retry after {0:?}")]
    RateLimited(Duration),
    #[error("RealtimeKit API answered HTTP {0}")]
    Status(u16),
    #[error("RealtimeKit API answer is not understood: {0}")]
    BadAnswer(String),
    #[error("RealtimeKit API unreachable: {0}")]
    Network(String),
}

impl RtkApiError {
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

/// What to list: ended sessions in a window, optionally of one meeting.
#[derive(Debug, Clone)]
pub struct ListingQuery {
    pub since: Timestamp,
    pub until: Option<Timestamp>,
    pub meeting: Option<String>,
}

/// One page of a listing: the entries understood, and those that were not (with why).
#[derive(Debug)]
pub struct ListingPage<T = ListedSession> {
    pub items: Vec<T>,
    pub not_understood: Vec<String>,
    /// How many entries the page held (a page shorter than asked for is not the end: the
    /// server may cap `per_page`).
    pub entries: usize,
    /// The listing's `paging`, beside `data`, when the server sends it.
    pub paging: Option<ListingPaging>,
}

/// Where a page sits in the whole listing: `{start_offset, end_offset, total_count}` (in the
/// SDK's types since 2026-05). Whether `end_offset` is inclusive is not stated; the walk does
/// not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingPaging {
    pub start_offset: u64,
    pub end_offset: u64,
    pub total_count: u64,
}

impl<T> Default for ListingPage<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            not_understood: Vec::new(),
            entries: 0,
            paging: None,
        }
    }
}

impl ListingPaging {
    fn from_answer(body: &serde_json::Value) -> Option<Self> {
        let paging = body.get("paging")?;
        let number = |field: &str| paging.get(field).and_then(serde_json::Value::as_u64);
        Some(Self {
            start_offset: number("start_offset")?,
            end_offset: number("end_offset").unwrap_or(0),
            total_count: number("total_count")?,
        })
    }
}

#[derive(Clone)]
pub struct RtkApi {
    client: reqwest::Client,
    credentials: ReplayApiCredentials,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RtkApi {
    pub fn new(settings: &DownloadSettings) -> Option<Self> {
        let credentials = settings.replay_api.clone()?;
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.read_timeout)
            .user_agent(concat!("chatsink/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        let quota = Quota::with_period(REQUEST_PERIOD)
            .expect("a period above zero")
            .allow_burst(NonZeroU32::new(REQUEST_BURST).expect("a burst above zero"));
        Some(Self {
            client,
            credentials,
            limiter: Arc::new(governor::RateLimiter::direct(quota)),
        })
    }

    #[tracing::instrument(skip(self), fields(session_id = %session))]
    pub async fn fresh_download_url(&self, session: &SessionId) -> Result<FreshUrl, RtkApiError> {
        let segment: String =
            url::form_urlencoded::byte_serialize(session.as_str().as_bytes()).collect();
        let body = self
            .get_json(
                &format!("sessions/{segment}/chat"),
                &[],
                &format!("session {session}"),
            )
            .await?;
        let data = body
            .get("data")
            .ok_or_else(|| RtkApiError::BadAnswer("no 'data' object".into()))?;
        let url = data
            .get("chat_download_url")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| RtkApiError::BadAnswer("no 'data.chat_download_url'".into()))?;
        let expiry = data
            .get("chat_download_url_expiry")
            .and_then(|v| v.as_str())
            .and_then(|s| Timestamp::parse(s).ok());
        Ok(FreshUrl {
            url: url.to_owned(),
            expiry,
        })
    }

    /// Page `page_no` of the app's ended sessions matching `query`, oldest first so that
    /// sessions ending while the listing is paged through join its end and shift no page.
    /// Whether pages count from 0 or 1 is the server's (see `pull::ListingWalk`).
    pub async fn list_sessions(
        &self,
        query: &ListingQuery,
        page_no: u32,
    ) -> Result<ListingPage, RtkApiError> {
        let mut params = vec![
            ("status", "ENDED".to_owned()),
            ("start_time", query.since.to_rfc3339()),
            ("sort_by", "createdAt".to_owned()),
            ("sort_order", "ASC".to_owned()),
            ("page_no", page_no.to_string()),
            ("per_page", LISTING_PAGE.to_string()),
        ];
        if let Some(until) = query.until {
            params.push(("end_time", until.to_rfc3339()));
        }
        if let Some(meeting) = &query.meeting {
            params.push(("associated_id", meeting.clone()));
        }
        let body = self
            .get_json(
                "sessions",
                &params,
                "the app's sessions listing (check the app id)",
            )
            .await?;
        let entries = body
            .get("data")
            .and_then(|d| d.get("sessions"))
            .and_then(|s| s.as_array())
            .ok_or_else(|| RtkApiError::BadAnswer("no 'data.sessions' list".into()))?;
        let mut page = ListingPage {
            entries: entries.len(),
            paging: ListingPaging::from_answer(&body),
            ..ListingPage::default()
        };
        for entry in entries {
            match listed_session(entry) {
                Ok(session) => page.items.push(session),
                Err(why) => page.not_understood.push(why),
            }
        }
        Ok(page)
    }

    /// Page `page_no` of a session's participants (the SDK's type has no `paging` for it: a
    /// walk asks until a page comes back empty, and follows `paging` if a server sends it).
    pub async fn list_participants(
        &self,
        session: &SessionId,
        page_no: u32,
    ) -> Result<ListingPage<Participant>, RtkApiError> {
        let segment: String =
            url::form_urlencoded::byte_serialize(session.as_str().as_bytes()).collect();
        let params = vec![
            ("page_no", page_no.to_string()),
            ("per_page", LISTING_PAGE.to_string()),
            ("sort_by", "joinedAt".to_owned()),
            ("sort_order", "ASC".to_owned()),
        ];
        let body = self
            .get_json(
                &format!("sessions/{segment}/participants"),
                &params,
                &format!("participants of session {session}"),
            )
            .await?;
        let entries = body
            .get("data")
            .and_then(|d| d.get("participants"))
            .and_then(|s| s.as_array())
            .ok_or_else(|| RtkApiError::BadAnswer("no 'data.participants' list".into()))?;
        let mut page = ListingPage {
            entries: entries.len(),
            paging: ListingPaging::from_answer(&body),
            ..ListingPage::default()
        };
        for entry in entries {
            match listed_participant(entry) {
                Ok(participant) => page.items.push(participant),
                Err(why) => page.not_understood.push(why),
            }
        }
        Ok(page)
    }

    /// GETs `tail` under the app's API root, waiting out the limiter and (a few times) a 429.
    async fn get_json(
        &self,
        tail: &str,
        params: &[(&str, String)],
        what: &str,
    ) -> Result<serde_json::Value, RtkApiError> {
        let mut tries = 0;
        loop {
            self.limiter.until_ready().await;
            match self.get_once(tail, params, what).await {
                Err(RtkApiError::RateLimited(wait))
                    if wait <= MAX_INLINE_RETRY_AFTER && tries < MAX_INLINE_RETRIES =>
                {
                    tries += 1;
                    metrics::counter!("chatsink_rtk_api_rate_limited_total").increment(1);
                    tracing::warn!(
                        wait_ms = wait.as_millis() as u64,
                        "RealtimeKit API rate limit; waiting as told"
                    );
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn get_once(
        &self,
        tail: &str,
        params: &[(&str, String)],
        what: &str,
    ) -> Result<serde_json::Value, RtkApiError> {
        let request = match &self.credentials {
            ReplayApiCredentials::Cloudflare {
                base,
                account_id,
                app_id,
                token,
            } => self
                .client
                .get(format!(
                    "{base}/accounts/{account_id}/realtime/kit/{app_id}/{tail}"
                ))
                .bearer_auth(token.expose_secret()),
            ReplayApiCredentials::Dyte {
                base,
                org_id,
                api_key,
            } => self
                .client
                .get(format!("{base}/{tail}"))
                .basic_auth(org_id, Some(api_key.expose_secret())),
        };
        let response =
            request.query(params).send().await.map_err(|e| {
                RtkApiError::Network(super::download::error_chain(&e.without_url()))
            })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            404 => return Err(RtkApiError::NotFound(what.to_owned())),
            401 | 403 => return Err(RtkApiError::Unauthorized(status)),
            429 => {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(10);
                return Err(RtkApiError::RateLimited(Duration::from_secs(wait)));
            }
            _ => return Err(RtkApiError::Status(status)),
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_long());
        }
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RtkApiError::BadAnswer(super::download::error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_long());
            }
            bytes.extend_from_slice(&chunk);
        }
        crate::domain::json::from_slice(&bytes)
            .map_err(|e| RtkApiError::BadAnswer(format!("not JSON: {e}")))
    }
}

fn too_long() -> RtkApiError {
    RtkApiError::BadAnswer(format!(
        "the answer is over {} MiB",
        MAX_ANSWER_BYTES / (1024 * 1024)
    ))
}

/// Longest id or name kept from a participant entry: more is a broken or hostile answer.
const MAX_PARTICIPANT_TEXT: usize = 1000;

/// One participant entry, or why it is not one chatsink can use.
fn listed_participant(entry: &serde_json::Value) -> Result<Participant, String> {
    let text = |field: &str| {
        entry
            .get(field)
            .and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.trim().to_owned()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty() && s.len() <= MAX_PARTICIPANT_TEXT)
    };
    let time = |field: &str| text(field).and_then(|s| Timestamp::parse(&s).ok());
    let participant_id = text("id").ok_or("a participant without an 'id'")?;
    Ok(Participant {
        participant_id,
        user_id: text("user_id"),
        custom_participant_id: text("custom_participant_id"),
        display_name: text("display_name"),
        preset_name: text("preset_name"),
        joined_at: time("joined_at"),
        left_at: time("left_at"),
    })
}

/// One entry of the listing, or why it is not one chatsink can use.
fn listed_session(entry: &serde_json::Value) -> Result<ListedSession, String> {
    let text = |field: &str| {
        entry
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let time = |field: &str| text(field).and_then(|s| Timestamp::parse(&s).ok());
    let raw_id = text("id").ok_or("an entry without an 'id'")?;
    let id = SessionId::parse(&raw_id).map_err(|e| format!("session id '{raw_id}' {e}"))?;
    Ok(ListedSession {
        id,
        status: ListingStatus::parse(&text("status").unwrap_or_default()),
        meeting_id: text("associated_id"),
        title: text("meeting_display_name"),
        created_at: time("created_at"),
        started_at: time("started_at"),
        ended_at: time("ended_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_entry_keeps_its_metadata_and_a_bad_one_says_why() {
        let entry = serde_json::json!({
            "id": "4f0c6a4e-2b9f-4bb6-9d2f-2f0c9b1e7a11",
            "associated_id": "bbb3f1d4-0000-4000-8000-000000000001",
            "meeting_display_name": "Weekly sync",
            "status": "ENDED",
            "created_at": "2026-11-30T09:59:00.000Z",
            "started_at": "2026-11-30T10:00:00.000Z",
            "ended_at": "2026-11-30T11:00:00Z",
        });
        let listed = listed_session(&entry).unwrap();
        assert_eq!(listed.status, ListingStatus::Ended);
        assert_eq!(listed.title.as_deref(), Some("Weekly sync"));
        assert_eq!(
            listed.ended_at.map(Timestamp::to_rfc3339).as_deref(),
            Some("2026-11-30T11:00:00.000Z")
        );
        assert_eq!(
            listed_session(&serde_json::json!({"status": "ENDED"})).unwrap_err(),
            "an entry without an 'id'"
        );
        let bad = listed_session(&serde_json::json!({"id": "../../etc"})).unwrap_err();
        assert!(bad.starts_with("session id '../../etc'"), "{bad}");
        let live = listed_session(&serde_json::json!({"id": "s-1", "status": "LIVE"})).unwrap();
        assert_eq!(live.status, ListingStatus::Live);
    }
}
