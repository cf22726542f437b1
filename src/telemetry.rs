//! Logging: human-readable by default, one JSON object per line with `CHATSINK_LOG_FORMAT=json`.
//! `RUST_LOG` filters as usual (default `info`). Logs go to stderr; stdout is for command output.
//! Metrics: one process-wide Prometheus recorder, rendered by `GET /metrics`.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests starting several apps) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        // Colours only for a person at a terminal: a file, a pipe or journald gets plain text.
        LogFormat::Pretty => builder
            .compact()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}

/// The Prometheus recorder, installed on first use.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ],
            )
            .expect("buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        zero_at_start();
        handle
    })
}

/// Counters of failures and rare events, there at zero from the start: a series that is born
/// at 1 shows no `increase()`, so an alert on it would miss the first failure.
const ZERO_AT_START: [&str; 9] = [
    "chatsink_audit_write_failures_total",
    "chatsink_participant_fetch_failures_total",
    "chatsink_reconcile_listing_shortfall_total",
    "chatsink_reconcile_sessions_enqueued_total",
    "chatsink_reconcile_sessions_missing_total",
    "chatsink_rtk_api_rate_limited_total",
    "chatsink_rtk_key_fetch_failures_total",
    "chatsink_rtk_key_refetches_total",
    "chatsink_store_conflict_retries_total",
];

fn zero_at_start() {
    for name in ZERO_AT_START {
        metrics::counter!(name).absolute(0);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "chatsink_deliveries_total",
        "Webhook deliveries by result and signature scheme."
    );
    describe_counter!(
        "chatsink_signature_failures_total",
        "Deliveries refused for a bad signature, by header."
    );
    describe_counter!(
        "chatsink_job_attempts_total",
        "Ingest job attempts by kind and outcome."
    );
    describe_gauge!("chatsink_jobs", "Ingest jobs by state.");
    describe_gauge!(
        "chatsink_queue_lag_seconds",
        Unit::Seconds,
        "Age of the oldest job that is due and not running."
    );
    describe_counter!(
        "chatsink_download_bytes_total",
        Unit::Bytes,
        "Bytes of chat dumps downloaded."
    );
    describe_histogram!(
        "chatsink_download_seconds",
        Unit::Seconds,
        "Time to download one dump."
    );
    describe_counter!(
        "chatsink_rows_loaded_total",
        "Dump rows loaded as messages."
    );
    describe_counter!("chatsink_rows_rejected_total", "Dump rows rejected.");
    describe_counter!(
        "chatsink_store_conflict_retries_total",
        "Transactions run again after the database rolled them back to keep them apart from others (SQLSTATE 40001, 40P01)."
    );
    describe_histogram!(
        "chatsink_query_seconds",
        Unit::Seconds,
        "Query API latency by route and status class."
    );
}
