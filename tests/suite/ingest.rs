//! Ingest: from a signed delivery to rows in SQLite, through every failure on the way.

use crate::helpers::*;
use chatsink::domain::JobState;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// A message as the test writes it into a dump, and expects it back from the database.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    id: String,
    user: String,
    display_name: String,
    pinned: bool,
    edited: bool,
    payload_type: String,
    payload: String,
    created_raw: String,
    // What the archive must make of it:
    kind: String,
    text: Option<String>,
    link: Option<String>,
    file_name: Option<String>,
    file_size: Option<i64>,
    created_at: String,
}

fn expected_rows(session: &str) -> Vec<Expected> {
    let row = |id: &str,
               user: &str,
               name: &str,
               pinned: bool,
               edited: bool,
               ptype: &str,
               payload: &str,
               created: &str| Expected {
        id: id.into(),
        user: user.into(),
        display_name: name.into(),
        pinned,
        edited,
        payload_type: ptype.into(),
        payload: payload.into(),
        created_raw: created.into(),
        kind: String::new(),
        text: None,
        link: None,
        file_name: None,
        file_size: None,
        created_at: String::new(),
    };
    let mut rows = vec![
        row(
            "m1",
            "u-ann",
            "Ann, \"the\" host",
            true,
            false,
            "TEXT_MESSAGE",
            "Hello, \"world\"\r\nsecond line",
            "2026-06-03T10:00:01.000Z",
        ),
        row(
            "m2",
            "u-bo",
            "Bo 李",
            false,
            true,
            "TEXT_MESSAGE",
            "emoji 🎉👩‍👩‍👧 CJK 你好 RTL שלום مرحبا",
            "2026-06-03 10:00:02.123456Z",
        ),
        row(
            "m3",
            "u-ann",
            "Ann",
            false,
            false,
            "IMAGE_MESSAGE",
            "https://cdn.example/img.png",
            "1780480803000",
        ),
        row(
            "m4",
            "u-cy",
            "Cy",
            true,
            true,
            "FILE_MESSAGE",
            r#"{"link":"https://cdn.example/f.pdf","name":"report, final.pdf","size":12345}"#,
            "1780480804",
        ),
        row(
            "m5",
            "u-cy",
            "Cy",
            false,
            false,
            "FILE_MESSAGE",
            "not json at all",
            "2026-06-03T12:00:05+02:00",
        ),
        row(
            "m6",
            "u-bo",
            "Bo",
            false,
            false,
            "POLL_MESSAGE",
            "{\"q\":\"lunch?\"}",
            "2026-06-03T10:00:06Z",
        ),
        row(
            "m7",
            "u-ann",
            "Ann",
            false,
            false,
            "TEXT_MESSAGE",
            "=HYPERLINK(\"http://evil\")",
            "2026-06-03T10:00:07.000Z",
        ),
    ];
    let times = [
        "2026-06-03T10:00:01.000Z",
        "2026-06-03T10:00:02.123Z",
        "2026-06-03T10:00:03.000Z",
        "2026-06-03T10:00:04.000Z",
        "2026-06-03T10:00:05.000Z",
        "2026-06-03T10:00:06.000Z",
        "2026-06-03T10:00:07.000Z",
    ];
    for (r, t) in rows.iter_mut().zip(times) {
        r.created_at = t.into();
        r.kind = match r.payload_type.as_str() {
            "TEXT_MESSAGE" => "text",
            "IMAGE_MESSAGE" => "image",
            "FILE_MESSAGE" => "file",
            other => other,
        }
        .into();
        match r.kind.as_str() {
            "text" => r.text = Some(r.payload.clone()),
            "image" => r.link = Some(r.payload.clone()),
            _ => {}
        }
    }
    rows[3].link = Some("https://cdn.example/f.pdf".into());
    rows[3].file_name = Some("report, final.pdf".into());
    rows[3].file_size = Some(12345);
    let _ = session;
    rows
}

