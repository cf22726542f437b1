//! Receive: signatures, durability before 2xx, de-duplication, limits and errors.

use crate::helpers::*;
use chatsink::domain::JobKind;

fn other_event() -> Vec<u8> {
    br#"{"event":"meeting.started","meeting":{"id":"m-1","sessionId":"s-1","status":"LIVE"}}"#
        .to_vec()
}

async fn error_field(response: reqwest::Response) -> (u16, String, Option<String>) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["field"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn a_valid_rsa_delivery_is_stored_and_enqueues_one_job() {
    let app = spawn_app().await;
    let body = chat_synced("s-rsa", "http://127.0.0.1:1/never.csv");
    let response = app.post_rtk_with_id(&body, "uuid-1").await;
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["status"], "accepted");

    let stored = app.archive.deliveries();
    assert_eq!(stored.len(), 1);
    let (delivery_id, scheme, stored_body, sha) = (
        stored[0].delivery_id.clone().unwrap(),
        stored[0].scheme.clone(),
        stored[0].body.clone(),
        stored[0].body_sha256.clone(),
    );
    assert_eq!(
        (delivery_id.as_str(), scheme.as_str()),
        ("uuid-1", "rtk-rsa")
    );
    assert_eq!(stored_body, body, "the raw bytes are stored as received");
    assert_eq!(
        sha,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
    );
    assert_eq!(
        app.jobs_where(|j| j.session_id == "s-rsa" && j.kind == JobKind::Delivery),
        1
    );
    let session = app.archive.session("s-rsa").unwrap();
    let (title, organizer) = (session.title.unwrap(), session.organizer_name.unwrap());
    assert_eq!(
        (title.as_str(), organizer.as_str()),
        ("Weekly sync", "Example organization")
    );
}

#[tokio::test]
async fn legacy_dyte_signature_is_accepted() {
    let app = spawn_app().await;
    let body = chat_synced("s-dyte", "http://127.0.0.1:1/x.csv");
    let signature = rtk_sign(&rsa_keys().0, &body);
    let response = app
        .post_webhook(
            &body,
            &[("dyte-signature", signature), ("dyte-uuid", "d-1".into())],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.deliveries_where(|d| d.scheme == "dyte-rsa" && d.delivery_id.as_deref() == Some("d-1")),
        1
    );
}

#[tokio::test]
async fn a_valid_hmac_delivery_is_stored_and_a_rotated_secret_works() {
    let app = spawn_app_with(AppOptions::default().arg(
        "--hmac-secrets",
        &format!("{},{}", whsec(HMAC_KEY), whsec(HMAC_KEY_2)),
    ))
    .await;
    let first = app
        .post_hmac(
            &chat_synced("s-h1", "http://127.0.0.1:1/a.csv"),
            HMAC_KEY,
            now_secs(),
        )
        .await;
    assert_eq!(first.status(), 200);
    let second = app
        .post_hmac(
            &chat_synced("s-h2", "http://127.0.0.1:1/b.csv"),
            HMAC_KEY_2,
            now_secs(),
        )
        .await;
    assert_eq!(
        second.status(),
        200,
        "the second (rotated) secret verifies too"
    );
    assert_eq!(app.deliveries_where(|d| d.scheme == "hmac"), 2);
    assert_eq!(app.jobs_where(|_| true), 2);
}

#[tokio::test]
async fn hmac_timestamps_outside_five_minutes_are_rejected() {
    let app = spawn_app().await;
    for (offset, want) in [(-301, 401), (301, 401), (-299, 200), (299, 200)] {
        let body = chat_synced(&format!("s-ts{offset}"), "http://127.0.0.1:1/a.csv");
        let response = app.post_hmac(&body, HMAC_KEY, now_secs() + offset).await;
        assert_eq!(response.status().as_u16(), want, "offset {offset}");
    }
    assert_eq!(app.deliveries_where(|_| true), 2);
}

