//! The `/v1` handlers: extract the request, call one use case of the store, shape the answer.

use super::audit::{self, counted};
use super::cursor::{Cursor, CursorKey};
use super::error::ApiError;
use super::params::{self, Format, MessageQuery, QueryParams, Scope, DEFAULT_LIMIT};
use super::views::*;
use super::{export, ApiState};
use crate::domain::{After, Reader};
use actix_web::{web, HttpRequest, HttpResponse};

fn accept(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

async fn respond_with_messages(
    state: &ApiState,
    request: &HttpRequest,
    query: MessageQuery,
) -> Result<HttpResponse, ApiError> {
    let permit = state.admit(&query.filter).await?;
    let store = &state.store;
    if query.format != Format::Json {
        // The first row now, so a search past its budget is a 400 before the 200 is sent.
        store
            .message_page(
                &query.filter,
                query.order,
                query.after,
                1,
                state.read_budget,
            )
            .await
            .map_err(ApiState::read_error(&query.filter))?;
        let audit = (state.audit.clone(), audit::entry_for(request, 200));
        let mut response = export::stream(store.clone(), query, state.read_budget, permit, audit);
        response.extensions_mut().insert(audit::RecordedByStream);
        return Ok(response);
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let rows = store
        .message_page(
            &query.filter,
            query.order,
            query.after,
            limit + 1,
            state.read_budget,
        )
        .await
        .map_err(ApiState::read_error(&query.filter))?;
    drop(permit);
    let codec = Cursor::for_messages(&query.filter, query.order);
    let (rows, next_cursor) = page(rows, limit, &codec, |last| After {
        created_ms: last.created_ms,
        seq: last.seq,
    });
    let count = rows.len();
    Ok(counted(
        HttpResponse::Ok().json(MessageList {
            messages: rows.into_iter().map(MessageView::from).collect(),
            next_cursor,
        }),
        count,
    ))
}

/// Cuts a page fetched with one row more than `limit` back to `limit`, and names the cursor
/// after its last row's key when there is more: every list route pages this way.
fn page<T, K: CursorKey>(
    mut rows: Vec<T>,
    limit: u32,
    codec: &Cursor,
    key: impl FnOnce(&T) -> K,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(|last| codec.encode_key(&key(last)));
        (rows, next)
    } else {
        (rows, None)
    }
}

/// The position a list route's `cursor` parameter names, if it has one.
fn cursor_key<K: CursorKey>(params: &QueryParams, codec: &Cursor) -> Result<Option<K>, ApiError> {
    params
        .one("cursor")
        .map(|t| codec.decode_key(t))
        .transpose()
}

/// What a reader's token lets it see, as a route's scope.
fn visible(reader: &Reader) -> Scope {
    Scope {
        visible: reader.meetings.clone(),
        ..Scope::default()
    }
}

/// The reader's scope as a cursor's context: a cursor issued to one scope is refused in another.
fn scope_key(reader: &Reader) -> String {
    format!("{:?}", reader.meetings)
}

/// The session, if it exists and the reader may see it (a 404 either way).
async fn require_session(
    state: &ApiState,
    reader: &Reader,
    id: &str,
) -> Result<SessionView, ApiError> {
    state
        .store
        .session(id, reader.meetings.as_deref(), state.read_budget)
        .await
        .map_err(ApiError::from_light_read)?
        .map(SessionView::from)
        .ok_or_else(|| ApiError::NotFound {
            what: format!("session '{id}'"),
        })
}

/// Messages, filtered and paged (or exported with `format=csv|ndjson`).
#[utoipa::path(get, path = "/v1/messages", tag = "messages",
    responses((status = 200, description = "One page of messages (JSON), or with format=csv / format=ndjson (or Accept) the whole result streamed", content((MessageList = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))),
              (status = 400, description = "A parameter is unknown or invalid; the body names it"),
              (status = 401, description = "Missing or invalid bearer token")),
    security(("bearer" = [])))]
pub async fn list_messages(
    request: HttpRequest,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let query = MessageQuery::parse(
        request.query_string(),
        params::MESSAGE_PARAMS,
        &visible(&reader),
        accept(&request),
    )?;
    respond_with_messages(&state, &request, query).await
}

/// One session's messages; the same filters as `/v1/messages` but `session`.
#[utoipa::path(get, path = "/v1/sessions/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, description = "One page of messages (JSON), or with format=csv / format=ndjson (or Accept) the whole result streamed", content((MessageList = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))), (status = 400), (status = 401), (status = 404, description = "Unknown session")),
    security(("bearer" = [])))]
pub async fn session_messages(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = Scope {
        session: Some(id.clone()),
        ..visible(&reader)
    };
    let query = MessageQuery::parse(
        request.query_string(),
        params::SESSION_MESSAGE_PARAMS,
        &scope,
        accept(&request),
    )?;
    require_session(&state, &reader, &id).await?;
    respond_with_messages(&state, &request, query).await
}

