//! The admin routes: erasure (`DELETE /v1/users/{id}`, `/v1/messages/{id}`, `/v1/sessions/{id}`)
//! and the audit log (`GET /v1/audit`). A read token gets 403 here.

use super::audit::counted;
use super::cursor::Cursor;
use super::error::ApiError;
use super::params::{self, QueryParams, DEFAULT_LIMIT, MAX_TEXT_BYTES};
use super::ApiState;
use crate::domain::{AuditQuery, EraseTarget, Erased, Reader, SessionId};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

/// What an erasure removed.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasedView {
    /// `user`, `message` or `session`.
    pub kind: &'static str,
    pub id: String,
    /// Counts of what went: messages, rejectedRows, sessions, deliveries, dumps. All zero when
    /// it was erased before.
    #[schema(value_type = Object)]
    pub removed: Erased,
}

async fn erase(
    state: &ApiState,
    reader: &Reader,
    target: EraseTarget,
) -> Result<HttpResponse, ApiError> {
    reader.require_admin()?;
    if target.id().is_empty() || target.id().len() > MAX_TEXT_BYTES {
        return Err(ApiError::invalid(
            "id",
            format!("must be 1 to {MAX_TEXT_BYTES} bytes"),
        ));
    }
    let removed = crate::governance::erase(&state.store, &state.dumps, &target)
        .await?
        .erased;
    tracing::info!(kind = target.kind(), id = target.id(), by = %reader.name, ?removed, "erased");
    let rows = removed.rows() as usize;
    Ok(counted(
        HttpResponse::Ok().json(ErasedView {
            kind: target.kind(),
            id: target.id().to_owned(),
            removed,
        }),
        rows,
    ))
}

/// Erases everything of a participant: messages, full-text entries, rejected rows that name
/// them, and the kept dumps that held them; later loads leave them out.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Participant (user) id")),
    responses((status = 200, body = ErasedView), (status = 400), (status = 401), (status = 403, description = "Not an admin token")),
    security(("bearer" = [])))]
pub async fn erase_user(
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    erase(&state, &reader, EraseTarget::User(path.into_inner())).await
}

/// Erases one message (by its id, in whichever session holds it).
#[utoipa::path(delete, path = "/v1/messages/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = ErasedView), (status = 400), (status = 401), (status = 403, description = "Not an admin token")),
    security(("bearer" = [])))]
pub async fn erase_message(
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    erase(&state, &reader, EraseTarget::Message(path.into_inner())).await
}

/// Erases a session: its messages, rejected rows, kept dump, jobs and webhook deliveries. It
/// keeps a tombstone, so a re-delivery is recorded and not loaded.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "erasure",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = ErasedView), (status = 400), (status = 401), (status = 403, description = "Not an admin token")),
    security(("bearer" = [])))]
pub async fn erase_session(
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    reader.require_admin()?;
    let id =
        SessionId::parse(&path.into_inner()).map_err(|e| ApiError::invalid("id", e.to_string()))?;
    erase(
        &state,
        &reader,
        EraseTarget::Session(id.as_str().to_owned()),
    )
    .await
}

/// One audit entry.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// The token's name; `-` when none was accepted.
    pub token: String,
    pub method: String,
    pub route: String,
    /// The query string (or what a deletion named).
    pub filters: String,
    /// Rows returned (a page, a list, an export) or removed (a deletion); absent for an error.
    pub rows: Option<i64>,
    pub status: u16,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    responses((status = 200, body = AuditList), (status = 400), (status = 401), (status = 403, description = "Not an admin token")),
    security(("bearer" = [])))]
pub async fn audit(
    request: HttpRequest,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    reader.require_admin()?;
    let params = QueryParams::parse(request.query_string(), params::AUDIT_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let query = AuditQuery {
        since_ms: params.time("since"),
        until_ms: params.time("until"),
        token: params.one("token").map(str::to_owned),
        before: None,
        limit: limit + 1,
    };
    let codec = Cursor::for_list("audit", &format!("{query:?}"));
    let before: Option<i64> = params
        .one("cursor")
        .map(|t| codec.decode_key(t))
        .transpose()?;
    let mut entries = state
        .store
        .audit_page(AuditQuery { before, ..query }, state.read_budget)
        .await
        .map_err(ApiError::from_light_read)?;
    let next_cursor = (entries.len() > limit as usize).then(|| {
        entries.truncate(limit as usize);
        codec.encode_key(&entries.last().expect("a full page").id)
    });
    let count = entries.len();
    Ok(counted(
        HttpResponse::Ok().json(AuditList {
            entries: entries
                .into_iter()
                .map(|e| AuditView {
                    id: e.id,
                    at: crate::domain::Timestamp::from_millis(e.at_ms).to_string(),
                    token: e.token,
                    method: e.method,
                    route: e.route,
                    filters: e.filters,
                    rows: e.rows,
                    status: e.status,
                })
                .collect(),
            next_cursor,
        }),
        count,
    ))
}