#[tokio::test]
async fn forged_or_missing_signatures_get_401_and_store_nothing() {
    let app = spawn_app().await;
    let body = chat_synced("s-bad", "http://127.0.0.1:1/a.csv");
    let good = rtk_sign(&rsa_keys().0, &body);
    // The same JSON re-serialised: keys reordered and whitespace changed.
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let mut reordered: Vec<(String, serde_json::Value)> =
        value.as_object().unwrap().clone().into_iter().collect();
    reordered.reverse();
    let reordered = format!(
        "{{{}}}",
        reordered
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut tampered = body.clone();
    let at = tampered.iter().position(|&b| b == b'W').unwrap();
    tampered[at] = b'w';

    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        (
            "tampered body",
            tampered,
            vec![("rtk-signature", good.clone())],
        ),
        (
            "pretty re-serialised body",
            pretty,
            vec![("rtk-signature", good.clone())],
        ),
        (
            "reordered keys",
            reordered.into_bytes(),
            vec![("rtk-signature", good.clone())],
        ),
        (
            "wrong key",
            body.clone(),
            vec![("rtk-signature", rtk_sign(&rsa_keys().1, &body))],
        ),
        (
            "truncated signature",
            body.clone(),
            vec![("rtk-signature", good[..good.len() / 2].to_owned())],
        ),
        (
            "empty signature",
            body.clone(),
            vec![("rtk-signature", String::new())],
        ),
        (
            "garbage signature",
            body.clone(),
            vec![("rtk-signature", "!!not base64!!".into())],
        ),
        ("missing header", body.clone(), vec![]),
        (
            "wrong hmac secret",
            body.clone(),
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-timestamp", now_secs().to_string()),
                (
                    "webhook-signature",
                    chatsink::webhook::sign_hmac(b"not-the-secret", "msg_x", now_secs(), &body),
                ),
            ],
        ),
    ];
    for (name, payload, headers) in cases {
        let response = app.post_webhook(&payload, &headers).await;
        let (status, code, _) = error_field(response).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            code == "invalid_signature" || code == "missing_signature",
            "{name}: {code}"
        );
    }
    assert_eq!(app.deliveries_where(|_| true), 0);
    assert_eq!(app.jobs_where(|_| true), 0);
}

#[tokio::test]
async fn sequential_duplicates_create_nothing_new() {
    let app = spawn_app().await;
    let body = chat_synced("s-dup", "http://127.0.0.1:1/a.csv");
    assert_eq!(app.post_rtk_with_id(&body, "same-id").await.status(), 200);
    // Same delivery id, and separately the same body under a new id (a retry that changed it).
    for response in [
        app.post_rtk_with_id(&body, "same-id").await,
        app.post_rtk_with_id(&body, "other-id").await,
    ] {
        assert_eq!(response.status(), 200);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["status"], "duplicate");
    }
    let other = chat_synced("s-dup-2", "http://127.0.0.1:1/a.csv");
    let json: serde_json::Value = app
        .post_rtk_with_id(&other, "same-id")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        json["status"], "duplicate",
        "a reused delivery id is a duplicate even with another body"
    );
    assert_eq!(app.deliveries_where(|_| true), 1);
    assert_eq!(app.jobs_where(|_| true), 1);
}

#[tokio::test]
async fn twenty_concurrent_copies_make_one_row_and_one_job() {
    let app = spawn_app().await;
    let body = chat_synced("s-race", "http://127.0.0.1:1/a.csv");
    let signature = rtk_sign(&rsa_keys().0, &body);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, body, signature) = (
            app.client.clone(),
            format!("{}/webhooks/realtimekit", app.address),
            body.clone(),
            signature.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("rtk-signature", signature)
                .header("rtk-uuid", "race-id")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let json: serde_json::Value = r.json().await.unwrap();
            (status, json["status"].as_str().unwrap().to_owned())
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        let (status, outcome) = task.await.unwrap();
        assert_eq!(status, 200);
        accepted += (outcome == "accepted") as usize;
    }
    assert_eq!(
        accepted, 1,
        "exactly one copy is accepted, the rest are duplicates"
    );
    assert_eq!(app.deliveries_where(|_| true), 1);
    assert_eq!(app.jobs_where(|_| true), 1);
}

