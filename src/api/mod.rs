//! The read side: `/healthz`, `/openapi.json`, and the analysts' query API under `/v1`
//! (bearer token required). Handlers are thin; the queries live in `store::messages`.

mod auth;
mod cursor;
mod error;
mod export;
mod openapi;
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

pub struct ApiState {
    pub db: Database,
    pub read_tokens: Vec<SecretString>,
}

impl ApiState {
    pub fn new(db: Database, read_tokens: Vec<SecretString>) -> Self {
        Self { db, read_tokens }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let openapi = openapi::document()
        .to_json()
        .expect("the OpenAPI document serialises");
    cfg.route("/healthz", web::get().to(healthz))
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

/// 200 while the database accepts writes, 503 otherwise.
async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    match state.db.check_writable().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: database not writable");
            HttpResponse::ServiceUnavailable().json(
                serde_json::json!({"status": "unavailable", "error": "database not writable"}),
            )
        }
    }
}
