//! For operators and orchestrators: `/healthz` (the process answers), `/readyz` (it can do its
//! job: database writable, ingest workers running, backlog under the limit) and `/metrics`
//! (Prometheus text format).

use super::ApiState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Liveness: answers while the process serves HTTP. Storage trouble is `/readyz`'s business
/// (restarting would not fix a full disk).
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "alive"}))
}

/// Readiness: 200 when every check passes, else 503 naming the failing checks.
pub async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let mut failing = serde_json::Map::new();
    if let Err(e) = state.store.check_writable().await {
        tracing::error!(error = %e, "readiness: database not writable");
        failing.insert("database".into(), "not writable".into());
    }
    let alive = state.readiness.workers_alive.load(Ordering::SeqCst);
    if alive < state.readiness.workers_expected {
        failing.insert(
            "workers".into(),
            format!(
                "{alive} of {} ingest workers running",
                state.readiness.workers_expected
            )
            .into(),
        );
    }
    match state.store.backlog().await {
        Ok(backlog) if backlog > state.readiness.max_backlog => {
            failing.insert(
                "backlog".into(),
                format!(
                    "{backlog} jobs due, over the limit of {}",
                    state.readiness.max_backlog
                )
                .into(),
            );
        }
        Ok(_) => {}
        Err(_) => {
            failing
                .entry("database")
                .or_insert_with(|| "not readable".into());
        }
    }
    if failing.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "unavailable", "failing": failing}))
    }
}

/// Prometheus text format. Job counts and queue lag are read from the database at scrape time.
pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    if let Ok(gauges) = state.store.queue_gauges().await {
        for job_state in crate::domain::JobState::ALL {
            let count = gauges
                .by_state
                .iter()
                .find(|(s, _)| *s == job_state)
                .map_or(0, |(_, n)| *n);
            metrics::gauge!("chatsink_jobs", "state" => job_state.as_str()).set(count as f64);
        }
        metrics::gauge!("chatsink_queue_lag_seconds").set(gauges.lag_ms as f64 / 1000.0);
    }
    // Reconcile's state is the database's, so every instance shows the pass whoever ran it.
    if let Ok(Some(pass)) = state.store.pass_state(crate::ingest::RECONCILE_PASS).await {
        if let Some(at) = pass.last_success {
            metrics::gauge!("chatsink_reconcile_last_success_timestamp_seconds")
                .set(at.millis() as f64 / 1000.0);
        }
        metrics::gauge!("chatsink_reconcile_last_pass_failed").set(if pass.last_error.is_some() {
            1.0
        } else {
            0.0
        });
    }
    let handle = crate::telemetry::metrics();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// Records each `/v1` request's latency by route pattern and status class.
pub async fn record_query_latency(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.call(request).await;
    let status = match &response {
        Ok(r) if r.status().is_success() => "2xx",
        Ok(r) if r.status().is_client_error() => "4xx",
        _ => "5xx",
    };
    metrics::histogram!("chatsink_query_seconds", "route" => route, "status" => status)
        .record(started.elapsed().as_secs_f64());
    response
}