/// Writes the rows as a dump with a BOM, shuffled columns and an extra column.
fn tricky_dump(session: &str, rows: &[Expected]) -> Vec<u8> {
    let mut out = "\u{feff}createdAt,payload,extraColumn,id,payloadType,isEdited,pinned,displayName,meetingId,sessionId,participantId\r\n".to_owned();
    for r in rows {
        let bool_text = |b: bool, upper: bool| match (b, upper) {
            (true, false) => "true",
            (false, false) => "false",
            (true, true) => "TRUE",
            (false, true) => "",
        };
        out.push_str(&csv_row(&[
            &r.created_raw,
            &r.payload,
            "ignored",
            &r.id,
            &r.payload_type,
            bool_text(r.edited, r.id == "m4" || r.id == "m2"),
            if r.pinned { "1" } else { "0" },
            &r.display_name,
            "meeting-1",
            session,
            &r.user,
        ]));
    }
    out.into_bytes()
}

fn stored_rows(app: &TestApp, session: &str) -> Vec<Expected> {
    let mut rows = app.archive.messages_of(session);
    rows.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    rows.into_iter()
        .map(|m| Expected {
            // The archive keeps the time as epoch milliseconds; the API formats it like this.
            created_at: m.created_at(),
            id: m.id,
            user: m.user_id,
            display_name: m.display_name,
            pinned: m.pinned,
            edited: m.edited,
            payload_type: String::new(),
            payload: m.payload,
            created_raw: String::new(),
            kind: m.kind,
            text: m.text,
            link: m.link,
            file_name: m.file_name,
            file_size: m.file_size,
        })
        .collect()
}

fn strip_raw(rows: &[Expected]) -> Vec<Expected> {
    rows.iter()
        .map(|r| Expected {
            payload_type: String::new(),
            created_raw: String::new(),
            ..r.clone()
        })
        .collect()
}

#[tokio::test]
async fn a_signed_delivery_becomes_rows_with_every_field_right() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    let rows = expected_rows("s-fields");
    storage.route(
        "/dump.csv",
        vec![Reply::Body(tricky_dump("s-fields", &rows))],
    );
    assert_eq!(
        app.post_rtk(&chat_synced("s-fields", &storage.url("/dump.csv")))
            .await
            .status(),
        200
    );
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1, "done", "{jobs:?}");

    assert_eq!(stored_rows(&app, "s-fields"), strip_raw(&rows));
    let session = app.archive.session("s-fields").unwrap();
    let (status, count, text, image, file, other, pinned, rejected) = (
        session.status,
        session.message_count,
        session.text_count,
        session.image_count,
        session.file_count,
        session.other_count,
        session.pinned_count,
        session.rejected_count,
    );
    let count_kind = |k: &str| rows.iter().filter(|r| r.kind == k).count() as i64;
    assert_eq!(status, "loaded");
    assert_eq!(count, rows.len() as i64);
    assert_eq!(
        (text, image, file, other),
        (
            count_kind("text"),
            count_kind("image"),
            count_kind("file"),
            count_kind("POLL_MESSAGE")
        )
    );
    assert_eq!(pinned, rows.iter().filter(|r| r.pinned).count() as i64);
    assert_eq!(rejected, 0);
    let job = app.only_job();
    let (loaded, job_rejected) = (job.rows_loaded.unwrap(), job.rows_rejected.unwrap());
    assert_eq!((loaded, job_rejected), (rows.len() as i64, 0));
    // The raw dump is kept in the dump store (by default `dumps` under the data dir), named by
    // session and content hash.
    let dump_path = app.archive.dump("s-fields").unwrap().key.unwrap();
    assert!(dump_path.starts_with("s-fields/"), "{dump_path}");
    let stored = std::fs::read(app.data_dir.join("dumps").join(&dump_path)).unwrap();
    assert_eq!(stored, tricky_dump("s-fields", &rows));
    assert!(dump_path.ends_with(&format!(
        "{}.csv",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored))
    )));
}

