//! Operations: readiness, metrics, the config file and `config check`, online backup, the
//! newcomer's commands (`demo`, `send-test-webhook`, `probe`) and graceful shutdown.

use crate::helpers::*;
use crate::site::Site;
use chatsink::domain::JobState;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn chatsink(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatsink"));
    command.args(args).env("RUST_LOG", "warn");
    for var in std::env::vars().map(|(k, _)| k) {
        if var.starts_with("CHATSINK_") {
            command.env_remove(var);
        }
    }
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().expect("binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The value of one Prometheus sample (summing nothing: the exact line).
fn sample(metrics: &str, line_prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_failures_jobs_rows_and_queries() {
    // The real binary, so the counts are this test's alone (in-process apps share one
    // recorder with every test running in parallel): every figure is exact.
    let site = Site::new();
    let served = site.start("").await;
    let server = FakeServer::start().await;
    server.route("/m.csv", vec![Reply::Body(simple_dump("metrics-1", 25))]);
    let body = chat_synced("metrics-1", &server.url("/m.csv"));
    assert_eq!(served.post(&body, "metrics-1").await.unwrap().status(), 200);
    let refused = served
        .sender()
        .post_signed_by(&rsa_keys().1, &body, "metrics-forged")
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    site.wait_until_settled().await;
    assert_eq!(
        served.get("/v1/messages?session=metrics-1").await.status(),
        200
    );
    let after = served.get("/metrics").await.text().await.unwrap();
    for (line, value) in [
        (
            r#"chatsink_deliveries_total{result="accepted",scheme="rtk-rsa"}"#,
            1.0,
        ),
        (
            r#"chatsink_signature_failures_total{header="rtk-signature"}"#,
            1.0,
        ),
        ("chatsink_rows_loaded_total", 25.0),
        (r#"chatsink_jobs{state="done"}"#, 1.0),
        (
            r#"chatsink_job_attempts_total{kind="delivery",outcome="done"}"#,
            1.0,
        ),
        (
            r#"chatsink_query_seconds_count{route="/v1/messages",status="2xx"}"#,
            1.0,
        ),
        (
            "chatsink_download_bytes_total",
            simple_dump("metrics-1", 25).len() as f64,
        ),
    ] {
        assert_eq!(sample(&after, line), value, "{line}:\n{after}");
    }
    for name in [
        "chatsink_queue_lag_seconds",
        "chatsink_download_seconds_bucket",
        "# HELP chatsink_deliveries_total",
    ] {
        assert!(after.contains(name), "/metrics lacks {name}");
    }
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_on_a_backlog_over_the_limit_and_names_it() {
    // One worker, stuck on a download that trickles: the other deliveries pile up.
    let app = spawn_app_with(
        AppOptions::default()
            .arg("--workers", "1")
            .arg("--ready-max-backlog", "1"),
    )
    .await;
    let server = FakeServer::start().await;
    server.route(
        "/stuck.csv",
        vec![Reply::Slow {
            body: simple_dump("backlog-0", 500),
            chunk: 64,
            pause: Duration::from_millis(200),
        }],
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
    for n in 0..3 {
        let body = chat_synced(&format!("backlog-{n}"), &server.url("/stuck.csv"));
        assert_eq!(app.post_rtk(&body).await.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.jobs_where(|j| j.state == JobState::Running) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["failing"]["backlog"]
            .as_str()
            .is_some_and(|s| s.starts_with("2 jobs due")),
        "{body}"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[test]
fn the_config_file_fills_in_under_env_and_flags_and_check_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chatsink.toml");
    let secret = whsec(HMAC_KEY);
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:9301\"\nworkers = 5\nhmac_secrets = [\"{secret}\"]\nread_tokens = [\"{READ_TOKEN}\"]\ndownload_allow_hosts = [\"*.example.com\", \"127.0.0.1\"]\n"
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();

    let from_file = chatsink(&["config", "check", "--config", config], &[]);
    let out = text(&from_file);
    assert!(from_file.status.success(), "{out}");
    let file = |key: &str| format!("[{key} in {config}]");
    for expected in [
        format!("127.0.0.1:9301  {}", file("listen")),
        format!("5  {}", file("workers")),
        format!("1 secret (redacted)  {}", file("hmac_secrets")),
        format!("1 token (redacted)  {}", file("read_tokens")),
        format!("*.example.com,127.0.0.1  {}", file("download_allow_hosts")),
        "job_lease_secs                       60  [default]".into(),
        // Unset, the dump store is the data dir's `dumps`, not `none` (which keeps nothing).
        "dump_store                           dumps under CHATSINK_DATA_DIR".into(),
    ] {
        assert!(out.contains(&expected), "lacks {expected}: {out}");
    }
    // Every setting serve takes is printed, the global log format too.
    for line in [
        "http_workers",
        "ready_max_backlog",
        "download_connect_timeout_secs",
        "download_read_timeout_secs",
        "job_backoff_base_ms",
        "job_backoff_cap_secs",
        "rtk_api_base",
        "log_format",
        "query_budget_ms",
        "reconcile_interval_secs",
        "reconcile_grace_secs",
    ] {
        assert!(out.contains(&format!("  {line} ")), "lacks {line}: {out}");
    }
    assert!(!out.contains(&secret) && !out.contains(READ_TOKEN), "{out}");

    // Environment over file, flag over environment; CHATSINK_CONFIG names the file too.
    let env_wins = chatsink(
        &["config", "check"],
        &[("CHATSINK_CONFIG", config), ("CHATSINK_WORKERS", "7")],
    );
    assert!(
        text(&env_wins).contains("7  [CHATSINK_WORKERS]"),
        "{}",
        text(&env_wins)
    );
    let flag_wins = chatsink(
        &["config", "check", "--config", config, "--workers", "9"],
        &[("CHATSINK_WORKERS", "7")],
    );
    assert!(
        text(&flag_wins).contains("9  [--workers]"),
        "{}",
        text(&flag_wins)
    );

    // Mistakes name what is wrong and exit non-zero.
    std::fs::write(dir.path().join("typo.toml"), "lisen = \"x\"\n").unwrap();
    let typo = chatsink(
        &[
            "config",
            "check",
            "--config",
            dir.path().join("typo.toml").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!typo.status.success());
    assert!(
        text(&typo).contains("unknown setting 'lisen'"),
        "{}",
        text(&typo)
    );
    std::fs::write(dir.path().join("bad.toml"), "hmac_secrets = [\"nope\"]\n").unwrap();
    let bad = chatsink(
        &[
            "config",
            "check",
            "--config",
            dir.path().join("bad.toml").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!bad.status.success());
    let bad_path = dir.path().join("bad.toml");
    assert!(
        text(&bad).contains(&format!(
            "invalid setting hmac_secrets in {}",
            bad_path.display()
        )),
        "the file's key is named, not the variable it fills: {}",
        text(&bad)
    );
    // A bad value from the environment is named by its variable, not by a flag never given.
    let bad_env = chatsink(&["config", "check"], &[("CHATSINK_LISTEN", "bogus")]);
    assert!(!bad_env.status.success());
    assert!(
        text(&bad_env).contains("for CHATSINK_LISTEN"),
        "{}",
        text(&bad_env)
    );
    assert!(!text(&bad_env).contains("'--listen"), "{}", text(&bad_env));
    let bad_flag = chatsink(&["config", "check", "--listen", "bogus"], &[]);
    assert!(
        text(&bad_flag).contains("'--listen <LISTEN>'"),
        "{}",
        text(&bad_flag)
    );
    // The deploy kit's placeholders are refused.
    for (variable, value) in [
        ("CHATSINK_READ_TOKENS", "replace-with-a-long-random-token"),
        ("CHATSINK_READ_TOKENS", "change-me-to-a-long-random-token"),
    ] {
        let placeholder = chatsink(&["config", "check"], &[(variable, value)]);
        assert!(!placeholder.status.success(), "{value}");
        assert!(
            text(&placeholder).contains("placeholder"),
            "{}",
            text(&placeholder)
        );
    }
    let missing = chatsink(&["config", "check", "--config", "/nonexistent.toml"], &[]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("/nonexistent.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_the_live_database_while_deliveries_keep_arriving() {
    // About SQLite's online backup (PostgreSQL's is pg_dump).
    if sqlite_only("backup_copies_the_live_database_while_deliveries_keep_arriving") {
        return;
    }
    let app = std::sync::Arc::new(spawn_app().await);
    let server = FakeServer::start().await;
    for n in 0..5 {
        let path = format!("/b{n}.csv");
        server.route(
            &path,
            vec![Reply::Body(simple_dump(&format!("backup-{n}"), 400))],
        );
        app.post_rtk(&chat_synced(&format!("backup-{n}"), &server.url(&path)))
            .await;
    }
    app.wait_for_jobs(Duration::from_secs(30)).await;
    // Keep writing while the backup runs.
    let writer = {
        let (app, server) = (app.clone(), server.clone());
        tokio::spawn(async move {
            for n in 5..25 {
                let path = format!("/b{n}.csv");
                server.route(
                    &path,
                    vec![Reply::Body(simple_dump(&format!("backup-{n}"), 50))],
                );
                assert_eq!(
                    app.post_rtk(&chat_synced(&format!("backup-{n}"), &server.url(&path)))
                        .await
                        .status(),
                    200
                );
            }
        })
    };
    let copy = app.dir.path().join("copy.db");
    let db = app.db_path.display().to_string();
    let copy_arg = copy.display().to_string();
    let run = {
        let (db, copy_arg) = (db.clone(), copy_arg.clone());
        tokio::task::spawn_blocking(move || {
            chatsink(&["backup", &copy_arg], &[("CHATSINK_DATABASE", &db)])
        })
        .await
        .unwrap()
    };
    writer.await.unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let copied = rusqlite::Connection::open(&copy).unwrap();
    let check: String = copied
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let mode: String = copied
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the copy is one self-contained file");
    drop(copied);
    // A restored copy serves: it opens as a database of its own and holds what was loaded.
    let messages = Archive::open(&copy).all_messages().len();
    assert!(
        messages >= 2000,
        "the copy holds what was loaded before it: {messages}"
    );

    let again = chatsink(&["backup", &copy_arg], &[("CHATSINK_DATABASE", &db)]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_webhook_delivers_a_signed_session_that_loads() {
    let app = spawn_app().await;
    let address = app.address.clone();
    let run = tokio::task::spawn_blocking(move || {
        chatsink(
            &[
                "send-test-webhook",
                "--url",
                &address,
                "--session",
                "sent-by-test",
                "--messages",
                "120",
            ],
            &[("CHATSINK_HMAC_SECRETS", &whsec(HMAC_KEY))],
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("-> 200"));
    let jobs = app.wait_for_jobs(Duration::from_secs(20)).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert_eq!(
        app.archive.session("sent-by-test").unwrap().message_count,
        120
    );
    // The webhook and its dump agree: the session's meeting finds its messages, and every
    // message was sent between the session's start and end.
    let session: serde_json::Value = app
        .get("/v1/sessions/sent-by-test")
        .await
        .json()
        .await
        .unwrap();
    let meeting = session["meetingId"].as_str().unwrap().to_owned();
    let page: serde_json::Value = app
        .get(&format!("/v1/messages?meeting={meeting}&limit=1000"))
        .await
        .json()
        .await
        .unwrap();
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 120, "{session}");
    let (started, ended) = (
        session["startedAt"].as_str().unwrap(),
        session["endedAt"].as_str().unwrap(),
    );
    for m in messages {
        let time = m["time"].as_str().unwrap();
        assert!(
            started <= time && time <= ended,
            "{time} outside {started}..{ended}"
        );
    }

    // A wrong secret is refused and said so.
    let address = app.address.clone();
    let wrong = tokio::task::spawn_blocking(move || {
        chatsink(
            &["send-test-webhook", "--url", &address],
            &[(
                "CHATSINK_HMAC_SECRETS",
                &whsec(b"not-the-configured-key-0123456789"),
            )],
        )
    })
    .await
    .unwrap();
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("401"), "{}", text(&wrong));
}

#[test]
fn demo_runs_the_whole_path_offline_and_shows_the_queries() {
    let run = chatsink(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--messages",
            "500",
        ],
        &[],
    );
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(
        out.contains("sent a signed meeting.chatSynced: 200"),
        "{out}"
    );
    assert!(out.contains("loaded and queryable"), "{out}");
    assert!(out.contains("500 messages"), "{out}");
    assert!(
        out.contains("curl -H \"Authorization: Bearer $TOKEN\""),
        "{out}"
    );
    assert!(out.contains("\"messageCounts\""), "{out}");
    // The page's address and the token to paste into it.
    let token = out
        .split("TOKEN=")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the demo names its token");
    let page = out
        .lines()
        .find(|l| l.starts_with("In a browser: open "))
        .unwrap_or_else(|| panic!("no page address: {out}"));
    assert!(
        page.contains("/ui/ and paste the read token ") && page.ends_with(token),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_zero_only_on_2xx() {
    let app = spawn_app().await;
    let (ok, missing) = {
        let base = app.address.clone();
        tokio::task::spawn_blocking(move || {
            (
                chatsink(&["probe", &format!("{base}/readyz")], &[]),
                chatsink(&["probe", &format!("{base}/v1/messages")], &[]),
            )
        })
        .await
        .unwrap()
    };
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(!missing.status.success(), "401 is not healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_releases_the_running_job_and_checkpoints() {
    let site = Site::new();
    let server = FakeServer::start().await;
    // A download that takes far longer than the shutdown grace period.
    server.route(
        "/slow.csv",
        vec![Reply::Slow {
            body: simple_dump("term-1", 2000),
            chunk: 1024,
            pause: Duration::from_millis(500),
        }],
    );
    let served = site.start("").await;
    let body = chat_synced("term-1", &server.url("/slow.csv"));
    assert_eq!(served.post(&body, "term-1").await.unwrap().status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while site
        .jobs()
        .first()
        .is_none_or(|(state, _)| state != "running")
    {
        assert!(Instant::now() < deadline, "{:?}", site.jobs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A webhook in flight when SIGTERM lands: head and half the body sent before, the rest after.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let late = chat_synced("term-2", &server.url("/slow.csv"));
    let head = format!(
        "POST /webhooks/realtimekit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         rtk-signature: {}\r\nrtk-uuid: term-2\r\nContent-Length: {}\r\n\r\n",
        rtk_sign(&rsa_keys().0, &late),
        late.len()
    );
    let mut socket = tokio::net::TcpStream::connect(served.address().trim_start_matches("http://"))
        .await
        .unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&late[..late.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    served.terminate();
    // Longer than the server's first shutdown check (1 s): a server that gave in-flight requests
    // no time would have closed the connection by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    socket.write_all(&late[late.len() / 2..]).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), socket.read_to_string(&mut answer)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "the request in flight was finished: {answer}"
    );
    assert!(answer.contains("accepted"), "{answer}");
    served.stop();
    assert!(stopped.elapsed() < Duration::from_secs(30));
    assert_eq!(
        site.jobs(),
        vec![("pending".to_owned(), 0), ("pending".to_owned(), 0)],
        "released for the next start, its attempt not counted; the late delivery's job waits"
    );
    let wal = site.db_path().with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL was checkpointed into the database"
    );
    assert!(
        site.log().contains("shutdown: job released unfinished"),
        "{}",
        site.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_and_an_hmac_only_serve_make_no_outbound_connection() {
    // RealtimeKit's key URL points at a loopback listener that counts connections.
    let key_server = FakeServer::start().await;
    let key_url = key_server.url("/.well-known/webhooks.json");
    let demo = {
        let key_url = key_url.clone();
        tokio::task::spawn_blocking(move || {
            chatsink(
                &[
                    "demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--once",
                    "--messages",
                    "50",
                ],
                &[
                    ("CHATSINK_RTK_PUBLIC_KEY_URL", &key_url),
                    ("RUST_LOG", "info"),
                ],
            )
        })
        .await
        .unwrap()
    };
    assert!(demo.status.success(), "{}", text(&demo));
    assert!(!text(&demo).contains("WARN"), "{}", text(&demo));
    // `serve` with only an HMAC secret and no key configured: nothing to fetch until an
    // rtk-signature arrives.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("CHATSINK_DATABASE", dir.path().join("chatsink.db"))
        .env("CHATSINK_DATA_DIR", dir.path())
        .env("CHATSINK_HMAC_SECRETS", whsec(HMAC_KEY))
        .env("CHATSINK_RTK_PUBLIC_KEY_URL", &key_url)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let mut answered = false;
    for _ in 0..200 {
        if client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(answered, "serve became ready");
    assert_eq!(key_server.connections(), 0, "nothing fetched the key");
}

#[test]
fn a_taken_port_stops_start_up_first_and_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("chatsink.db");
    for command in ["serve", "demo"] {
        let run = chatsink(
            &[command, "--listen", &address],
            &[
                ("CHATSINK_DATABASE", database.to_str().unwrap()),
                ("CHATSINK_DATA_DIR", dir.path().to_str().unwrap()),
                ("CHATSINK_INSECURE_SKIP_VERIFY", "true"),
                ("RUST_LOG", "info"),
            ],
        );
        let out = text(&run);
        assert!(!run.status.success(), "{command}: {out}");
        assert!(
            out.contains(&format!("cannot listen on {address}")),
            "{command}: {out}"
        );
        assert!(out.contains("--listen"), "{command}: {out}");
        assert!(!out.contains("WARN"), "{command}: {out}");
        assert!(
            !database.exists(),
            "{command} opened a database before binding"
        );
    }
}

/// Pointed at a `serve` that cannot take its delivery, `send-test-webhook` says in one message
/// every setting both sides need; pointed at one that can, it finds the read token the service
/// generated, waits until the session is loaded, and prints a curl line whose token works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_webhook_says_what_serve_needs_and_waits_for_the_load() {
    let site = Site::new();
    let plain = site.start("").await;
    let address = plain.address().to_owned();
    for envs in [vec![], vec![("CHATSINK_HMAC_SECRETS", whsec(HMAC_KEY))]] {
        let address = address.clone();
        let out = tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            chatsink(
                &["send-test-webhook", "--url", &address, "--wait-secs", "5"],
                &envs,
            )
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        for needed in [
            "CHATSINK_HMAC_SECRETS=whsec_",
            "CHATSINK_DOWNLOAD_ALLOW_HOSTS=127.0.0.1",
            "CHATSINK_DOWNLOAD_ALLOW_HTTP=true",
            "chatsink serve",
        ] {
            assert!(text(&out).contains(needed), "{needed}: {}", text(&out));
        }
    }
    plain.stop();

    let secret = whsec(HMAC_KEY);
    let served = site
        .start_with("", |command| {
            command
                .env("CHATSINK_HMAC_SECRETS", &secret)
                .env_remove("CHATSINK_READ_TOKENS");
        })
        .await;
    let address = served.address().to_owned();
    let data_dir = site.data_dir().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        chatsink(
            &[
                "send-test-webhook",
                "--url",
                &address,
                "--session",
                "by-default",
            ],
            &[
                ("CHATSINK_HMAC_SECRETS", &whsec(HMAC_KEY)),
                ("CHATSINK_DATA_DIR", &data_dir),
            ],
        )
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("session by-default is loaded and queryable"),
        "{}",
        text(&out)
    );
    let said = text(&out);
    let token = said
        .split("Authorization: Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a curl line with a token");
    let answer = served
        .client
        .get(format!(
            "{}/v1/messages?session=by-default&limit=5",
            served.address()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    served.stop();
}

/// An idle `serve` on SQLite keeps its file quiet: no heartbeat commit a second (an idle laptop
/// or SD card would take ~1 GB of writes a day); at most one page a minute once started. Its
/// crash recovery stays quick: a job held by a killed process is taken over within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sqlite_serve_writes_nothing() {
    if on_postgres() {
        eprintln!(
            "an_idle_sqlite_serve_writes_nothing: about SQLite's file; run by the SQLite suite"
        );
        return;
    }
    let site = Site::new();
    let served = site.start_on_defaults().await;
    // Start-up writes (migrations, the owner's row, the first sweep two seconds in) settle.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let wal = std::path::PathBuf::from(format!("{}-wal", site.db_path().display()));
    // A write shows in the files' modification times, even one that reuses the WAL's space.
    let stamp = || {
        [wal.clone(), site.db_path()].map(|f| {
            std::fs::metadata(f)
                .map(|m| (m.len(), m.modified().unwrap()))
                .ok()
        })
    };
    let before = stamp();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        stamp(),
        before,
        "an idle serve wrote to its database in 8 s"
    );
    served.stop();
}

/// Every metric the operators' kit (deploy/monitoring: alert rules, dashboard) names is one
/// `/metrics` exports, as written, after an ordinary hour: a delivery with a rejected row, a
/// forged one, a query, an erasure and a reconcile pass. Failure counters are there at zero
/// from the start, so an alert on their `increase()` fires on the first failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_operators_kit_names_is_exported() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let text = format!(
        "{}{}",
        std::fs::read_to_string(root.join("alerts.yml")).unwrap(),
        std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap()
    );
    let mut named = std::collections::BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("chatsink_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        named.insert(name);
    }
    assert!(named.len() >= 15, "{named:?}");
    const KIT_ADMIN: &str = "kit-admin-token-0123456789abcdef";

    let api = crate::pull::FakeRtk::start().await;
    let site = Site::new();
    let served = site
        .start_with("", |command| {
            command
                .env("CHATSINK_ADMIN_TOKENS", KIT_ADMIN)
                .env("CHATSINK_RECONCILE_INTERVAL_SECS", "1")
                .envs(api.env());
        })
        .await;
    let server = FakeServer::start().await;
    let mut dump = simple_dump("kit-1", 5);
    dump.extend_from_slice(b"bad-row,u,kit-1,m,Name,false,false,TEXT_MESSAGE,hi,not a time\r\n");
    server.route("/k.csv", vec![Reply::Body(dump)]);
    let body = chat_synced("kit-1", &server.url("/k.csv"));
    assert_eq!(served.post(&body, "kit-1").await.unwrap().status(), 200);
    let forged = served
        .sender()
        .post_signed_by(&rsa_keys().1, &body, "kit-forged")
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    site.wait_until_settled().await;
    assert_eq!(served.get("/v1/messages?session=kit-1").await.status(), 200);
    let erased = served
        .client
        .delete(format!("{}/v1/users/user-1", served.address()))
        .bearer_auth(KIT_ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200, "{:?}", erased.text().await);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let exported = served.get("/metrics").await.text().await.unwrap();
        let missing: Vec<&String> = named
            .iter()
            .filter(|name| {
                !exported.lines().any(|l| {
                    l.strip_prefix(name.as_str())
                        .is_some_and(|after| after.starts_with(['{', ' ']))
                })
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operators' kit names metrics /metrics does not export: {missing:?}\n{exported}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    served.stop();
}

/// An unreachable key URL is reported with its cause (connection refused, not just "error
/// sending request") and the way out on an offline host: pinning the key in a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_key_url_says_why_and_what_to_do() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/.well-known/webhooks.json",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let site = Site::new();
    let served = site
        .start_with("", |command| {
            command
                .env_remove("CHATSINK_RTK_PUBLIC_KEY_FILE")
                .env("CHATSINK_RTK_PUBLIC_KEY_URL", &url);
        })
        .await;
    let body = chat_synced("key-1", "http://127.0.0.1:9/x.csv");
    let answer = served.post(&body, "key-1").await.unwrap();
    assert_eq!(answer.status(), 503);
    let said = format!("{}{}", answer.text().await.unwrap(), site.log());
    assert!(said.contains("Connection refused"), "{said}");
    assert!(said.contains("CHATSINK_RTK_PUBLIC_KEY_FILE"), "{said}");
    served.stop();
}

/// `chatsink demo --keep DIR` keeps its archive where `serve` can open it again; without it,
/// nothing of the demo is left.
#[test]
fn the_demo_keeps_its_archive_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("demo");
    let run = chatsink(
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--once",
            "--messages",
            "50",
            "--keep",
            kept.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("kept in"), "{}", text(&run));
    let archive = Archive::open(&kept.join("chatsink.db"));
    assert_eq!(archive.all_messages().len(), 50);
}
