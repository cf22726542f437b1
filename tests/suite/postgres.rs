//! PostgreSQL as a database location, against a real server (see `pg.rs`): choosing it by URL,
//! migrations under an advisory lock, a newer schema refused, the password never shown; and the
//! backend's use cases as two instances on one database.

use crate::pg::{postgres, PgServer};
use std::process::{Command, Output};

fn chatsink(args: &[&str], database: &str, dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(args)
        .current_dir(dir)
        .env("CHATSINK_DATABASE", database)
        .env("CHATSINK_DATA_DIR", dir.join("data"))
        .env("CHATSINK_READ_TOKENS", "test-read-token-0123456789abcdef")
        .env(
            "CHATSINK_HMAC_SECRETS",
            "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=",
        )
        .env("CHATSINK_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .output()
        .expect("binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh database's URL with a password in it (the test server trusts loopback, so any
/// password is accepted, and none may ever be printed).
fn url_with_password(server: &PgServer) -> String {
    server
        .fresh_database()
        .replacen("postgres@", "postgres:hunter2-not-shown@", 1)
}

#[test]
fn migrate_brings_a_new_database_to_the_schema_once_and_never_shows_the_password() {
    let Some(server) = postgres("postgres::migrate_brings_a_new_database_to_the_schema") else {
        return;
    };
    let url = url_with_password(server);
    let dir = tempfile::tempdir().unwrap();
    let first = chatsink(&["migrate"], &url, dir.path());
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains(&format!(
            "from schema version 0 to {}",
            chatsink::store::postgres::SCHEMA_VERSION
        )),
        "{}",
        text(&first)
    );
    let again = chatsink(&["migrate"], &url, dir.path());
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("nothing to do"), "{}", text(&again));
    for output in [&first, &again] {
        assert!(!text(output).contains("hunter2"), "{}", text(output));
        // PostgreSQL's notices (the schema table "already exists") are no news to print.
        assert!(!text(output).contains("NOTICE"), "{}", text(output));
    }
    assert_eq!(
        server.sql(
            &url,
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM chatsink_schema"
        ),
        (1..=chatsink::store::postgres::SCHEMA_VERSION)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "each version recorded once, in order"
    );
    // The tables the backend will serve from are there, with the analysts' view.
    assert_eq!(
        server.sql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'
               AND tablename IN ('inbox', 'jobs', 'owners', 'sessions', 'messages', 'rejected_rows')"
        ),
        "6"
    );
    assert_eq!(server.sql(&url, "SELECT count(*) FROM message_view"), "0");
}

#[test]
fn instances_migrating_at_once_take_turns_under_the_advisory_lock() {
    let Some(server) = postgres("postgres::instances_migrating_at_once_take_turns") else {
        return;
    };
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| chatsink(&["migrate"], &url, dir.path())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        assert!(run.status.success(), "{}", text(run));
    }
    let applied = runs
        .iter()
        .filter(|r| {
            text(r).contains(&format!(
                "from schema version 0 to {}",
                chatsink::store::postgres::SCHEMA_VERSION
            ))
        })
        .count();
    assert_eq!(applied, 1, "exactly one applied the schema");
    assert_eq!(
        server.sql(&url, "SELECT count(*) FROM chatsink_schema"),
        chatsink::store::postgres::SCHEMA_VERSION.to_string(),
        "each migration recorded once"
    );
}

#[test]
fn a_schema_newer_than_this_build_is_refused() {
    let Some(server) = postgres("postgres::a_schema_newer_than_this_build_is_refused") else {
        return;
    };
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    assert!(chatsink(&["migrate"], &url, dir.path()).status.success());
    server.sql(&url, "INSERT INTO chatsink_schema (version) VALUES (99)");
    let refused = chatsink(&["migrate"], &url, dir.path());
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(&format!(
            "written by a newer chatsink (schema version 99, this build knows {})",
            chatsink::store::postgres::SCHEMA_VERSION
        )),
        "{}",
        text(&refused)
    );
}

#[test]
fn commands_on_a_postgres_url_use_it_and_create_no_directory() {
    let Some(server) = postgres("postgres::commands_on_a_postgres_url_use_it") else {
        return;
    };
    let url = url_with_password(server);
    let dir = tempfile::tempdir().unwrap();

    // Before, a URL was taken as a file path: commands made a directory named `postgres:` here.
    let jobs = chatsink(&["jobs"], &url, dir.path());
    assert!(jobs.status.success(), "{}", text(&jobs));
    assert!(text(&jobs).contains("last error"), "{}", text(&jobs));
    assert!(!dir.path().join("postgres:").exists());
    assert!(!dir.path().join("postgresql:").exists());
    // It checked and migrated the database on its way.
    assert_eq!(
        server.sql(&url, "SELECT max(version) FROM chatsink_schema"),
        chatsink::store::postgres::SCHEMA_VERSION.to_string()
    );

    let backup = chatsink(&["backup", "copy.db"], &url, dir.path());
    assert!(!backup.status.success());
    assert!(text(&backup).contains("pg_dump"), "{}", text(&backup));
    assert!(!dir.path().join("copy.db").exists());

    let check = chatsink(&["config", "check"], &url, dir.path());
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("127.0.0.1"), "{}", text(&check));

    for output in [&jobs, &backup, &check] {
        assert!(!text(output).contains("hunter2"), "{}", text(output));
    }
}