#[tokio::test]
async fn bad_rows_are_rejected_and_counted_while_the_rest_load() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    let mut dump = simple_dump("s-rej", 5);
    dump.extend_from_slice(b"bad1,u,s-rej,m,A,perhaps,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\r\n");
    dump.extend_from_slice(b"bad2,u,s-rej,m,A,0,0,TEXT_MESSAGE,x,yesterday\r\n");
    dump.extend_from_slice(b"bad3,u,s-rej\r\n");
    dump.extend_from_slice(b"bad4,u,s-rej,m,A\xfe,0,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\r\n");
    dump.extend_from_slice(b",u,s-rej,m,A,0,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\r\n");
    storage.route("/d.csv", vec![Reply::Body(dump)]);
    app.post_rtk(&chat_synced("s-rej", &storage.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done");
    assert_eq!(app.messages_in("s-rej"), 5);
    assert_eq!(app.only_job().rows_rejected.unwrap_or(0), 5);
    assert_eq!(app.archive.session("s-rej").unwrap().rejected_count, 5);
    let rejected = app.rejected_rows();
    assert_eq!(
        rejected,
        vec![
            (7, "bad boolean in pinned: 'perhaps'".to_owned()),
            (8, "bad time in createdAt: 'yesterday'".to_owned()),
            (9, "expected 10 fields, found 3".to_owned()),
            (10, "invalid UTF-8 in column displayName".to_owned()),
            (11, "empty id".to_owned()),
        ]
    );
    let raw = app
        .archive
        .rejected("s-rej")
        .into_iter()
        .find(|r| r.line == 10)
        .unwrap()
        .raw;
    assert!(
        raw.windows(2).any(|w| w == b"A\xfe"),
        "raw bytes keep the invalid byte"
    );
}

#[tokio::test]
async fn storage_500_then_200_is_retried_and_loaded_once() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    storage.route(
        "/d.csv",
        vec![
            Reply::Status(500, b"oops".to_vec(), vec![]),
            Reply::Body(simple_dump("s-500", 20)),
        ],
    );
    app.post_rtk(&chat_synced("s-500", &storage.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert_eq!(i64::from(app.only_job().attempts), 2);
    assert_eq!(storage.requests("/d.csv"), 2);
    assert_eq!(app.message_count(), 20);
}

#[tokio::test]
async fn a_connection_reset_mid_body_is_retried_without_partial_rows() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    let dump = simple_dump("s-reset", 200);
    storage.route(
        "/d.csv",
        vec![
            Reply::CutShort {
                body: dump[..dump.len() / 2].to_vec(),
                declared: dump.len(),
            },
            Reply::Body(dump.clone()),
        ],
    );
    app.post_rtk(&chat_synced("s-reset", &storage.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert_eq!(i64::from(app.only_job().attempts), 2);
    assert_eq!(app.message_count(), 200);
    // Only the complete dump was kept; the partial one left nothing in the data dir.
    let tmp = std::fs::read_dir(app.data_dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0);
}

fn api_args(api: &FakeServer) -> AppOptions {
    AppOptions::default()
        .arg("--rtk-api-base", &api.url("/client/v4"))
        .arg("--rtk-account-id", "acc")
        .arg("--rtk-app-id", "app")
        .arg("--rtk-api-token", "cf-token")
}

const REPLAY_PATH: &str = "/client/v4/accounts/acc/realtime/kit/app/sessions/SESSION/chat";

fn replay_answer(url: &str) -> Reply {
    Reply::Body(
        serde_json::to_vec(&serde_json::json!({"success": true, "data": {"chat_download_url": url, "chat_download_url_expiry": "2099-01-01T00:00:00.000Z"}}))
            .unwrap(),
    )
}

#[tokio::test]
async fn an_expired_url_is_refreshed_through_the_chat_replay_api() {
    let server = FakeServer::start().await;
    let app = spawn_app_with(api_args(&server)).await;
    server.route(
        &REPLAY_PATH.replace("SESSION", "s-exp"),
        vec![replay_answer(&server.url("/fresh.csv"))],
    );
    server.route("/fresh.csv", vec![Reply::Body(simple_dump("s-exp", 3))]);
    let mut body: serde_json::Value =
        serde_json::from_slice(&chat_synced("s-exp", &server.url("/stale.csv"))).unwrap();
    body["chatDownloadUrlExpiry"] = "2022-12-13 07:08:39.051621Z".into();
    app.post_rtk(&serde_json::to_vec(&body).unwrap()).await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert_eq!(
        server.requests("/stale.csv"),
        0,
        "an expired link is not even tried"
    );
    assert_eq!(
        server
            .authorization(&REPLAY_PATH.replace("SESSION", "s-exp"))
            .as_deref(),
        Some("Bearer cf-token")
    );
    assert_eq!(app.message_count(), 3);
}

#[tokio::test]
async fn a_403_is_refreshed_and_a_429_waits_as_told() {
    let server = FakeServer::start().await;
    let app = spawn_app_with(api_args(&server)).await;
    let replay = REPLAY_PATH.replace("SESSION", "s-403");
    server.route(
        &replay,
        vec![
            Reply::Status(
                429,
                b"{}".to_vec(),
                vec![("Retry-After".into(), "2".into())],
            ),
            replay_answer(&server.url("/fresh.csv")),
        ],
    );
    server.route(
        "/old.csv",
        vec![Reply::Status(
            403,
            b"<Error>AccessDenied</Error>".to_vec(),
            vec![],
        )],
    );
    server.route("/fresh.csv", vec![Reply::Body(simple_dump("s-403", 4))]);
    app.post_rtk(&chat_synced("s-403", &server.url("/old.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert_eq!(server.requests(&replay), 2);
    // The retry came no sooner than Retry-After said (the backoff alone is 50 ms here).
    let times = server.request_times(&replay);
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}"
    );
    assert_eq!(app.message_count(), 4);
}

#[tokio::test]
async fn a_403_without_credentials_is_dead_with_a_clear_error() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    storage.route(
        "/d.csv",
        vec![Reply::Status(403, b"denied".to_vec(), vec![])],
    );
    app.post_rtk(&chat_synced("s-nocred", &storage.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    let (_, state, error) = &jobs[0];
    assert_eq!(state, "dead");
    let error = error.as_deref().unwrap();
    assert!(
        error.contains("403") && error.contains("CHATSINK_RTK_API_TOKEN"),
        "{error}"
    );
    assert_eq!(
        i64::from(app.only_job().attempts),
        1,
        "no pointless retries"
    );
    assert_eq!(
        app.archive
            .sessions()
            .iter()
            .filter(|s| s.status == "dead")
            .count() as i64,
        1
    );
}

#[tokio::test]
async fn refused_urls_make_no_connection() {
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("x", 1))]);
    // Loopback is allowed only on some other port: this listener's port is not on the list.
    let app =
        spawn_app_with(AppOptions::default().allow_hosts("*.amazonaws.com,127.0.0.1:1")).await;
    let cases = [
        (
            "s-host",
            "https://evil.example.com/d.csv".to_owned(),
            "not in CHATSINK_DOWNLOAD_ALLOW_HOSTS",
        ),
        (
            "s-loop",
            storage.url("/d.csv"),
            "not in CHATSINK_DOWNLOAD_ALLOW_HOSTS",
        ),
        (
            "s-meta",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "not in CHATSINK_DOWNLOAD_ALLOW_HOSTS",
        ),
        (
            "s-ftp",
            "ftp://bucket.s3.amazonaws.com/d.csv".to_owned(),
            "scheme",
        ),
        (
            "s-localhost",
            format!("http://localhost:{}/d.csv", storage.addr.port()),
            "not in CHATSINK_DOWNLOAD_ALLOW_HOSTS",
        ),
    ];
    for (session, url, _) in &cases {
        app.post_rtk(&chat_synced(session, url)).await;
    }
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs.len(), cases.len());
    for ((_, state, error), (session, _, reason)) in jobs.iter().zip(&cases) {
        assert_eq!(state, "dead", "{session}");
        assert!(
            error.as_deref().unwrap().contains(reason),
            "{session}: {error:?}"
        );
    }
    assert_eq!(storage.connections(), 0, "the listener saw nothing");
    // Every one of them was tried once: a refusal is not retried.
    assert_eq!(
        app.jobs_where(|j| j.state == JobState::Dead && j.attempts == 1),
        cases.len() as i64
    );
    assert_eq!(app.jobs_where(|j| j.attempts != 1), 0);
}

#[tokio::test]
async fn metadata_and_names_resolving_to_loopback_are_refused_even_when_listed() {
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("x", 1))]);
    let port = storage.addr.port();
    let app = spawn_app_with(
        AppOptions::default().allow_hosts(&format!("169.254.169.254,localhost:{port}")),
    )
    .await;
    app.post_rtk(&chat_synced(
        "s-meta",
        "http://169.254.169.254/latest/meta-data/",
    ))
    .await;
    app.post_rtk(&chat_synced(
        "s-name",
        &format!("http://localhost:{port}/d.csv"),
    ))
    .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "dead");
    assert!(
        jobs[0].2.as_deref().unwrap().contains("cloud metadata"),
        "{jobs:?}"
    );
    assert_eq!(jobs[1].1, "dead");
    assert!(
        jobs[1].2.as_deref().unwrap().contains("loopback"),
        "{jobs:?}"
    );
    assert_eq!(storage.connections(), 0);
}