#[tokio::test]
async fn other_event_types_are_recorded_without_a_job() {
    let app = spawn_app().await;
    let response = app.post_rtk(&other_event()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.deliveries_where(
            |d| d.event == "meeting.started" && d.session_id.as_deref() == Some("s-1")
        ),
        1
    );
    assert_eq!(app.jobs_where(|_| true), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let body = vec![b' '; 1024 * 1024 + 1];
    let signature = rtk_sign(&rsa_keys().0, &body);
    let (status, code, field) = error_field(
        app.post_webhook(&body, &[("rtk-signature", signature)])
            .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str(), field.as_deref()),
        (413, "body_too_large", Some("body"))
    );
    // Exactly at the limit passes the size check (and then fails as JSON, a 400).
    let body = vec![b' '; 1024 * 1024];
    let signature = rtk_sign(&rsa_keys().0, &body);
    assert_eq!(
        app.post_webhook(&body, &[("rtk-signature", signature)])
            .await
            .status(),
        400
    );
    assert_eq!(app.deliveries_where(|_| true), 0);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_too() {
    let app = spawn_app_with(AppOptions::default().arg("--max-body-bytes", "1000")).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'x'; 100])).collect();
    let response = app
        .client
        .post(format!("{}/webhooks/realtimekit", app.address))
        .header("rtk-signature", "AAAA")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn malformed_json_and_missing_fields_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases: Vec<(&[u8], &str)> = vec![
        (b"not json at all", "body"),
        (b"[1,2,3]", "body"),
        (br#"{"sessionId":"s"}"#, "event"),
        (
            br#"{"event":"meeting.chatSynced","chatDownloadUrl":"https://x.s3.amazonaws.com/a"}"#,
            "sessionId",
        ),
        (
            br#"{"event":"meeting.chatSynced","sessionId":"s"}"#,
            "chatDownloadUrl",
        ),
        (
            br#"{"event":"meeting.chatSynced","sessionId":"s","chatDownloadUrl":42}"#,
            "chatDownloadUrl",
        ),
        (
            br#"{"event":"meeting.chatSynced","sessionId":"","chatDownloadUrl":"https://a/b"}"#,
            "sessionId",
        ),
    ];
    for (body, field) in cases {
        let (status, code, named) = error_field(app.post_rtk(body).await).await;
        assert_eq!(
            (status, code.as_str(), named.as_deref()),
            (400, "invalid_event", Some(field)),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(app.deliveries_where(|_| true), 0);
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_a_healthy_service_without_a_token() {
    let app = spawn_app().await;
    for (path, status) in [("/healthz", "alive"), ("/readyz", "ready")] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], status);
    }
}

