//! Receive: `POST /webhooks/realtimekit`. Read the body (bounded) -> verify the signature over
//! the raw bytes -> parse the event -> commit it to the inbox -> answer.
//!
//! Must never answer 2xx before the delivery is on disk, never do network I/O on the happy path,
//! and never store anything that did not verify.

mod error;
mod rtk_key;
mod signature;
mod standard_webhooks;

pub use error::WebhookError;
pub use signature::{DeliveryHeaders, Scheme, Verifier, VerifyError};
pub use standard_webhooks::{sign_hmac, verify_hmac, HmacError, TOLERANCE_SECS};

use crate::domain::{parse_event, Timestamp};
use crate::domain::{IntakeOutcome, NewDelivery};
use crate::store::Intake;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Notify;

/// What the receive route needs.
pub struct WebhookState {
    pub verifier: Verifier,
    pub intake: Intake,
    pub max_body_bytes: usize,
    /// Wakes an ingest worker when a job was enqueued.
    pub wake: Arc<Notify>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::api::only(
        "/webhooks/realtimekit",
        actix_web::http::Method::POST,
        receive_webhook,
    ));
}

async fn receive_webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> Result<HttpResponse, WebhookError> {
    let result = accept(request, payload, state).await;
    let (outcome, scheme) = match &result {
        Ok((_, outcome, scheme)) => (*outcome, scheme.as_str()),
        Err(e) => (e.code(), "none"),
    };
    metrics::counter!("chatsink_deliveries_total", "result" => outcome, "scheme" => scheme)
        .increment(1);
    if let Err(WebhookError::Signature(VerifyError::Rejected { header, .. })) = &result {
        metrics::counter!("chatsink_signature_failures_total", "header" => *header).increment(1);
    }
    result.map(|(response, _, _)| response)
}

/// Verifies, parses and stores one delivery; says what happened for the metrics.
#[tracing::instrument(name = "webhook", skip_all, fields(delivery_id = tracing::field::Empty, session_id = tracing::field::Empty))]
async fn accept(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> Result<(HttpResponse, &'static str, Scheme), WebhookError> {
    let received = Timestamp::now();
    let body = read_body(&request, payload, state.max_body_bytes).await?;
    let headers = delivery_headers(&request);
    let delivery_id = headers.delivery_id();
    if let Some(id) = &delivery_id {
        tracing::Span::current().record("delivery_id", id.as_str());
    }
    let scheme = state.verifier.verify(&headers, &body).await?;
    let event = parse_event(&body)?;
    if let Some(session) = &event.session_id {
        tracing::Span::current().record("session_id", session.as_str());
    }
    let delivery = NewDelivery {
        delivery_id,
        body_sha256: hex::encode(Sha256::digest(&body)),
        scheme: scheme.as_str(),
        event: event.name,
        session_id: event.session_id,
        body: body.to_vec(),
        received,
        chat_synced: event.chat_synced,
        webhook_id: headers.rtk_webhook_id.clone(),
    };
    match state
        .intake
        .store(delivery)
        .await
        .map_err(WebhookError::Storage)?
    {
        IntakeOutcome::Stored { inbox_id, job_id } => {
            if job_id.is_some() {
                state.wake.notify_one();
            }
            tracing::info!(
                inbox_id,
                job_id,
                scheme = scheme.as_str(),
                "delivery stored"
            );
            Ok((
                HttpResponse::Ok().json(
                    serde_json::json!({"status": "accepted", "inboxId": inbox_id, "jobId": job_id}),
                ),
                "accepted",
                scheme,
            ))
        }
        IntakeOutcome::Duplicate => {
            tracing::info!("duplicate delivery ignored");
            Ok((
                HttpResponse::Ok().json(serde_json::json!({"status": "duplicate"})),
                "duplicate",
                scheme,
            ))
        }
    }
}

/// Reads at most `limit` bytes; a longer body is refused as soon as it shows, without reading
/// the rest (a declared Content-Length over the limit is refused before reading anything).
async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, WebhookError> {
    let declared = request
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(WebhookError::TooLarge { limit });
    }
    let mut body =
        web::BytesMut::with_capacity(declared.unwrap_or(8192).min(limit as u64) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| WebhookError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(WebhookError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn delivery_headers(request: &HttpRequest) -> DeliveryHeaders {
    let get = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    DeliveryHeaders {
        rtk_signature: get("rtk-signature"),
        rtk_uuid: get("rtk-uuid"),
        dyte_signature: get("dyte-signature"),
        // An id, not text to keep whole: at most 200 characters, no control characters.
        rtk_webhook_id: get("rtk-webhook-id")
            .map(|id| {
                id.chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect::<String>()
            })
            .filter(|id| !id.trim().is_empty()),
        dyte_uuid: get("dyte-uuid"),
        webhook_id: get("webhook-id"),
        webhook_timestamp: get("webhook-timestamp"),
        webhook_signature: get("webhook-signature"),
    }
}