#[tokio::test]
async fn an_ip_entrys_port_holds_for_names_that_resolve_to_it() {
    // Allowed: 127.0.0.1 on the `allowed` port, and the name localhost. The dump is served on
    // another port; neither localhost:OTHER nor a redirect from the allowed port to it may reach it.
    let allowed = FakeServer::start().await;
    let other = FakeServer::start().await;
    other.route("/d.csv", vec![Reply::Body(simple_dump("s-name", 1))]);
    let via_name = format!("http://localhost:{}/d.csv", other.addr.port());
    allowed.route("/r.csv", vec![Reply::Redirect(via_name.clone())]);
    let app = spawn_app_with(
        AppOptions::default().allow_hosts(&format!("127.0.0.1:{},localhost", allowed.addr.port())),
    )
    .await;
    app.post_rtk(&chat_synced("s-name", &via_name)).await;
    app.post_rtk(&chat_synced("s-redirect", &allowed.url("/r.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs.len(), 2);
    for (_, state, error) in &jobs {
        assert_eq!(state, "dead", "{jobs:?}");
        assert!(error.as_deref().unwrap().contains("loopback"), "{jobs:?}");
    }
    assert_eq!(other.connections(), 0, "the other port saw nothing");
}

#[tokio::test]
async fn a_redirect_outside_the_allow_list_is_refused() {
    let allowed = FakeServer::start().await;
    let elsewhere = FakeServer::start().await;
    elsewhere.route("/d.csv", vec![Reply::Body(simple_dump("s-redir", 1))]);
    allowed.route("/d.csv", vec![Reply::Redirect(elsewhere.url("/d.csv"))]);
    let app = spawn_app_with(
        AppOptions::default().allow_hosts(&format!("127.0.0.1:{}", allowed.addr.port())),
    )
    .await;
    app.post_rtk(&chat_synced("s-redir", &allowed.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "dead", "{jobs:?}");
    assert!(jobs[0]
        .2
        .as_deref()
        .unwrap()
        .contains("not in CHATSINK_DOWNLOAD_ALLOW_HOSTS"));
    assert_eq!(elsewhere.connections(), 0);
}

#[tokio::test]
async fn a_file_over_the_cap_is_stopped_early_even_when_gzipped() {
    let storage = FakeServer::start().await;
    let app = spawn_app_with(AppOptions::default().arg("--download-max-bytes", "10000")).await;
    let big = simple_dump("s-big", 2000);
    assert!(big.len() > 50_000);
    let encoded = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&simple_dump("s-gz", 5000)).unwrap();
        e.finish().unwrap().len()
    };
    assert!(
        encoded > 40_000,
        "the gzipped dump is {encoded} bytes: large enough to cut short"
    );
    storage.route(
        "/plain.csv",
        vec![Reply::Slow {
            body: big.clone(),
            chunk: 4096,
            pause: Duration::from_millis(20),
        }],
    );
    // Compressed, 5,000 rows are ~20 times the cap decoded; sent 512 encoded bytes at a time.
    storage.route(
        "/gz.csv",
        vec![Reply::SlowGzip {
            body: simple_dump("s-gz", 5000),
            chunk: 512,
            pause: Duration::from_millis(10),
        }],
    );
    storage.route("/small.csv", vec![Reply::Gzip(simple_dump("s-small", 10))]);
    app.post_rtk(&chat_synced("s-big", &storage.url("/plain.csv")))
        .await;
    app.post_rtk(&chat_synced("s-gz", &storage.url("/gz.csv")))
        .await;
    app.post_rtk(&chat_synced("s-small", &storage.url("/small.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    for (_, state, error) in &jobs[..2] {
        assert_eq!(state, "dead");
        assert!(
            error.as_deref().unwrap().contains("10000-byte cap"),
            "{error:?}"
        );
    }
    assert_eq!(jobs[2].1, "done", "a small gzipped dump loads");
    assert_eq!(app.message_count(), 10);
    // Stopped early: the plain file by its Content-Length before any body byte was read, the
    // gzipped one soon after its decoded size passed the cap.
    assert!(
        storage.bytes_sent("/plain.csv") <= 2 * 4096,
        "{} of {} bytes sent",
        storage.bytes_sent("/plain.csv"),
        big.len()
    );
    let gz_sent = storage.bytes_sent("/gz.csv");
    assert!(
        gz_sent < 8 * 1024,
        "{gz_sent} encoded bytes sent before the cap stopped it"
    );
}

#[tokio::test]
async fn a_job_whose_worker_died_is_claimed_again_and_completes_once() {
    // Writes below the store (or reads its query plans): SQLite's own storage.
    if sqlite_only("a_job_whose_worker_died_is_claimed_again_and_completes_once") {
        return;
    }
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("s-lease", 30))]);
    let app = spawn_app_with(AppOptions::default().arg("--workers", "1")).await;
    // A job left `running` by a killed process (written below the store, as the dead process
    // left it): its lease expired a second ago.
    let body = chat_synced("s-lease", &storage.url("/d.csv"));
    app.sqlite().unwrap()
        .execute_batch(&format!(
            "INSERT INTO inbox (delivery_id, body_sha256, scheme, event, session_id, body, received_at, received_ms)
               VALUES ('dead-worker', 'abc', 'rtk-rsa', 'meeting.chatSynced', 's-lease', x'{}', '2026-01-01T00:00:00.000Z', 0);
             INSERT INTO jobs (kind, inbox_id, session_id, download_url, state, attempts, next_attempt_ms, claimed_until_ms,
                               lease_token, created_ms, updated_ms)
               VALUES ('delivery', 1, 's-lease', '{}', 'running', 1, 0, {}, 'old-token', 0, 0);",
            hex::encode(&body),
            storage.url("/d.csv"),
            chrono::Utc::now().timestamp_millis() - 1000
        ))
        .unwrap();
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs[0].1, "done");
    assert_eq!(i64::from(app.only_job().attempts), 2);
    assert_eq!(app.message_count(), 30);
    // The dead worker's late finish cannot overwrite the newer claim.
    let stale = chatsink::domain::ClaimedJob {
        id: jobs[0].0,
        kind: chatsink::domain::JobKind::Delivery,
        session_id: chatsink::domain::SessionId::parse("s-lease").unwrap(),
        download_url: None,
        download_expiry_ms: None,
        attempt: 1,
        lease_token: "old-token".into(),
    };
    let store = chatsink::store::Store::open(&app.db_path).unwrap();
    let late = store
        .load_job(&stale, Vec::new().into_iter(), stale_dump())
        .await
        .unwrap();
    assert!(
        matches!(late, chatsink::store::JobLoad::LeaseLost),
        "{late:?}"
    );
    assert_eq!(app.only_job().rows_loaded.unwrap_or(0), 30);
}

