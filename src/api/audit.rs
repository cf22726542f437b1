//! The audit entry of every `/v1` request: who (the token's name), the route and its query
//! string, the rows returned or removed, and the status. Queued to the [`AuditLog`] writer, so
//! the request does not wait for a commit.
//!
//! [`AuditLog`]: crate::governance::AuditLog

use super::ApiState;
use crate::domain::{AuditEntry, Reader};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};

/// Rows a handler returned or removed, for its request's audit entry.
#[derive(Debug, Clone, Copy)]
pub struct Rows(pub i64);

/// `response`, noting that it carries `rows` rows.
pub fn counted(mut response: HttpResponse, rows: usize) -> HttpResponse {
    response.extensions_mut().insert(Rows(rows as i64));
    response
}

/// Marks a streamed response whose audit entry its stream records when it ends (it alone knows
/// how many rows went).
#[derive(Debug, Clone, Copy)]
pub struct RecordedByStream;

/// The audit entry of `request` (its reader, route and query string) with `status`, its rows
/// still to be counted.
pub fn entry_for(request: &HttpRequest, status: u16) -> AuditEntry {
    let token = request
        .extensions()
        .get::<Reader>()
        .map_or_else(|| "-".to_owned(), |r| r.name.clone());
    AuditEntry::now(
        &token,
        request.method().as_str(),
        request.path(),
        request.query_string(),
        None,
        status,
    )
}

pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = request.app_data::<web::Data<ApiState>>().cloned();
    let response = next.call(request).await?;
    let streamed = response
        .response()
        .extensions()
        .get::<RecordedByStream>()
        .is_some();
    if let (Some(state), false) = (state, streamed) {
        let mut entry = entry_for(response.request(), response.status().as_u16());
        entry.rows = response.response().extensions().get::<Rows>().map(|r| r.0);
        let deletion = entry.method == "DELETE";
        state.audit.record(entry).await;
        // An erasure's entry is on disk before its answer: a crash right after it must not
        // lose the record that it was done (reads' entries may lag by a batch).
        if deletion {
            state.audit.flush().await;
        }
    }
    Ok(response)
}
