//! The read side: `/healthz` and the analysts' query API under `/v1`.

use crate::store::Database;
use actix_web::{web, HttpResponse};
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
    cfg.route("/healthz", web::get().to(healthz));
}

/// 200 while the database accepts writes, 503 otherwise.
async fn healthz(state: web::Data<ApiState>) -> HttpResponse {
    match state.db.check_writable().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %e, "health check: database not writable");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "unavailable", "error": "database not writable"}))
        }
    }
}
