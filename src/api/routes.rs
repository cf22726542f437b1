//! The `/v1` handlers: extract the request, call one store query on the blocking pool, shape
//! the answer. No SQL here.

use super::cursor::Cursor;
use super::error::ApiError;
use super::params::{self, Format, MessageQuery, QueryParams, Scope, DEFAULT_LIMIT};
use super::views::*;
use super::{export, ApiState};
use crate::store::{load, messages, sessions, After};
use actix_web::{web, HttpRequest, HttpResponse};

fn accept(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

async fn respond_with_messages(
    state: &ApiState,
    query: MessageQuery,
) -> Result<HttpResponse, ApiError> {
    let permit = state.admit(&query.filter).await?;
    if query.format != Format::Json {
        // The first row now, so a search past its budget is a 400 before the 200 is sent.
        let (filter, order, after) = (query.filter.clone(), query.order, query.after);
        state
            .read(&query.filter, move |conn| {
                Ok(messages::message_page(conn, &filter, order, after, 1)?)
            })
            .await?;
        return Ok(export::stream(
            state.db.clone(),
            query,
            state.read_budget,
            permit,
        ));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    let (filter, order, after) = (query.filter.clone(), query.order, query.after);
    let rows = state
        .read(&query.filter, move |conn| {
            Ok(messages::message_page(
                conn,
                &filter,
                order,
                after,
                limit + 1,
            )?)
        })
        .await?;
    drop(permit);
    let (rows, next_cursor) = page(rows, limit, |last| {
        Cursor::for_messages(&query.filter, query.order).encode_after(After {
            created_ms: last.created_ms,
            seq: last.seq,
        })
    });
    Ok(HttpResponse::Ok().json(MessageList {
        messages: rows.into_iter().map(MessageView::from).collect(),
        next_cursor,
    }))
}

/// Cuts a page fetched with one row more than `limit` back to `limit`, and names the cursor
/// after its last row when there is more.
fn page<T>(
    mut rows: Vec<T>,
    limit: u32,
    cursor: impl FnOnce(&T) -> String,
) -> (Vec<T>, Option<String>) {
    if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

async fn require_session(state: &ApiState, id: &str) -> Result<SessionView, ApiError> {
    let key = id.to_owned();
    state
        .read_light(move |conn| Ok(sessions::get_session(conn, &key)?))
        .await?
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
) -> Result<HttpResponse, ApiError> {
    let query = MessageQuery::parse(
        request.query_string(),
        params::MESSAGE_PARAMS,
        &Scope::default(),
        accept(&request),
    )?;
    respond_with_messages(&state, query).await
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
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = Scope {
        session: Some(id.clone()),
        user: None,
    };
    let query = MessageQuery::parse(
        request.query_string(),
        params::SESSION_MESSAGE_PARAMS,
        &scope,
        accept(&request),
    )?;
    require_session(&state, &id).await?;
    respond_with_messages(&state, query).await
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
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let scope = Scope {
        session: None,
        user: Some(id.clone()),
    };
    let query = MessageQuery::parse(
        request.query_string(),
        params::USER_MESSAGE_PARAMS,
        &scope,
        accept(&request),
    )?;
    let key = id.clone();
    if !state
        .read_light(move |conn| Ok(messages::user_exists(conn, &key)?))
        .await?
    {
        return Err(ApiError::NotFound {
            what: format!("user '{id}'"),
        });
    }
    respond_with_messages(&state, query).await
}

/// Sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    responses((status = 200, body = SessionList), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn list_sessions(
    request: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let codec = Cursor::for_list("sessions", "");
    let after = match params.one("cursor") {
        Some(text) => {
            let body = codec.decode(text)?;
            if body.len() < 8 {
                return Err(ApiError::invalid(
                    "cursor",
                    "is not a cursor for this route",
                ));
            }
            let ms = i64::from_be_bytes(body[..8].try_into().expect("8 bytes"));
            let id = String::from_utf8(body[8..].to_vec())
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor for this route"))?;
            Some((ms, id))
        }
        None => None,
    };
    let rows = state
        .read_light(move |conn| Ok(messages::session_page(conn, after, limit + 1)?))
        .await?;
    let (rows, next_cursor) = page(rows, limit, |s| {
        let mut body = s.sort_ms.to_be_bytes().to_vec();
        body.extend_from_slice(s.session_id.as_bytes());
        codec.encode(&body)
    });
    Ok(HttpResponse::Ok().json(SessionList {
        sessions: rows.into_iter().map(SessionView::from).collect(),
        next_cursor,
    }))
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
) -> Result<HttpResponse, ApiError> {
    QueryParams::parse(request.query_string(), &[])?;
    Ok(HttpResponse::Ok().json(require_session(&state, &path.into_inner()).await?))
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
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let params = QueryParams::parse(request.query_string(), params::LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let codec = Cursor::for_list("rejected", &id);
    let after = match params.one("cursor") {
        Some(text) => {
            let body = codec.decode(text)?;
            let bytes: [u8; 8] = body
                .try_into()
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor for this route"))?;
            Some(i64::from_be_bytes(bytes))
        }
        None => None,
    };
    require_session(&state, &id).await?;
    let rows = state
        .read_light(move |conn| Ok(load::rejected_page(conn, &id, after, limit + 1)?))
        .await?;
    let (rows, next_cursor) = page(rows, limit, |r| codec.encode(&r.id.to_be_bytes()));
    Ok(HttpResponse::Ok().json(RejectedList {
        rejected: rows.into_iter().map(RejectedRowView::from).collect(),
        next_cursor,
    }))
}

/// Participants seen in the archive, by id.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    responses((status = 200, body = UserList), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn list_users(
    request: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::USER_LIST_PARAMS)?;
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let session = params.one("session").map(str::to_owned);
    let codec = Cursor::for_list("users", session.as_deref().unwrap_or(""));
    let after = match params.one("cursor") {
        Some(text) => Some(
            String::from_utf8(codec.decode(text)?)
                .map_err(|_| ApiError::invalid("cursor", "is not a cursor for this route"))?,
        ),
        None => None,
    };
    let rows = state
        .read_light(move |conn| {
            Ok(messages::user_page(
                conn,
                session.as_deref(),
                after.as_deref(),
                limit + 1,
            )?)
        })
        .await?;
    let (rows, next_cursor) = page(rows, limit, |u| codec.encode(u.user_id.as_bytes()));
    Ok(HttpResponse::Ok().json(UserList {
        users: rows.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// Counts by type, by pinned, by day, and the top users, for the filters of `/v1/messages`.
#[utoipa::path(get, path = "/v1/stats", tag = "stats",
    responses((status = 200, body = StatsView), (status = 400), (status = 401)),
    security(("bearer" = [])))]
pub async fn stats(
    request: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let params = QueryParams::parse(request.query_string(), params::STATS_PARAMS)?;
    let filter = params::message_filter(&params, &Scope::default())?;
    let _permit = state.admit(&filter).await?;
    let for_read = filter.clone();
    let stats = state
        .read(&filter, move |conn| {
            Ok(messages::message_stats(conn, &for_read, 10)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(StatsView::from(stats)))
}