#[tokio::test]
async fn the_key_is_fetched_from_the_well_known_url_and_refetched_after_rotation() {
    let keys = FakeServer::start().await;
    let pem_json = |key: &rsa::RsaPrivateKey| {
        // RealtimeKit's answer carries the PEM with escaped newlines.
        let escaped = public_pem(key).replace('\n', "\\n");
        format!(r#"{{"success":true,"data":{{"publicKey":"{escaped}"}}}}"#).into_bytes()
    };
    keys.route(
        "/.well-known/webhooks.json",
        vec![
            Reply::Body(pem_json(&rsa_keys().0)),
            Reply::Body(pem_json(&rsa_keys().1)),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    let args = vec![
        "chatsink",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        db.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--read-tokens",
        READ_TOKEN,
    ];
    let url = keys.url("/.well-known/webhooks.json");
    let mut args: Vec<String> = args.into_iter().map(String::from).collect();
    args.extend(["--rtk-public-key-url".to_owned(), url]);
    let cli = <chatsink::config::Cli as clap::Parser>::try_parse_from(&args).unwrap();
    let chatsink::config::Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    let app = chatsink::startup::Application::build(serve.settings().unwrap())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let post = |key: &'static rsa::RsaPrivateKey, session: &str| {
        let body = chat_synced(session, "http://127.0.0.1:1/a.csv");
        let request = client
            .post(format!("{address}/webhooks/realtimekit"))
            .header("rtk-signature", rtk_sign(key, &body))
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(&rsa_keys().0, "s-k1").await, 200);
    // RealtimeKit rotated its key: the first failure triggers one re-fetch, which finds it.
    assert_eq!(post(&rsa_keys().1, "s-k2").await, 200);
    let fetches = keys.requests("/.well-known/webhooks.json");
    assert_eq!(fetches, 2);
    // A forged delivery does not make chatsink hammer the key endpoint (once a minute at most):
    // it cannot be re-checked against a key fetched after it arrived, so it is a 503 (never a
    // 2xx), and nothing is fetched.
    let forged = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let forged: &'static rsa::RsaPrivateKey = Box::leak(Box::new(forged));
    assert_eq!(post(forged, "s-k3").await, 503);
    assert_eq!(keys.requests("/.well-known/webhooks.json"), fetches);
}

/// The key rotated right after a forgery spent the re-fetch: the genuine delivery is a 503
/// with `Retry-After` (RealtimeKit retries a 5xx, never a 4xx) and is accepted on its retry
/// once the key could be fetched again; a forgery is never a 2xx, gets its 401 once the key
/// was re-checked after it arrived, and the key URL is fetched at most once an interval.
#[tokio::test]
async fn a_key_rotated_after_a_forgery_is_a_503_then_accepted_on_the_retry() {
    let keys = FakeServer::start().await;
    let path = "/.well-known/webhooks.json";
    let pem_json = |key: &rsa::RsaPrivateKey| {
        let escaped = public_pem(key).replace('\n', "\\n");
        format!(r#"{{"success":true,"data":{{"publicKey":"{escaped}"}}}}"#).into_bytes()
    };
    let (old_key, new_key) = (&rsa_keys().0, &rsa_keys().1);
    keys.route(path, vec![Reply::Body(pem_json(old_key))]);
    let interval = std::time::Duration::from_secs(2);
    let app = spawn_app_with(
        AppOptions::default()
            .arg("--rtk-public-key-url", &keys.url(path))
            .arg("--key-refetch-secs", "2"),
    )
    .await;
    let forged = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    let send = |key: &rsa::RsaPrivateKey, session: &str| {
        let body = chat_synced(session, "http://127.0.0.1:1/a.csv");
        let signature = rtk_sign(key, &body);
        let app = &app;
        async move {
            let response = app
                .post_webhook(&body, &[("rtk-signature", signature)])
                .await;
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        }
    };
    assert_eq!(send(old_key, "s-r1").await.0, 200);
    // The forgery spends the re-fetch: the key is unchanged, so it is refused for good.
    assert_eq!(send(&forged, "s-forged").await.0, 401);
    assert_eq!(keys.requests(path), 2);
    // RealtimeKit rotates its key now.
    keys.route(path, vec![Reply::Body(pem_json(new_key))]);
    let (status, retry_after, body) = send(new_key, "s-rotated").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "key_stale");
    assert_eq!(body["field"], "rtk-signature");
    let retry_after = retry_after.expect("a Retry-After");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Forgeries meanwhile: never a 2xx, and no fetch.
    assert_eq!(send(&forged, "s-forged-2").await.0, 503);
    assert_eq!(keys.requests(path), 2);
    // RealtimeKit's retry, after the wait it was told.
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(send(new_key, "s-rotated").await.0, 200);
    assert_eq!(
        app.deliveries_where(|d| d.session_id.as_deref() == Some("s-rotated")),
        1
    );
    assert_eq!(keys.requests(path), 3);
    // A forgery after the interval is re-checked and refused; the fetches were spaced.
    tokio::time::sleep(interval).await;
    assert_eq!(send(&forged, "s-forged-3").await.0, 401);
    assert_eq!(keys.requests(path), 4);
    let times = keys.request_times(path);
    for pair in times[1..].windows(2) {
        assert!(
            pair[1] - pair[0] >= interval - std::time::Duration::from_millis(50),
            "{times:?}"
        );
    }
}

/// Legacy `dyte-signature` deliveries verify with Dyte's key, not RealtimeKit's.
#[tokio::test]
async fn a_dyte_signature_is_verified_with_the_dyte_key() {
    let keys = FakeServer::start().await;
    let pem_json = |key: &rsa::RsaPrivateKey| {
        let escaped = public_pem(key).replace('\n', "\\n");
        format!(r#"{{"success":true,"data":{{"publicKey":"{escaped}"}}}}"#).into_bytes()
    };
    keys.route("/dyte.json", vec![Reply::Body(pem_json(&rsa_keys().1))]);
    let app =
        spawn_app_with(AppOptions::default().arg("--dyte-public-key-url", &keys.url("/dyte.json")))
            .await;
    let post = |key: &rsa::RsaPrivateKey, session: &str, header: &str| {
        let body = chat_synced(session, "http://127.0.0.1:1/a.csv");
        let signature = rtk_sign(key, &body);
        let app = &app;
        let header = header.to_owned();
        async move {
            app.post_webhook(&body, &[(header.as_str(), signature)])
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(&rsa_keys().1, "s-d1", "dyte-signature").await, 200);
    assert_eq!(post(&rsa_keys().1, "s-d2", "rtk-signature").await, 401);
    assert_eq!(post(&rsa_keys().0, "s-d3", "rtk-signature").await, 200);
    assert_eq!(keys.requests("/dyte.json"), 1);
}

#[tokio::test]
async fn an_unreachable_key_url_is_503_so_the_sender_retries() {
    let keys = FakeServer::start().await;
    keys.route(
        "/.well-known/webhooks.json",
        vec![Reply::Status(500, b"down".to_vec(), vec![])],
    );
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "chatsink".into(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database".into(),
        dir.path().join("k.db").display().to_string(),
        "--data-dir".into(),
        dir.path().display().to_string(),
        "--read-tokens".into(),
        READ_TOKEN.into(),
        "--rtk-public-key-url".into(),
        keys.url("/.well-known/webhooks.json"),
    ];
    let cli = <chatsink::config::Cli as clap::Parser>::try_parse_from(&args).unwrap();
    let chatsink::config::Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    let app = chatsink::startup::Application::build(serve.settings().unwrap())
        .await
        .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let body = chat_synced("s-k", "http://127.0.0.1:1/a.csv");
    let response = reqwest::Client::new()
        .post(format!("{address}/webhooks/realtimekit"))
        .header("rtk-signature", rtk_sign(&rsa_keys().0, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_signed_delivery_with_a_lone_surrogate_escape_is_accepted_and_loaded() {
    // JavaScript's JSON.stringify writes `\ud83d` for a title cut in the middle of an emoji;
    // RFC 8259 allows it. A 400 would never be retried and the chat would be lost.
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("s-surrogate", 3))]);
    let app = spawn_app().await;
    for (session, escape) in [("s-surrogate", r"\ud83d"), ("s-low", r"\udc00")] {
        let body = format!(
            r#"{{"event":"meeting.chatSynced","sessionId":"{session}","title":"Weekly {escape} sync","chatDownloadUrl":"{}"}}"#,
            storage.url("/d.csv")
        );
        let response = app.post_hmac(body.as_bytes(), HMAC_KEY, now_secs()).await;
        assert_eq!(response.status(), 200, "{escape}");
    }
    app.wait_for_jobs(std::time::Duration::from_secs(20)).await;
    let session: serde_json::Value = app
        .get("/v1/sessions/s-surrogate")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(session["title"], "Weekly \u{FFFD} sync", "{session}");
    assert_eq!(session["messageCounts"]["total"], 3, "{session}");
}

/// Sends raw bytes on one connection and reads until the server closes it or `responses`
/// responses have arrived (counted by status lines).
async fn raw_exchange(address: &str, requests: &[Vec<u8>]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = address.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut answers = String::new();
    for request in requests {
        let _ = socket.write_all(request).await;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let read = tokio::time::timeout_at(deadline, socket.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    answers.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if answers.ends_with('}') || answers.ends_with("}\n") {
                        break;
                    }
                }
            }
        }
    }
    answers
}

#[tokio::test]
async fn a_request_head_too_long_to_parse_is_answered_in_json() {
    let app = spawn_app().await;
    let long_target = format!(
        "GET /v1/messages?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw_exchange(&app.address, &[long_target.clone().into_bytes()]).await;
    assert!(
        answer.starts_with("HTTP/1.1 414 "),
        "{}",
        &answer[..answer.len().min(300)]
    );
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"], "uri_too_long");

    // The same after a normal request on a kept-alive connection.
    let normal = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let answer = raw_exchange(&app.address, &[normal, long_target.into_bytes()]).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(
        answer.contains("HTTP/1.1 414 "),
        "{}",
        &answer[..answer.len().min(600)]
    );

    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n",
        "b".repeat(100_000)
    );
    let answer = raw_exchange(&app.address, &[long_header.into_bytes()]).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "{}",
        &answer[..answer.len().min(300)]
    );
    assert!(
        answer.contains("\"error\":\"headers_too_large\""),
        "{answer}"
    );

    // A large body is a body, not a head: a 1 MB webhook still gets the signature's answer.
    let body = vec![b'x'; 900_000];
    let response = app.post_webhook(&body, &[]).await;
    assert_eq!(response.status(), 401);
}

/// `rtk-webhook-id` (the webhook configuration that sent a delivery) is recorded with it, cut at
/// 200 characters.
#[tokio::test]
async fn the_webhook_id_is_recorded_with_its_delivery() {
    let app = spawn_app().await;
    let body = chat_synced("s-webhook-id", "http://127.0.0.1:1/x.csv");
    let signature = rtk_sign(&rsa_keys().0, &body);
    let response = app
        .post_webhook(
            &body,
            &[
                ("rtk-signature", signature),
                ("rtk-webhook-id", format!("9f2a-config{}", "x".repeat(300))),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.deliveries_where(|d| d
            .webhook_id
            .as_deref()
            .is_some_and(|id| id.starts_with("9f2a-config") && id.chars().count() == 200)),
        1
    );
}