#[test]
fn tls_required_by_the_url_against_a_server_without_tls_is_a_clear_error() {
    let Some(server) = postgres("postgres::tls_required_by_the_url") else {
        return;
    };
    let url = format!("{}?sslmode=require", server.fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let refused = chatsink(&["migrate"], &url, dir.path());
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("cannot migrate the database")
            && text(&refused).to_lowercase().contains("tls"),
        "{}",
        text(&refused)
    );
}

#[test]
fn a_read_only_role_can_read_the_view_and_write_nothing() {
    let Some(server) = postgres("postgres::a_read_only_role_can_read_the_view") else {
        return;
    };
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    assert!(chatsink(&["migrate"], &url, dir.path()).status.success());
    let role = format!("analyst_{}", uuid::Uuid::new_v4().simple());
    let database = url.rsplit('/').next().unwrap();
    // The set-up docs/several-instances.md gives for analysts' tools.
    server.sql(
        &url,
        &format!(
            "CREATE ROLE {role} LOGIN;
             GRANT CONNECT ON DATABASE {database} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT ON message_view TO {role};"
        ),
    );
    let as_analyst = url.replacen("postgres@", &format!("{role}@"), 1);
    assert_eq!(
        server.sql(&as_analyst, "SELECT count(*) FROM message_view"),
        "0"
    );
    let write = Command::new("psql")
        .arg(&as_analyst)
        .args(["-v", "ON_ERROR_STOP=1", "-qc", "DELETE FROM inbox"])
        .output()
        .unwrap();
    assert!(!write.status.success(), "an analyst cannot write");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
}

// --- the queue half of the PostgreSQL backend, through its use cases, as two instances ---

mod queue {
    use super::*;
    use chatsink::domain::{
        ChatSynced, IntakeOutcome, JobState, NewDelivery, SessionId, Timestamp,
    };
    use chatsink::store::postgres::PgStore;
    use chatsink::store::{DatabaseLocation, Owner, PostgresUrl};
    use std::time::Duration;

    /// Two handles on one fresh database (two instances of chatsink), and its URL.
    async fn two_instances(server: &PgServer) -> (String, PgStore, PgStore) {
        let raw = server.fresh_database();
        let DatabaseLocation::Postgres(url) = DatabaseLocation::parse(&raw).unwrap() else {
            unreachable!()
        };
        let open = |url: PostgresUrl| async move { PgStore::open(&url, 8).await.unwrap() };
        (raw, open(url.clone()).await, open(url).await)
    }

