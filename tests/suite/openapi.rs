//! The served OpenAPI document against the server's behaviour, by schemathesis (PyPI; `.ci/run`
//! installs it): every operation, generated valid and invalid inputs, every check but
//! `positive_data_acceptance`. That one cannot hold here: a cursor is an opaque token only the
//! server issues and `q` has a grammar, so a schema-valid random string for either is rightly a
//! 400 (both are covered by query.rs and budget.rs). Bounded: a fixed seed, a few dozen examples
//! per operation, loopback only.

use crate::helpers::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_matches_what_the_server_does() {
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("s-openapi", 20))]);
    let app = spawn_app().await;
    app.post_rtk(&chat_synced("s-openapi", &storage.url("/d.csv")))
        .await;
    app.wait_for_jobs(std::time::Duration::from_secs(20)).await;

    let work = tempfile::tempdir().unwrap();
    let schema = format!("{}/openapi.json", app.address);
    let auth = format!("Authorization: Bearer {READ_TOKEN}");
    let run = tokio::task::spawn_blocking(move || {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
        Command::new("st")
            .args(["--config-file", config, "run", &schema, "-H", &auth])
            .args([
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
            ])
            .args([
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "10",
            ])
            .args([
                "--seed",
                "20261201",
                "--generation-deterministic",
                "--max-time",
                "60",
            ])
            .args(["--request-timeout", "30"])
            .current_dir(work.path())
            .env("NO_COLOR", "1")
            .output()
    })
    .await
    .unwrap();
    let output = match run {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return skip(
                "the_openapi_document_matches_what_the_server_does",
                "schemathesis (st) is not installed: python3 -m pip install schemathesis",
            );
        }
        Err(e) => panic!("st: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Failure reports can hold huge generated URLs: keep the message readable.
    let report: String = text
        .lines()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        output.status.success(),
        "schemathesis found mismatches:\n{report}"
    );
    assert!(text.contains("passed"), "{text}");
}