#[tokio::test]
async fn a_late_finish_after_the_lease_passed_to_another_worker_changes_nothing() {
    let app = spawn_app_with(AppOptions::default().arg("--workers", "1")).await;
    // No server: the app's worker cannot finish it; we play two workers by hand.
    app.server.abort();
    let dir = tempfile::tempdir().unwrap();
    let store = chatsink::store::Store::open(&dir.path().join("lease.db")).unwrap();
    store.enqueue_reprocess(vec!["s".into()]).await.unwrap();
    let (one, two) = (
        store.register_owner("test").await.unwrap(),
        store.register_owner("test").await.unwrap(),
    );
    let stale = Duration::from_secs(60);
    let first = store
        .claim_job(&one, Duration::from_millis(1), stale, None, true)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = store
        .claim_job(&two, Duration::from_secs(60), stale, None, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, second.id);
    assert_ne!(first.lease_token, second.lease_token);
    let late = store
        .load_job(&first, Vec::new().into_iter(), stale_dump())
        .await
        .unwrap();
    assert!(
        matches!(late, chatsink::store::JobLoad::LeaseLost),
        "late finish refused: {late:?}"
    );
    assert_eq!(store.fail_job(&first, "late", None).await.unwrap(), None);
    let done = store
        .load_job(&second, Vec::new().into_iter(), stale_dump())
        .await
        .unwrap();
    assert!(
        matches!(done, chatsink::store::JobLoad::Loaded(_)),
        "{done:?}"
    );
}