    fn delivery(id: &str, body: &str, session: Option<&str>) -> NewDelivery {
        NewDelivery {
            webhook_id: None,
            delivery_id: Some(id.to_owned()),
            body_sha256: format!("sha-of-{body}"),
            scheme: "hmac",
            event: "meeting.chatSynced".into(),
            session_id: session.map(str::to_owned),
            body: body.as_bytes().to_vec(),
            received: Timestamp::now(),
            chat_synced: session.map(|s| ChatSynced {
                session_id: SessionId::parse(s).unwrap(),
                meeting_id: Some("m-1".into()),
                title: Some("standup".into()),
                chat_download_url: "https://storage.example.com/d.csv".into(),
                chat_download_url_expiry: None,
                created_at: None,
                started_at: None,
                ended_at: None,
                organizer_id: None,
                organizer_name: None,
            }),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delivery_sent_to_two_instances_at_once_is_stored_once_with_one_job() {
        let Some(server) = postgres("postgres::queue::a_delivery_sent_to_two_instances_at_once")
        else {
            return;
        };
        let (_, a, b) = two_instances(server).await;
        let (ia, ib) = (a.intake(), b.intake());
        let mut stored = 0;
        for n in 0..50 {
            let session = format!("s-{n}");
            let (one, two) = tokio::join!(
                ia.store(delivery(&format!("d-{n}"), &session, Some(&session))),
                ib.store(delivery(&format!("d-{n}"), &session, Some(&session))),
            );
            let outcomes = [one.unwrap(), two.unwrap()];
            stored += outcomes
                .iter()
                .filter(|o| {
                    matches!(
                        o,
                        IntakeOutcome::Stored {
                            job_id: Some(_),
                            ..
                        }
                    )
                })
                .count();
            assert!(
                outcomes.contains(&IntakeOutcome::Duplicate),
                "{n}: {outcomes:?}"
            );
        }
        assert_eq!(stored, 50);
        // The same body under another delivery id is a duplicate too.
        assert_eq!(
            ia.store(delivery("d-other", "s-1", Some("s-1")))
                .await
                .unwrap(),
            IntakeOutcome::Duplicate
        );
        let jobs = a.jobs(None, 1000).await.unwrap();
        assert_eq!(jobs.len(), 50);
        assert!(jobs.iter().all(|j| j.state == JobState::Pending));
    }

    /// An instance's idle workers hear at once of a job another instance enqueued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_enqueued_on_one_instance_wakes_the_others() {
        let Some(server) = postgres("postgres::queue::a_job_enqueued_on_one_instance_wakes") else {
            return;
        };
        let (_, a, b) = two_instances(server).await;
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let _listener = b.watch_jobs(wake.clone());
        // Until the listener is in place, a job may go unheard: try a few times.
        let mut heard = false;
        for n in 0..20 {
            let intake = a.intake();
            intake
                .store(delivery(
                    &format!("w-{n}"),
                    &format!("w-{n}"),
                    Some(&format!("w-{n}")),
                ))
                .await
                .unwrap();
            if tokio::time::timeout(Duration::from_millis(500), wake.notified())
                .await
                .is_ok()
            {
                heard = true;
                break;
            }
        }
        assert!(heard, "no wake-up reached the other instance");
        // Once listening, every delivery's job is heard.
        a.intake()
            .store(delivery("w-last", "w-last", Some("w-last")))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), wake.notified())
            .await
            .expect("woken by the next delivery's job");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_claiming_together_never_claim_one_job_twice() {
        let Some(server) = postgres("postgres::queue::instances_claiming_together") else {
            return;
        };
        let (_, a, b) = two_instances(server).await;
        let sessions: Vec<String> = (0..60).map(|n| format!("r-{n}")).collect();
        a.enqueue_reprocess(sessions.clone()).await.unwrap();
        // The same sessions again, from the other instance: the open jobs are shared.
        assert_eq!(b.enqueue_reprocess(sessions).await.unwrap().len(), 60);
        let lease = Duration::from_secs(60);
        let stale = Duration::from_secs(5);
        let claimers: Vec<_> = (0..8)
            .map(|n| {
                let store = if n % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let owner = Owner::new("test");
                    store.register_owner(owner.clone()).await.unwrap();
                    let mut mine = Vec::new();
                    while let Some(job) = store
                        .claim_job(owner.clone(), lease, stale, None, true)
                        .await
                        .unwrap()
                    {
                        mine.push(job.id);
                    }
                    mine
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for claimer in claimers {
            claimed.extend(claimer.await.unwrap());
        }
        claimed.sort();
        let before = claimed.len();
        claimed.dedup();
        assert_eq!((before, claimed.len()), (60, 60), "each job claimed once");
        let jobs = a.jobs(None, 1000).await.unwrap();
        assert!(jobs
            .iter()
            .all(|j| j.state == JobState::Running && j.attempts == 1));
    }

    /// Every connection chatsink opens commits durably, whatever the server's default says.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_commit_durably_whatever_the_server_default() {
        let Some(server) = postgres("postgres::queue::connections_commit_durably") else {
            return;
        };
        let (url, a, _) = two_instances(server).await;
        let database = url.rsplit('/').next().unwrap().to_owned();
        server.sql(
            &url,
            &format!("ALTER DATABASE {database} SET synchronous_commit = off"),
        );
        let fresh = PgStore::open(
            &match DatabaseLocation::parse(&url).unwrap() {
                DatabaseLocation::Postgres(u) => u,
                _ => unreachable!(),
            },
            2,
        )
        .await
        .unwrap();
        for store in [&a, &fresh] {
            assert_eq!(
                store.server_setting("synchronous_commit").await.unwrap(),
                "on"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_owners_job_is_taken_and_its_late_writes_are_fenced() {
        let Some(server) = postgres("postgres::queue::a_silent_owners_job_is_taken") else {
            return;
        };
        let (url, a, b) = two_instances(server).await;
        a.enqueue_reprocess(vec!["s-x".into()]).await.unwrap();
        let (lease, stale) = (Duration::from_secs(60), Duration::from_secs(5));
        // An owner on another host (nothing here can tell whether it runs) takes the job...
        let mut far = Owner::new("serve");
        far.identity.boot_id = "another-boot".into();
        a.register_owner(far.clone()).await.unwrap();
        let held = a
            .claim_job(far.clone(), lease, stale, None, true)
            .await
            .unwrap()
            .unwrap();
        let near = Owner::new("serve");
        b.register_owner(near.clone()).await.unwrap();
        assert!(b
            .claim_job(near.clone(), lease, stale, None, true)
            .await
            .unwrap()
            .is_none());
        // ...and falls silent: after the stale time its job is the other instance's.
        server.sql(
            &url,
            &format!(
                "UPDATE owners SET heartbeat_ms = heartbeat_ms - 6000 WHERE id = '{}'",
                far.id
            ),
        );
        let taken = b
            .claim_job(near.clone(), lease, stale, None, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.id, held.id);
        assert_eq!(taken.attempt, 2);
        // The silent owner's late writes change nothing: not its load...
        let rows: Vec<chatsink::domain::LoadRow> =
            chatsink::ingest::DumpReader::new(&crate::helpers::simple_dump("s-x", 5)[..])
                .unwrap()
                .collect();
        let late = a
            .load_job(
                held.clone(),
                rows.into_iter(),
                chatsink::domain::SessionDump {
                    key: None,
                    sha256: "late".into(),
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(late, chatsink::store::JobLoad::LeaseLost),
            "{late:?}"
        );
        assert_eq!(server.sql(&url, "SELECT count(*) FROM messages"), "0");
        // ...nor its lease, failure or release.
        assert!(!a.extend_lease(held.clone(), lease).await.unwrap());
        assert_eq!(
            a.fail_job(held.clone(), "late".into(), None).await.unwrap(),
            None
        );
        assert!(!a.release_job(held).await.unwrap());
        assert_eq!(
            b.fail_job(taken, "real".into(), Some(Duration::from_secs(1)))
                .await
                .unwrap(),
            Some(JobState::Failed)
        );
        let gauges = b.queue_gauges().await.unwrap();
        assert_eq!(gauges.by_state, [(JobState::Failed, 1)]);
        b.check_writable().await.unwrap();
    }
}

/// One corpus, one set of queries, both backends: the same ids for every query. PostgreSQL's own
/// parser would keep `report-123.pdf` and `alice@example.com` whole; chatsink's words match FTS5's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_finds_the_same_rows_on_both_backends() {
    use chatsink::domain::{MessageFilter, Order, TextQuery};
    use chatsink::store::{DatabaseLocation, Store};
    use std::time::Duration;
    let Some(server) = postgres("postgres::full_text_finds_the_same_rows_on_both_backends") else {
        return;
    };
    let texts: &[(&str, &str, &str)] = &[
        // (payloadType, payload, displayName)
        (
            "TEXT_MESSAGE",
            "Crème brûlée for the naïve café crowd",
            "Zoë",
        ),
        ("TEXT_MESSAGE", "CREME BRULEE again", "Ann"),
        ("TEXT_MESSAGE", "日本語のテスト and 中文 text", "Kenji"),
        ("TEXT_MESSAGE", "ship it 🚀🎉 today", "Bob"),
        (
            "TEXT_MESSAGE",
            "mail alice@example.com or bob@example.org",
            "Ann",
        ),
        ("TEXT_MESSAGE", "مرحبا بالعالم and שלום עולם", "Layla"),
        (
            "TEXT_MESSAGE",
            "the quick brown fox jumps over the lazy dog",
            "Dave",
        ),
        (
            "TEXT_MESSAGE",
            "quick thinking, brown paper; the fox was lazy",
            "Eve",
        ),
        (
            "TEXT_MESSAGE",
            "report-123 is ready: see report-123.pdf",
            "Ann",
        ),
        (
            "TEXT_MESSAGE",
            "deploying release v2.4.1-rc.3 now",
            "Ops Bot",
        ),
        ("TEXT_MESSAGE", "it's a trap, isn't it?", "Ackbar"),
        ("TEXT_MESSAGE", "nothing to see here", "Zoë Saldaña"),
        (
            "FILE_MESSAGE",
            r#"{"name":"report-123.pdf","size":1024,"link":"https://files.example.com/r.pdf"}"#,
            "Ann",
        ),
        (
            "FILE_MESSAGE",
            r#"{"name":"Q3_roadmap.final.v2.xlsx","size":2048,"link":"https://files.example.com/q.xlsx"}"#,
            "Carl",
        ),
        ("IMAGE_MESSAGE", "https://img.example.com/fox.png", "Dave"),
    ];
    let mut dump = format!("{}\r\n", crate::helpers::DUMP_HEADER);
    for (i, (kind, payload, name)) in texts.iter().enumerate() {
        let time = chatsink::domain::Timestamp::from_millis(1_780_480_800_000 + i as i64 * 1000)
            .to_rfc3339();
        dump.push_str(&crate::helpers::csv_row(&[
            &format!("m{i}"),
            &format!("u{}", i % 4),
            "s-corpus",
            "meeting-1",
            name,
            "false",
            "false",
            kind,
            payload,
            &time,
        ]));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus.csv");
    std::fs::write(&file, dump).unwrap();
    let sqlite = Store::open(&dir.path().join("corpus.db")).unwrap();
    let postgres = Store::connect(
        &DatabaseLocation::parse(&server.fresh_database()).unwrap(),
        4,
    )
    .await
    .unwrap();
    for store in [&sqlite, &postgres] {
        chatsink::ingest::ingest_file(store, &file, None, |_, _| {})
            .await
            .unwrap();
    }
    let queries = [
        "creme",
        "crème",
        "BRÛLÉE",
        "naive",
        "cafe",
        "日本語のテスト",
        "中文",
        "ship",
        "alice",
        "example",
        "\"example.com\"",
        "\"report-123.pdf\"",
        "\"alice example com\"",
        "pdf",
        "report",
        "123",
        "\"report 123\"",
        "rep*",
        "q3*",
        "xlsx",
        "v2",
        "rc",
        "\"quick brown\"",
        "quick brown",
        "quick OR dog",
        "fox NOT lazy",
        "fox AND (quick OR paper)",
        "NEAR(quick lazy, 3)",
        "NEAR(quick lazy, 10)",
        "NEAR(brown fox, 0)",
        "text:ann",
        "display_name:ann",
        "display_name:zoe",
        "file_name:report",
        "file_name:pdf",
        "text:pdf",
        "\"isn t\"",
        "s",
        "trap",
        "مرحبا",
        "שלום",
        "🚀",
        "nothing",
        "zoe*",
        "\"!!!\"",
        "x OR \"!!!\"",
    ];
    let budget = Duration::from_secs(30);
    for q in queries {
        let filter = MessageFilter {
            text_query: Some(TextQuery::parse(q).unwrap()),
            ..MessageFilter::default()
        };
        let ids = |rows: Vec<chatsink::domain::MessageRow>| -> Vec<String> {
            rows.into_iter().map(|m| m.id).collect()
        };
        let on_sqlite = ids(sqlite
            .message_page(&filter, Order::Asc, None, 1000, budget)
            .await
            .unwrap());
        let on_postgres = ids(postgres
            .message_page(&filter, Order::Asc, None, 1000, budget)
            .await
            .unwrap());
        assert_eq!(on_postgres, on_sqlite, "q = {q}");
    }
    // A sample that the corpus means what it says: `pdf` finds the file and the text naming it.
    let pdf = MessageFilter {
        text_query: Some(TextQuery::parse("pdf").unwrap()),
        ..MessageFilter::default()
    };
    let found = postgres
        .message_page(&pdf, Order::Asc, None, 100, budget)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m8", "m12"]
    );
}

/// `n` served sites (not yet started) on one fresh database, sharing one data dir.
fn instances(server: &PgServer, n: usize) -> (String, tempfile::TempDir, Vec<crate::site::Site>) {
    let url = server.fresh_database();
    let shared = tempfile::tempdir().unwrap();
    let sites = (0..n)
        .map(|_| crate::site::Site::on_postgres(&url, shared.path()))
        .collect();
    (url, shared, sites)
}

/// Three `serve` processes on one database. Every session's delivery is sent to two instances at
/// the same moment and twice more to the third: exactly one is accepted, the rest are duplicates,
/// each session gets one job and its rows exactly once, whichever instance ran it. Then two
/// `reprocess --all` from two CLIs at once, while the three serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_database_accept_each_delivery_once_and_load_it_once() {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    let Some(server) = postgres("postgres::three_instances_on_one_database") else {
        return;
    };
    let (url, shared, sites) = instances(server, 3);
    let mut served = Vec::new();
    for site in &sites {
        served.push(site.start("").await);
    }
    let storage = FakeServer::start().await;
    let sessions = 50;
    for n in 0..sessions {
        storage.route(
            &format!("/d-{n}.csv"),
            vec![Reply::Body(simple_dump(&format!("multi-{n}"), 20))],
        );
    }
    let mut accepted = 0;
    let mut duplicate = 0;
    for n in 0..sessions {
        let body = chat_synced(&format!("multi-{n}"), &storage.url(&format!("/d-{n}.csv")));
        let id = format!("multi-delivery-{n}");
        let (a, b, c) = (n % 3, (n + 1) % 3, (n + 2) % 3);
        let (first, second) = tokio::join!(served[a].post(&body, &id), served[b].post(&body, &id));
        let third = served[c].post(&body, &id).await;
        let fourth = served[c].post(&body, &id).await;
        for response in [first, second, third, fourth] {
            let response = response.unwrap();
            assert_eq!(response.status(), 200);
            let answer: serde_json::Value = response.json().await.unwrap();
            match answer["status"].as_str() {
                Some("accepted") => accepted += 1,
                Some("duplicate") => duplicate += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!((accepted, duplicate), (50, 150));
    let archive = sites[0].archive();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let jobs = archive.jobs();
        if jobs.len() == sessions
            && jobs
                .iter()
                .all(|j| j.state == chatsink::domain::JobState::Done)
        {
            assert!(jobs.iter().all(|j| j.attempts == 1), "no job claimed twice");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for n in 0..sessions {
        sites[0].assert_loaded_once(&format!("multi-{n}"), 20);
    }
    // Each session's dump was downloaded once: one instance ran each job.
    for n in 0..sessions {
        assert_eq!(storage.requests(&format!("/d-{n}.csv")), 1, "session {n}");
    }
    // Two `reprocess --all` at once, while the three serve: they share one open job per session,
    // and no job is claimed twice.
    let reprocess = || {
        Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .args(["reprocess", "--all"])
            .env("CHATSINK_DATABASE", &url)
            .env("CHATSINK_DATA_DIR", shared.path().join("data"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let runs: Vec<Output> = std::thread::scope(|scope| {
        let handles = [scope.spawn(reprocess), scope.spawn(reprocess)];
        handles.map(|h| h.join().unwrap()).into_iter().collect()
    });
    for run in &runs {
        assert!(run.status.success(), "{}", text(run));
        assert!(
            text(run).contains("reprocessed 50 session(s): 50 ok, 0 failed"),
            "{}",
            text(run)
        );
    }
    let jobs = archive.jobs();
    let reprocessed: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind == chatsink::domain::JobKind::Reprocess)
        .collect();
    assert_eq!(reprocessed.len(), sessions, "one shared job per session");
    assert!(
        reprocessed
            .iter()
            .all(|j| j.state == chatsink::domain::JobState::Done && j.attempts == 1),
        "{reprocessed:?}"
    );
    for n in 0..sessions {
        sites[0].assert_loaded_once(&format!("multi-{n}"), 20);
    }
    for s in served {
        s.stop();
    }
}

/// PostgreSQL crashes (`pg_ctl -m immediate`) during a stream of deliveries and comes back:
/// every delivery answered 2xx is stored, those sent during the outage get 503 with Retry-After,
/// `/readyz` names the database, and chatsink recovers without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_outage_loses_nothing_acknowledged_and_recovers_without_a_restart() {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    use crate::site::Site;
    use std::time::{Duration, Instant};
    let Some(server) = crate::pg::private_cluster("postgres::a_postgres_outage_loses_nothing")
    else {
        return;
    };
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let site = Site::on_postgres(&url, dir.path());
    let served = site.start("").await;
    let storage = FakeServer::start().await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    let mut send = |phase: &'static str| {
        n += 1;
        let session = format!("outage-{n}");
        storage.route(
            &format!("/{session}.csv"),
            vec![Reply::Body(simple_dump(&session, 5))],
        );
        let body = chat_synced(&session, &storage.url(&format!("/{session}.csv")));
        (phase, format!("outage-delivery-{n}"), body)
    };
    let post = |(phase, id, body): (&'static str, String, Vec<u8>)| {
        let served = &served;
        async move {
            let response = served.post(&body, &id).await.unwrap();
            (phase, id, response)
        }
    };
    for _ in 0..10 {
        let (_, id, response) = post(send("before")).await;
        assert_eq!(response.status(), 200);
        acknowledged.push(id);
    }
    server.crash();
    for _ in 0..5 {
        let (_, id, response) = post(send("during")).await;
        match response.status().as_u16() {
            200 => acknowledged.push(id),
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("{other} during the outage"),
        }
    }
    assert!(refused > 0, "deliveries during the outage were refused");
    let ready = served.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["failing"]["database"].is_string(), "{body}");

    server.restart();
    let back = Instant::now();
    loop {
        let (_, id, response) = post(send("after")).await;
        if response.status() == 200 {
            acknowledged.push(id);
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(30), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..5 {
        let (_, id, response) = post(send("after")).await;
        assert_eq!(response.status(), 200);
        acknowledged.push(id);
    }
    assert_eq!(served.get("/readyz").await.status(), 200);
    let stored: std::collections::HashSet<String> = site
        .archive()
        .deliveries()
        .into_iter()
        .filter_map(|d| d.delivery_id)
        .collect();
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged {id} was lost");
    }
    served.stop();
}

/// One instance of three is killed at a crash-suite failpoint while it holds a job (its lease
/// a minute long, as by default): the survivors see its heartbeat stop and finish its jobs
/// within 15 s of the kill, each session loaded exactly once.
async fn survivors_finish_the_jobs_of_an_instance_killed_at(point: &str) {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    use std::time::{Duration, Instant};
    let Some(server) = postgres(&format!("postgres::survivors_finish_the_jobs ({point})")) else {
        return;
    };
    let (_, _shared, sites) = instances(server, 3);
    let defaults = |command: &mut Command| {
        command.env_remove("CHATSINK_JOB_LEASE_SECS");
    };
    let storage = FakeServer::start().await;
    let rows = 3000;
    let mut sessions = Vec::new();
    for n in 0..3 {
        let session = format!("killed-{n}");
        let reply = if point == "download.mid" {
            Reply::Slow {
                body: simple_dump(&session, rows),
                chunk: 16 * 1024,
                pause: Duration::from_millis(20),
            }
        } else {
            Reply::Body(simple_dump(&session, rows))
        };
        storage.route(&format!("/{session}.csv"), vec![reply]);
        sessions.push(session);
    }
    // The first instance alone takes the deliveries and stops at the point with a job held.
    let armed = if point == "worker.before_claim" {
        format!("{point}=60000")
    } else {
        format!("worker.before_claim=300,{point}=60000")
    };
    let doomed = sites[0].start_with(&armed, defaults).await;
    for (n, session) in sessions.iter().enumerate() {
        let body = chat_synced(session, &storage.url(&format!("/{session}.csv")));
        let response = doomed.post(&body, &format!("kill-{n}")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    sites[0].wait_for_marker(point).await;
    let mut survivors = Vec::new();
    for site in &sites[1..] {
        survivors.push(site.start_with("", defaults).await);
    }
    doomed.kill();
    let killed = Instant::now();
    let archive = sites[1].archive();
    loop {
        let jobs = archive.jobs();
        if jobs.len() == 3
            && jobs
                .iter()
                .all(|j| j.state == chatsink::domain::JobState::Done)
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "{point}: not finished 15 s after the kill: {jobs:?}\n{}",
            sites[1].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{point}: survivors finished {:?} after the kill",
        killed.elapsed()
    );
    for session in &sessions {
        sites[1].assert_loaded_once(session, rows);
    }
    for s in survivors {
        s.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_the_jobs_of_an_instance_killed_before_claiming() {
    survivors_finish_the_jobs_of_an_instance_killed_at("worker.before_claim").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_the_jobs_of_an_instance_killed_while_downloading() {
    survivors_finish_the_jobs_of_an_instance_killed_at("download.mid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_the_jobs_of_an_instance_killed_mid_load() {
    survivors_finish_the_jobs_of_an_instance_killed_at("load.mid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_the_jobs_of_an_instance_killed_before_the_load_commits() {
    survivors_finish_the_jobs_of_an_instance_killed_at("load.before_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_finish_the_jobs_of_an_instance_killed_after_the_load_commits() {
    survivors_finish_the_jobs_of_an_instance_killed_at("load.after_commit").await;
}

/// A cursor from one instance continues on another, while another session loads: the pages
/// together are the session's messages, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cursor_from_one_instance_continues_on_another_while_sessions_load() {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    let Some(server) = postgres("postgres::a_cursor_from_one_instance_continues_on_another") else {
        return;
    };
    let (_, _shared, sites) = instances(server, 2);
    let (a, b) = (sites[0].start("").await, sites[1].start("").await);
    let storage = FakeServer::start().await;
    storage.route("/paged.csv", vec![Reply::Body(simple_dump("paged", 250))]);
    let body = chat_synced("paged", &storage.url("/paged.csv"));
    assert_eq!(a.post(&body, "paged-1").await.unwrap().status(), 200);
    let archive = sites[0].archive();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while archive.messages_of("paged").len() < 250 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        // Another session loads between pages, through whichever instance.
        let other = format!("other-{page}");
        storage.route(
            &format!("/{other}.csv"),
            vec![Reply::Body(simple_dump(&other, 30))],
        );
        let other_body = chat_synced(&other, &storage.url(&format!("/{other}.csv")));
        let via = if page % 2 == 0 { &b } else { &a };
        assert_eq!(via.post(&other_body, &other).await.unwrap().status(), 200);
        let path = match &cursor {
            Some(c) => format!("/v1/sessions/paged/messages?limit=40&cursor={c}"),
            None => "/v1/sessions/paged/messages?limit=40".to_owned(),
        };
        let served = if page % 2 == 0 { &a } else { &b };
        let response = served.get(&path).await;
        assert_eq!(response.status(), 200);
        let json: serde_json::Value = response.json().await.unwrap();
        seen.extend(
            json["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        match json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..250).map(|i| format!("paged-m{i}")).collect();
    assert_eq!(seen, expected, "nothing skipped or repeated, in order");
    a.stop();
    b.stop();
}

/// Transactions PostgreSQL rolls back with SQLSTATE 40001 (as CockroachDB and YugabyteDB do as a
/// matter of course) run again inside the store: real triggers raise `serialization_failure` on
/// the first inserts into the inbox and the first claims of jobs, and every delivery is still
/// answered 200 and loaded, with no job attempt spent. A conflict that never clears is answered
/// 503 with Retry-After, stores nothing, and the same delivery is accepted once it clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialization_failures_are_retried_and_a_lasting_one_is_answered_503() {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    let Some(server) = postgres("postgres::serialization_failures_are_retried") else {
        return;
    };
    let (url, _shared, sites) = instances(server, 1);
    let served = sites[0].start("").await;
    server.sql(
        &url,
        "CREATE TABLE planted_conflicts (tab text PRIMARY KEY, first_n bigint NOT NULL);
         INSERT INTO planted_conflicts VALUES ('inbox', 3), ('jobs', 3);
         CREATE SEQUENCE inbox_conflicts; CREATE SEQUENCE jobs_conflicts;
         CREATE FUNCTION plant_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             -- nextval is not rolled back with the failed transaction, so each try counts.
             IF nextval(TG_TABLE_NAME || '_conflicts')
                <= (SELECT first_n FROM planted_conflicts WHERE tab = TG_TABLE_NAME) THEN
                 RAISE EXCEPTION 'planted conflict' USING ERRCODE = 'serialization_failure';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER plant BEFORE INSERT ON inbox FOR EACH ROW EXECUTE FUNCTION plant_conflict();
         CREATE TRIGGER plant BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION plant_conflict();",
    );
    let storage = FakeServer::start().await;
    for n in 0..4 {
        storage.route(
            &format!("/c-{n}.csv"),
            vec![Reply::Body(simple_dump(&format!("conflict-{n}"), 5))],
        );
    }
    for n in 0..3 {
        let body = chat_synced(
            &format!("conflict-{n}"),
            &storage.url(&format!("/c-{n}.csv")),
        );
        let response = served.post(&body, &format!("conflict-{n}")).await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
    sites[0].wait_until_settled().await;
    for n in 0..3 {
        sites[0].assert_loaded_once(&format!("conflict-{n}"), 5);
    }
    let jobs = sites[0].archive().jobs();
    assert!(
        jobs.iter()
            .all(|j| j.state == chatsink::domain::JobState::Done && j.attempts == 1),
        "a conflict retried in the store spends no job attempt: {jobs:?}"
    );
    let metrics = served.get("/metrics").await.text().await.unwrap();
    let retries: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("chatsink_store_conflict_retries_total "))
        .expect("the retries are counted")
        .parse()
        .unwrap();
    assert!(retries >= 6.0, "3 intake and 3 claim conflicts: {retries}");

    // A conflict that does not clear: 503 with Retry-After, and nothing stored.
    server.sql(
        &url,
        "UPDATE planted_conflicts SET first_n = 1000000 WHERE tab = 'inbox'",
    );
    let body = chat_synced("conflict-3", &storage.url("/c-3.csv"));
    let response = served.post(&body, "conflict-3").await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        server.sql(
            &url,
            "SELECT count(*) FROM inbox WHERE session_id = 'conflict-3'"
        ),
        "0"
    );
    server.sql(
        &url,
        "UPDATE planted_conflicts SET first_n = 0 WHERE tab = 'inbox'",
    );
    let response = served.post(&body, "conflict-3").await.unwrap();
    assert_eq!(response.status(), 200);
    sites[0].wait_until_settled().await;
    sites[0].assert_loaded_once("conflict-3", 5);
    served.stop();
}

/// `chatsink copy-archive` moves an SQLite archive (copied while its `serve` runs) into an empty
/// PostgreSQL database keeping every id: each route answers the same on both, a cursor taken
/// from the SQLite instance continues on the PostgreSQL one, new deliveries get new ids there,
/// and a second copy into the same database is refused. Ends given the wrong way round are
/// refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_archive_moves_an_sqlite_archive_keeping_ids_and_refuses_a_full_destination() {
    use crate::helpers::{chat_synced, simple_dump, FakeServer, Reply};
    use crate::site::Site;
    let Some(server) = postgres("postgres::copy_archive_moves_an_sqlite_archive") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let sqlite_site = Site::on(root.path());
    let on_sqlite = sqlite_site.start("").await;
    let storage = FakeServer::start().await;
    for n in 0..3 {
        let mut dump = simple_dump(&format!("moved-{n}"), 15 + n);
        dump.extend_from_slice(
            format!("bad{n},u,moved-{n},m,A,perhaps,0,TEXT_MESSAGE,x,2026-06-03T10:00:00Z\r\n")
                .as_bytes(),
        );
        storage.route(&format!("/m-{n}.csv"), vec![Reply::Body(dump)]);
        let body = chat_synced(&format!("moved-{n}"), &storage.url(&format!("/m-{n}.csv")));
        let response = on_sqlite.post(&body, &format!("moved-{n}")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    sqlite_site.wait_until_settled().await;
    // moved-0 again, shorter: its last five messages go, leaving a gap in the message ids before
    // moved-1's (a copy that let PostgreSQL number the rows would shift every later id).
    storage.route(
        "/m-0-again.csv",
        vec![Reply::Body(simple_dump("moved-0", 10))],
    );
    let body = chat_synced("moved-0", &storage.url("/m-0-again.csv"));
    let response = on_sqlite.post(&body, "moved-0-again").await.unwrap();
    assert_eq!(response.status(), 200);
    sqlite_site.wait_until_settled().await;
    sqlite_site.assert_loaded_once("moved-0", 10);
    let routes = [
        "/v1/sessions",
        "/v1/sessions/moved-1",
        "/v1/sessions/moved-2/rejected",
        "/v1/messages?limit=1000",
        "/v1/messages?q=message&limit=1000",
        "/v1/messages?session=moved-0&order=desc&limit=1000",
        "/v1/messages?format=ndjson",
        "/v1/stats",
        "/v1/users",
    ];
    let mut before = Vec::new();
    for route in routes {
        let response = on_sqlite.get(route).await;
        assert_eq!(response.status(), 200, "{route}");
        before.push(response.text().await.unwrap());
    }
    let first_page: serde_json::Value = on_sqlite
        .get("/v1/messages?limit=10")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first_page["next_cursor"].as_str().unwrap().to_owned();
    let second_on_sqlite = on_sqlite
        .get(&format!("/v1/messages?limit=10&cursor={cursor}"))
        .await
        .text()
        .await
        .unwrap();

    // Copied while the SQLite instance still serves.
    let url = server.fresh_database();
    let copy = |to: &str| {
        Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .args(["copy-archive", "--from"])
            .arg(sqlite_site.db_path())
            .args(["--to", to])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let copied = copy(&url);
    assert!(copied.status.success(), "{}", text(&copied));
    assert!(
        text(&copied).contains("messages: 43 row(s)"),
        "{}",
        text(&copied)
    );
    on_sqlite.stop();

    let pg_site = Site::on_postgres(&url, root.path());
    let on_pg = pg_site.start("").await;
    for (route, expected) in routes.iter().zip(&before) {
        let response = on_pg.get(route).await;
        assert_eq!(response.status(), 200, "{route}");
        assert_eq!(&response.text().await.unwrap(), expected, "{route}");
    }
    let second_on_pg = on_pg
        .get(&format!("/v1/messages?limit=10&cursor={cursor}"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        second_on_pg, second_on_sqlite,
        "the SQLite cursor continues on PostgreSQL"
    );

    // New deliveries, jobs and messages continue after the copied ids.
    let ids_before: i64 = server
        .sql(&url, "SELECT max(id) FROM inbox")
        .parse()
        .unwrap();
    storage.route("/m-new.csv", vec![Reply::Body(simple_dump("moved-new", 4))]);
    let body = chat_synced("moved-new", &storage.url("/m-new.csv"));
    assert_eq!(on_pg.post(&body, "moved-new").await.unwrap().status(), 200);
    pg_site.wait_until_settled().await;
    pg_site.assert_loaded_once("moved-new", 4);
    assert_eq!(
        server.sql(&url, "SELECT max(id) FROM inbox"),
        (ids_before + 1).to_string()
    );
    on_pg.stop();

    // A destination that holds an archive is refused and left as it was.
    let again = copy(&url);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already holds an archive"),
        "{}",
        text(&again)
    );
    assert_eq!(server.sql(&url, "SELECT count(*) FROM messages"), "47");
    // The ends the wrong way round.
    let backwards = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["copy-archive", "--from", &url, "--to"])
        .arg(root.path().join("other.db"))
        .output()
        .unwrap();
    assert!(!backwards.status.success());
    assert!(text(&backwards).contains("--from"), "{}", text(&backwards));
    assert!(!text(&backwards).contains("hunter2"));
    assert!(!root.path().join("other.db").exists());
}
