//! Reads have a budget: expensive searches are refused with a clear answer instead of holding
//! connections and cores, and readiness and light pages keep answering while they run.

use crate::helpers::*;
use serde_json::Value;

/// 100,000 generated messages (the bench's generator), loaded with `chatsink ingest`'s code.
async fn load_generated(app: &TestApp, sessions: usize) {
    let path = app.dir.path().join("generated.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    chatsink::dumpgen::write_dump(&mut file, 7, "budget", sessions, 2_000).unwrap();
    drop(file);
    chatsink::ingest::ingest_file(app.archive.store(), &path, None, |_, _| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_heavy_searches_get_clear_answers_while_readiness_and_light_pages_keep_working() {
    let app = spawn_app_with(AppOptions::default().arg("--query-budget-ms", "100")).await;
    // PostgreSQL's GIN index answers this search faster than FTS5: twice the data there, so
    // every one of them runs past the budget.
    load_generated(&app, if on_postgres() { 100 } else { 50 }).await;
    // Four prefix terms (the most a search may hold) over every message, newest first: a
    // search that runs well past 150 ms here.
    let heavy = "/v1/stats?q=t*%20OR%20a*%20OR%20e*%20OR%20o*";
    // The same archive, served with a generous budget.
    let unbounded = spawn_app_with(
        AppOptions {
            dir: Some(app.dir.path().to_owned()),
            database: Some(app.db_path.clone()),
            ..Default::default()
        }
        .arg("--query-budget-ms", "600000"),
    )
    .await;
    let started = std::time::Instant::now();
    let full = unbounded.get(heavy).await;
    assert_eq!(full.status(), 200, "with a generous budget the search runs");
    let alone = started.elapsed();
    eprintln!("the heavy search without a budget: {alone:?}");
    assert!(
        alone > std::time::Duration::from_millis(150),
        "the heavy search must outlast the 100 ms budget for this test to mean anything: {alone:?}"
    );

    let mut heavy_requests = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = format!("{}{heavy}", app.address);
        heavy_requests.push(tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(READ_TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = if status == 200 {
                Value::Null
            } else {
                response.json().await.unwrap()
            };
            (status, retry_after, body)
        }));
    }
    // While they run: readiness and a light page answer, every time.
    for _ in 0..10 {
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
        let sessions = app.get("/v1/sessions?limit=1").await;
        assert_eq!(sessions.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut too_expensive = 0;
    for request in heavy_requests {
        let (status, retry_after, body) = request.await.unwrap();
        match status {
            400 => {
                assert_eq!(body["error"], "query_too_expensive", "{body}");
                assert_eq!(body["parameter"], "q", "{body}");
                assert!(
                    body["message"].as_str().unwrap().contains("100 ms"),
                    "{body}"
                );
                too_expensive += 1;
            }
            503 => {
                assert_eq!(body["error"], "busy", "{body}");
                assert!(retry_after, "a busy answer says when to retry");
            }
            other => panic!("a heavy search answered {other}: {body}"),
        }
    }
    assert!(
        too_expensive >= 4,
        "the searches that ran were stopped at the budget"
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn a_repeated_prefix_folds_and_too_many_terms_are_refused_naming_q() {
    let app = spawn_app().await;
    load_generated(&app, 2).await;
    let once: Value = app.get("/v1/messages?q=t*").await.json().await.unwrap();
    let sixty = vec!["t*"; 60].join("%20");
    let folded: Value = app
        .get(&format!("/v1/messages?q={sixty}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(once["messages"], folded["messages"]);
    assert!(!once["messages"].as_array().unwrap().is_empty());
    let many: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let response = app
        .get(&format!("/v1/messages?q={}", many.join("%20")))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["parameter"], "q", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("at most 32"),
        "{body}"
    );
    // A NUL no longer cuts the search short.
    let response = app.get("/v1/messages?q=roger%00zzzz").await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["parameter"], "q", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("U+0000"),
        "{body}"
    );
}
