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
use actix_web::{web, HttpMessage, HttpResponse};

/// Rows a handler returned or removed, for its request's audit entry.
#[derive(Debug, Clone, Copy)]
pub struct Rows(pub i64);

/// `response`, noting that it carries `rows` rows.
pub fn counted(mut response: HttpResponse, rows: usize) -> HttpResponse {
    response.extensions_mut().insert(Rows(rows as i64));
    response
}

pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = request.method().to_string();
    let route = request.path().to_owned();
    let filters = request.query_string().to_owned();
    let state = request.app_data::<web::Data<ApiState>>().cloned();
    let response = next.call(request).await?;
    if let Some(state) = state {
        let token = response
            .request()
            .extensions()
            .get::<Reader>()
            .map_or_else(|| "-".to_owned(), |r| r.name.clone());
        let rows = response.response().extensions().get::<Rows>().map(|r| r.0);
        let entry = AuditEntry::now(
            &token,
            &method,
            &route,
            &filters,
            rows,
            response.status().as_u16(),
        );
        state.audit.record(entry).await;
    }
    Ok(response)
}