/// A dump record for loads that only test the lease.
fn stale_dump() -> chatsink::domain::SessionDump {
    chatsink::domain::SessionDump {
        key: None,
        sha256: "0".repeat(64),
    }
}

#[tokio::test]
async fn loading_the_same_session_twice_leaves_identical_rows() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("s-twice", 50))]);
    let snapshot = |app: &TestApp| -> Vec<(i64, String, Option<String>)> {
        let mut rows: Vec<_> = app
            .archive
            .all_messages()
            .into_iter()
            .map(|m| (m.seq, m.id, m.text))
            .collect();
        rows.sort();
        rows
    };
    app.post_rtk(&chat_synced("s-twice", &storage.url("/d.csv")))
        .await;
    app.wait_for_jobs(WAIT).await;
    let first = snapshot(&app);
    // A second sync for the same session (a new delivery with a different body).
    let mut body: serde_json::Value =
        serde_json::from_slice(&chat_synced("s-twice", &storage.url("/d.csv"))).unwrap();
    body["title"] = "Renamed".into();
    app.post_rtk(&serde_json::to_vec(&body).unwrap()).await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert_eq!(jobs.iter().filter(|j| j.1 == "done").count(), 2);
    assert_eq!(first.len(), 50);
    assert_eq!(
        snapshot(&app),
        first,
        "same rows, same seq: nothing changed"
    );
    assert_eq!(app.archive.search("comma").len() as i64, 50);
}

