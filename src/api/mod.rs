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

use crate::store::Database;
use actix_web::{middleware, web, HttpResponse};
use secrecy::SecretString;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

pub struct ApiState {
    pub db: Database,
    pub read_tokens: Vec<SecretString>,
    pub readiness: Readiness,
}

/// What `/readyz` checks besides the database.
pub struct Readiness {
    pub workers_alive: Arc<AtomicUsize>,
    pub workers_expected: usize,
    /// Jobs due and not yet run above which the service reports itself not ready.
    pub max_backlog: i64,
}

impl ApiState {
    pub fn new(db: Database, read_tokens: Vec<SecretString>, readiness: Readiness) -> Self {
        Self {
            db,
            read_tokens,
            readiness,
        }
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
