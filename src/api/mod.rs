//! The read side: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the analysts' query API under `/v1`
//! (bearer token required). Handlers are thin: parse the request, call one use case of the
//! store, shape the answer.

mod admin;
mod audit;
mod auth;
mod cursor;
mod error;
mod export;
mod openapi;
mod ops;
mod params;
mod redact;
mod routes;
mod views;

pub use cursor::Cursor;
pub use error::ApiError;
pub use export::{spreadsheet_safe, CSV_COLUMNS};
pub use openapi::{document as openapi_document, ROUTE_PARAMS};
pub use redact::{redact_query, redact_secrets, REDACTED};
pub use views::escape_bytes;

use crate::domain::MessageFilter;
use crate::governance::AuditLog;
use crate::ingest::DumpStore;
use crate::store::{Store, StoreError};
use actix_web::{middleware, web, HttpResponse};
use secrecy::SecretString;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ApiState {
    pub store: Store,
    /// `CHATSINK_READ_TOKENS`: unscoped read tokens.
    pub read_tokens: Vec<SecretString>,
    /// `CHATSINK_ADMIN_TOKENS`: tokens that may also delete and read the audit log.
    pub admin_tokens: Vec<SecretString>,
    pub audit: AuditLog,
    /// Where erasures delete the kept dumps that held erased rows.
    pub dumps: DumpStore,
    pub readiness: Readiness,
    /// How long one read (a page, a stats call, one page of an export) may run.
    pub read_budget: Duration,
    /// Reads with a full-text `q` that may run at once: fewer than the pool's connections, so
    /// expensive searches can never take every connection from light pages.
    full_text: Arc<Semaphore>,
}

/// The tokens the environment configures (those made by `chatsink token create` are in the
/// database).
pub struct ApiTokens {
    pub read: Vec<SecretString>,
    pub admin: Vec<SecretString>,
}

/// Full-text reads at once (the pool holds 16 connections).
const FULL_TEXT_AT_ONCE: usize = 4;

/// What `/readyz` checks besides the database.
pub struct Readiness {
    pub workers_alive: Arc<AtomicUsize>,
    pub workers_expected: usize,
    /// Jobs due and not yet run above which the service reports itself not ready.
    pub max_backlog: i64,
}

impl ApiState {
    pub fn new(
        store: Store,
        tokens: ApiTokens,
        readiness: Readiness,
        read_budget: Duration,
        audit: AuditLog,
        dumps: DumpStore,
    ) -> Self {
        Self {
            store,
            read_tokens: tokens.read,
            admin_tokens: tokens.admin,
            audit,
            dumps,
            readiness,
            read_budget,
            full_text: Arc::new(Semaphore::new(FULL_TEXT_AT_ONCE)),
        }
    }

    /// A place among the full-text reads for a filter with `q` (none needed without): waits at
    /// most one read budget, then answers busy.
    async fn admit(
        &self,
        filter: &MessageFilter,
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        if filter.text_query.is_none() {
            return Ok(None);
        }
        match tokio::time::timeout(self.read_budget, self.full_text.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(ApiError::Busy),
        }
    }

    /// How a failed read of the messages `filter` selects is answered: past the read budget,
    /// the error names `q` when the filter has one.
    fn read_error(filter: &MessageFilter) -> impl FnOnce(StoreError) -> ApiError {
        let searched = filter.text_query.is_some();
        move |e| ApiError::from_read(e, searched)
    }
}

/// A resource answering `method` with `handler`, and every other method with a JSON 405 that
/// names the allowed one (a resource without its own default would fall through to the
/// scope's 404).
pub fn only<F, Args>(path: &str, method: actix_web::http::Method, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let allow = method.as_str().to_owned();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
        }))
}

/// Any path no route serves: a JSON 404.
pub async fn no_such_route() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        what: "route".into(),
    })
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    use actix_web::http::Method;
    let openapi = openapi::document()
        .to_json()
        .expect("the OpenAPI document serialises");
    cfg.service(only("/healthz", Method::GET, ops::healthz))
        .service(only("/readyz", Method::GET, ops::readyz))
        .service(only("/metrics", Method::GET, ops::metrics))
        .service(only("/openapi.json", Method::GET, move || {
            let body = openapi.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
        .service(
            web::scope("/v1")
                .wrap(middleware::from_fn(auth::require_token))
                .wrap(middleware::from_fn(audit::record))
                .wrap(middleware::from_fn(ops::record_query_latency))
                .service(only("/messages", Method::GET, routes::list_messages))
                .service(only("/sessions", Method::GET, routes::list_sessions))
                .service(
                    web::resource("/sessions/{id}")
                        .route(web::get().to(routes::get_session))
                        .route(web::delete().to(admin::erase_session))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed {
                                allow: "GET, DELETE".into(),
                            })
                        })),
                )
                .service(only("/users/{id}", Method::DELETE, admin::erase_user))
                .service(only("/messages/{id}", Method::DELETE, admin::erase_message))
                .service(only("/audit", Method::GET, admin::audit))
                .service(only(
                    "/sessions/{id}/messages",
                    Method::GET,
                    routes::session_messages,
                ))
                .service(only(
                    "/sessions/{id}/rejected",
                    Method::GET,
                    routes::session_rejected,
                ))
                .service(only("/users", Method::GET, routes::list_users))
                .service(only(
                    "/users/{id}/messages",
                    Method::GET,
                    routes::user_messages,
                ))
                .service(only("/stats", Method::GET, routes::stats))
                .default_service(web::to(no_such_route)),
        );
}
