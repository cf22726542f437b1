//! The read side: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the analysts' query API under `/v1`
//! (bearer token required). Handlers are thin; the queries live in `store::messages`.

mod auth;
mod cursor;
mod error;
mod export;
mod openapi;
mod ops;
mod params;
mod routes;
mod views;

pub use cursor::Cursor;
pub use error::ApiError;
pub use export::{spreadsheet_safe, CSV_COLUMNS};
pub use openapi::{document as openapi_document, ROUTE_PARAMS};
pub use views::escape_bytes;

use crate::store::{Database, MessageFilter, StoreError};
use actix_web::{middleware, web, HttpResponse};
use secrecy::SecretString;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct ApiState {
    pub db: Database,
    pub read_tokens: Vec<SecretString>,
    pub readiness: Readiness,
    /// How long one read (a page, a stats call, one page of an export) may run.
    pub read_budget: Duration,
    /// Reads with a full-text `q` that may run at once: fewer than the pool's connections, so
    /// expensive searches can never take every connection from light pages.
    full_text: Arc<Semaphore>,
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
        db: Database,
        read_tokens: Vec<SecretString>,
        readiness: Readiness,
        read_budget: Duration,
    ) -> Self {
        Self {
            db,
            read_tokens,
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

    /// A read of the messages a filter selects, within the read budget; past it, the error
    /// names `q` when the filter has one.
    async fn read<T, F>(&self, filter: &MessageFilter, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::store::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let searched = filter.text_query.is_some();
        self.db
            .read(self.read_budget, work)
            .await
            .map_err(|e| ApiError::from_read(e, searched))
    }

    /// A read without a filter (sessions, users, one session), within the read budget.
    async fn read_light<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::store::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db
            .read(self.read_budget, work)
            .await
            .map_err(|e| ApiError::from_read(e, false))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let openapi = openapi::document()
        .to_json()
        .expect("the OpenAPI document serialises");
    cfg.route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route(
            "/openapi.json",
            web::get().to(move || {
                let body = openapi.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
        .service(
            web::scope("/v1")
                .wrap(middleware::from_fn(auth::require_read_token))
                .wrap(middleware::from_fn(ops::record_query_latency))
                .route("/messages", web::get().to(routes::list_messages))
                .route("/sessions", web::get().to(routes::list_sessions))
                .route("/sessions/{id}", web::get().to(routes::get_session))
                .route(
                    "/sessions/{id}/messages",
                    web::get().to(routes::session_messages),
                )
                .route(
                    "/sessions/{id}/rejected",
                    web::get().to(routes::session_rejected),
                )
                .route("/users", web::get().to(routes::list_users))
                .route("/users/{id}/messages", web::get().to(routes::user_messages))
                .route("/stats", web::get().to(routes::stats))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::NotFound {
                        what: "route".into(),
                    })
                })),
        );
}