#[tokio::test]
async fn a_newer_dump_updates_edits_and_removes_deleted_messages() {
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    storage.route("/v1.csv", vec![Reply::Body(simple_dump("s-edit", 10))]);
    app.post_rtk(&chat_synced("s-edit", &storage.url("/v1.csv")))
        .await;
    app.wait_for_jobs(WAIT).await;
    let message = |id: &str| {
        app.archive
            .all_messages()
            .into_iter()
            .find(|m| m.id == id)
            .unwrap()
    };
    let seq_of_m1 = message("s-edit-m1").seq;
    // v2: m0 deleted, m1 edited, the rest unchanged.
    let v2 = String::from_utf8(simple_dump("s-edit", 10)).unwrap();
    let v2: Vec<&str> = v2.split("\r\n").collect();
    let mut lines = vec![v2[0].to_owned()];
    lines.push(
        v2[2]
            .replace("message 1, with a comma", "edited text")
            .replace(",false,false,", ",false,true,"),
    );
    lines.extend(v2[3..].iter().map(|s| s.to_string()));
    storage.route(
        "/v2.csv",
        vec![Reply::Body(lines.join("\r\n").into_bytes())],
    );
    app.post_rtk(&chat_synced("s-edit", &storage.url("/v2.csv")))
        .await;
    let jobs = app.wait_for_jobs(WAIT).await;
    assert!(jobs.iter().all(|j| j.1 == "done"), "{jobs:?}");
    assert_eq!(app.messages_in("s-edit"), 9);
    assert_eq!(
        app.archive
            .all_messages()
            .iter()
            .filter(|m| m.id == "s-edit-m0")
            .count() as i64,
        0
    );
    let m1 = message("s-edit-m1");
    assert_eq!(
        (m1.seq, m1.text.as_deref(), m1.edited),
        (seq_of_m1, Some("edited text"), true)
    );
    assert_eq!(app.archive.search("edited").len() as i64, 1);
    // The deleted and the edited message's old words are gone from the index.
    assert_eq!(app.archive.search("comma").len() as i64, 8);
    // FTS5's own check, comparing the index with the messages table (SQLite's index).
    if let Some(db) = app.sqlite() {
        db.execute(
            "INSERT INTO messages_fts (messages_fts, rank) VALUES ('integrity-check', 1)",
            [],
        )
        .expect("full-text index matches the messages");
    }
    assert_eq!(app.archive.session("s-edit").unwrap().message_count, 9);
}

#[tokio::test]
async fn a_presigned_urls_query_never_reaches_the_job_record() {
    // Port 1 refuses the connection: a network error, whose text names the URL.
    let app = spawn_app().await;
    app.post_rtk(&chat_synced(
        "s-signed",
        "http://127.0.0.1:1/d.csv?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=deadbeefcafe",
    ))
    .await;
    let error = loop {
        if let Some((_, _, Some(error))) = app.jobs().into_iter().next() {
            break error;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(error.contains("127.0.0.1:1/d.csv"), "{error}");
    assert!(!error.contains("deadbeefcafe"), "{error}");
    assert!(!error.contains("AKIDEXAMPLE"), "{error}");
}