/// One participant's messages; the same filters as `/v1/messages` but `user`.
#[utoipa::path(get, path = "/v1/users/{id}/messages", tag = "messages",
    params(("id" = String, Path, description = "Participant (user) id")),
    responses((status = 200, description = "One page of messages (JSON), or with format=csv / format=ndjson (or Accept) the whole result streamed", content((MessageList = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"))), (status = 400), (status = 401), (status = 404, description = "Unknown user")),
    security(("bearer" = [])))]
pub async fn user_messages(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = Scope {
        user: Some(id.clone()),
        ..visible(&reader)
    };
    let query = MessageQuery::parse(
        request.query_string(),
        params::USER_MESSAGE_PARAMS,
        &scope,
        accept(&request),
    )?;
    if !state
        .store
        .user_exists(&id, reader.meetings.as_deref(), state.read_budget)
        .await
        .map_err(ApiError::from_light_read)?
    {
        return Err(ApiError::NotFound {
            what: format!("user '{id}'"),
        });
    }
    respond_with_messages(&state, &request, query).await
}

/// Sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    responses((status = 200, body = SessionList), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn list_sessions(
    request: HttpRequest,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let codec = Cursor::for_list("sessions", &scope_key(&reader));
    let after = cursor_key(&params, &codec)?;
    let rows = state
        .store
        .session_page(
            after,
            reader.meetings.as_deref(),
            limit + 1,
            state.read_budget,
        )
        .await
        .map_err(ApiError::from_light_read)?;
    let (rows, next_cursor) = page(rows, limit, &codec, |s| (s.sort_ms, s.session_id.clone()));
    let count = rows.len();
    Ok(counted(
        HttpResponse::Ok().json(SessionList {
            sessions: rows.into_iter().map(SessionView::from).collect(),
            next_cursor,
        }),
        count,
    ))
}

/// One session: metadata, counts, ingest status.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 401), (status = 404, description = "Unknown session")),
    security(("bearer" = [])))]
pub async fn get_session(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(request.query_string(), &[])?;
    let session = require_session(&state, &reader, &path.into_inner()).await?;
    Ok(counted(HttpResponse::Ok().json(session), 1))
}

/// A session's dump rows that could not be loaded, in file order, with their exact bytes.
#[utoipa::path(get, path = "/v1/sessions/{id}/rejected", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = RejectedList), (status = 400), (status = 401), (status = 404, description = "Unknown session")),
    security(("bearer" = [])))]
pub async fn session_rejected(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let params = QueryParams::parse(request.query_string(), params::LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let codec = Cursor::for_list("rejected", &id);
    let after = cursor_key(&params, &codec)?;
    require_session(&state, &reader, &id).await?;
    let rows = state
        .store
        .rejected_page(&id, after, limit + 1, state.read_budget)
        .await
        .map_err(ApiError::from_light_read)?;
    let (rows, next_cursor) = page(rows, limit, &codec, |r| r.id);
    let count = rows.len();
    Ok(counted(
        HttpResponse::Ok().json(RejectedList {
            rejected: rows.into_iter().map(RejectedRowView::from).collect(),
            next_cursor,
        }),
        count,
    ))
}

/// Participants seen in the archive, by id.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    responses((status = 200, body = UserList), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn list_users(
    request: HttpRequest,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::USER_LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let session = params.one("session").map(str::to_owned);
    let codec = Cursor::for_list(
        "users",
        &format!(
            "{}|{}",
            session.as_deref().unwrap_or(""),
            scope_key(&reader)
        ),
    );
    let after = cursor_key(&params, &codec)?;
    let rows = state
        .store
        .user_page(
            session,
            reader.meetings.as_deref(),
            after,
            limit + 1,
            state.read_budget,
        )
        .await
        .map_err(ApiError::from_light_read)?;
    let (rows, next_cursor) = page(rows, limit, &codec, |u| u.user_id.clone());
    let count = rows.len();
    Ok(counted(
        HttpResponse::Ok().json(UserList {
            users: rows.into_iter().map(UserView::from).collect(),
            next_cursor,
        }),
        count,
    ))
}

/// Counts by type, by pinned, by day, and the top users, for the filters of `/v1/messages`.
#[utoipa::path(get, path = "/v1/stats", tag = "stats",
    responses((status = 200, body = StatsView), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn stats(
    request: HttpRequest,
    state: web::Data<ApiState>,
    reader: web::ReqData<Reader>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::STATS_PARAMS)?;
    let filter = params::message_filter(&params, &visible(&reader))?;
    let _permit = state.admit(&filter).await?;
    let stats = state
        .store
        .stats(&filter, 10, state.read_budget)
        .await
        .map_err(ApiState::read_error(&filter))?;
    let total = stats.total.max(0) as usize;
    Ok(counted(
        HttpResponse::Ok().json(StatsView::from(stats)),
        total,
    ))
}
