//! Sick storage, many senders at once, and broken dumps: the webhook answers 5xx while it cannot
//! store (so the sender retries), never acknowledges what it did not keep, and recovers.

use crate::helpers::*;
use crate::site::{free_port, Site};
use chatsink::domain::JobKind;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A small tmpfs mounted for one test, unmounted (lazily) when dropped. Mounting needs root; where
/// it is not allowed the test says so and is skipped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(test: &str, size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            skip(
                test,
                "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)",
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, options: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {options}");
    }

    /// Fills the filesystem with a file until writing fails for lack of space.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).and_then(|_| file.flush()).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status();
    }
}

/// SQLite's own check of the file (a test of the SQLite backend's storage under faults).
fn integrity(db: &rusqlite::Connection) -> String {
    db.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Serves a small dump per session from loopback and returns the signed body to post.
fn delivery(server: &FakeServer, session: &str, rows: usize) -> Vec<u8> {
    let path = format!("/{session}.csv");
    server.route(&path, vec![Reply::Body(simple_dump(session, rows))]);
    chat_synced(session, &server.url(&path))
}

async fn status_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_every_acknowledged_delivery_and_recovers() {
    let Some(fs) = Tmpfs::mount("a_full_disk_answers_503", "24m") else {
        return;
    };
    let app = spawn_app_with(AppOptions {
        dir: Some(fs.path().to_owned()),
        ..AppOptions::default()
            .arg("--job-backoff-cap-secs", "1")
            .arg("--job-max-attempts", "100")
    })
    .await;
    let server = FakeServer::start().await;
    let first = delivery(&server, "disk-0", 30);
    assert_eq!(app.post_rtk(&first).await.status(), 200);
    app.wait_for_jobs(Duration::from_secs(20)).await;

    let filler = fs.fill();
    // SQLite may still reuse space inside its WAL, so some deliveries can succeed: each must then
    // truly be stored. Keep sending until the disk refuses one.
    let mut acknowledged = vec![("disk-0".to_owned(), 30)];
    let mut refused = None;
    for n in 1..400 {
        let session = format!("disk-{n}");
        let body = delivery(&server, &session, 30);
        let (status, answer) = status_of(app.post_rtk_with_id(&body, &session).await).await;
        match status {
            200 => acknowledged.push((session, 30)),
            503 => {
                assert_eq!(answer["error"], "storage_unavailable", "{answer}");
                refused = Some((session, body));
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    let (session, body) = refused.expect("a full disk refuses a delivery");
    let (status, readiness) = status_of(app.get("/readyz").await).await;
    assert_eq!(status, 503);
    assert_eq!(
        readiness["failing"]["database"], "not writable",
        "{readiness}"
    );
    // Alive all the same: restarting would not free the disk.
    assert_eq!(app.get("/healthz").await.status(), 200);

    std::fs::remove_file(filler).unwrap();
    // The sender's retry of the refused delivery is now stored as new, not as a duplicate.
    let (status, answer) = status_of(app.post_rtk_with_id(&body, &session).await).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    acknowledged.push((session, 30));
    assert_eq!(app.get("/readyz").await.status(), 200);

    let jobs = app.wait_for_jobs(Duration::from_secs(60)).await;
    assert_eq!(jobs.len(), acknowledged.len());
    assert!(jobs.iter().all(|(_, state, _)| state == "done"), "{jobs:?}");
    for (session, rows) in &acknowledged {
        assert_eq!(app.messages_in(session), *rows as i64, "{session}");
    }
    if let Some(db) = app.sqlite() {
        assert_eq!(integrity(&db), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_hits_a_full_disk_rolls_back_retries_and_loads_once() {
    let Some(fs) = Tmpfs::mount("a_load_that_hits_a_full_disk", "48m") else {
        return;
    };
    let app = spawn_app_with(AppOptions {
        dir: Some(fs.path().to_owned()),
        ..AppOptions::default()
            .arg("--job-backoff-cap-secs", "1")
            .arg("--job-max-attempts", "100")
            .arg("--job-lease-secs", "2")
    })
    .await;
    // The delivery is stored before the disk fills; its dump (about 6 MB of rows) arrives slowly,
    // so the download or the load runs into the full disk.
    let server = FakeServer::start().await;
    let dump = simple_dump("disk-load", 60_000);
    server.route(
        "/disk-load.csv",
        vec![Reply::Slow {
            body: dump,
            chunk: 512 * 1024,
            pause: Duration::from_millis(40),
        }],
    );
    let body = chat_synced("disk-load", &server.url("/disk-load.csv"));
    assert_eq!(app.post_rtk(&body).await.status(), 200);
    let filler = fs.fill();
    // Let the attempt run into the full disk, then give the space back and wait for the failure
    // to be seen: the job recorded as failed, or claimed again once its lease lapsed. At that
    // moment the first attempt is over, so rows it had written would show if it had committed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.requests("/disk-load.csv") == 0 {
        assert!(Instant::now() < deadline, "{:?}", app.jobs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ne!(app.jobs()[0].1, "done", "{:?}", app.jobs());
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let job = app.only_job();
        let (state, attempts) = (job.state.as_str(), job.attempts);
        if state == "failed" || attempts >= 2 {
            break (state, attempts);
        }
        assert_ne!(state, "done", "the load cannot succeed on a full disk");
        assert!(
            Instant::now() < deadline,
            "no failed attempt: {state}, {attempts}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        app.messages_in("disk-load"),
        0,
        "a failed attempt leaves no rows ({failed:?})"
    );
    let jobs = app.wait_for_jobs(Duration::from_secs(60)).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    assert!(
        i64::from(app.only_job().attempts) >= 2,
        "the first attempt did not succeed"
    );
    assert_eq!(app.messages_in("disk-load"), 60_000);
    if let Some(db) = app.sqlite() {
        assert_eq!(integrity(&db), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_is_refused_clearly_and_served_again_once_writable() {
    // Linux refuses to remount a filesystem read-only while files on it are open for writing,
    // so the fault is applied between runs: stop, remount ro, start, remount rw, start.
    let Some(fs) = Tmpfs::mount("a_read_only_database_is_refused", "64m") else {
        return;
    };
    let site = Site::on(fs.path());
    let server = FakeServer::start().await;
    let served = site.start("").await;
    let body = delivery(&server, "ro-1", 25);
    assert_eq!(served.post(&body, "ro-1").await.unwrap().status(), 200);
    site.wait_until_settled().await;
    served.stop();

    fs.remount("ro");
    let mut child = site.command(free_port()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve kept running on a read-only database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let log = site.log();
    assert!(
        log.contains("cannot be written") && log.contains("chatsink.db"),
        "{log}"
    );

    fs.remount("rw");
    let served = site.start("").await;
    let body = delivery(&server, "ro-2", 25);
    assert_eq!(served.post(&body, "ro-2").await.unwrap().status(), 200);
    let jobs = site.wait_until_settled().await;
    assert_eq!(jobs.len(), 2);
    site.assert_loaded_once("ro-1", 25);
    site.assert_loaded_once("ro-2", 25);
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_moved_away_answers_503_creates_nothing_and_recovers_when_back() {
    // About the database file itself.
    if sqlite_only("a_database_moved_away_answers_503_creates_nothing_and_recovers_when_back") {
        return;
    }
    let app = spawn_app().await;
    let server = FakeServer::start().await;
    let first = delivery(&server, "moved-1", 10);
    assert_eq!(app.post_rtk(&first).await.status(), 200);
    app.wait_for_jobs(Duration::from_secs(20)).await;

    let aside = app.db_path.with_extension("moved");
    std::fs::rename(&app.db_path, &aside).unwrap();
    let second = delivery(&server, "moved-2", 10);
    let (status, answer) = status_of(app.post_rtk_with_id(&second, "moved-2").await).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    let (status, answer) = status_of(app.get("/v1/messages").await).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert!(
        !app.db_path.exists(),
        "no empty database is created in its place"
    );

    std::fs::rename(&aside, &app.db_path).unwrap();
    let (status, answer) = status_of(app.post_rtk_with_id(&second, "moved-2").await).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    let jobs = app.wait_for_jobs(Duration::from_secs(20)).await;
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|(_, s, _)| s == "done"), "{jobs:?}");
    assert_eq!(app.message_count(), 20);
    if let Some(db) = app.sqlite() {
        assert_eq!(integrity(&db), "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_underneath_is_never_written_to_an_unlinked_file() {
    // About the database file itself.
    if sqlite_only("a_database_deleted_underneath_is_never_written_to_an_unlinked_file") {
        return;
    }
    let app = spawn_app().await;
    let server = FakeServer::start().await;
    assert_eq!(
        app.post_rtk(&delivery(&server, "gone-1", 5)).await.status(),
        200
    );
    app.wait_for_jobs(Duration::from_secs(20)).await;
    std::fs::remove_file(&app.db_path).unwrap();
    for n in 0..3 {
        let body = delivery(&server, &format!("gone-{n}-again"), 5);
        assert_eq!(app.post_rtk(&body).await.status(), 503);
    }
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert!(!app.db_path.exists());
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_senders_with_duplicates_while_analysts_query_and_cron_reprocesses() {
    let app = spawn_app_with(AppOptions::default().arg("--workers", "4")).await;
    let server = FakeServer::start().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
    // 50 sessions, one original delivery each; 150 more posts are retries (same rtk-uuid), the
    // same body under a new id, or the same body signed with HMAC.
    let sessions: Vec<(String, usize, Vec<u8>)> = (0..50)
        .map(|i| {
            let session = format!("busy-{i:02}");
            let rows = rng.gen_range(50..400);
            let body = delivery(&server, &session, rows);
            (session, rows, body)
        })
        .collect();
    #[derive(Clone)]
    enum Send {
        Rtk(usize, String),
        Hmac(usize),
    }
    let mut sends: Vec<Send> = (0..50).map(|i| Send::Rtk(i, format!("orig-{i}"))).collect();
    for _ in 0..150 {
        let i = rng.gen_range(0..50);
        sends.push(match rng.gen_range(0..3) {
            0 => Send::Rtk(i, format!("orig-{i}")),
            1 => Send::Rtk(i, uuid::Uuid::new_v4().to_string()),
            _ => Send::Hmac(i),
        });
    }
    sends.shuffle(&mut rng);

    let app = std::sync::Arc::new(app);
    let sessions = std::sync::Arc::new(sessions);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(sends));
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (app, sessions, queue) = (app.clone(), sessions.clone(), queue.clone());
        senders.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(send) = next else { break };
                let response = match &send {
                    Send::Rtk(i, id) => app.post_rtk_with_id(&sessions[*i].2, id).await,
                    Send::Hmac(i) => app.post_hmac(&sessions[*i].2, HMAC_KEY, now_secs()).await,
                };
                let (status, body) = status_of(response).await;
                answers.push((status, body["status"].as_str().unwrap_or("").to_owned()));
            }
            answers
        }));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut analysts = Vec::new();
    for a in 0..4 {
        let (app, stop) = (app.clone(), stop.clone());
        analysts.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = match (a + n) % 4 {
                    0 => format!("/v1/messages?session=busy-{:02}&limit=50", n % 50),
                    1 => "/v1/messages?user=user-1&type=text&limit=100".to_owned(),
                    2 => "/v1/stats".to_owned(),
                    _ => "/v1/sessions?limit=20".to_owned(),
                };
                statuses.push(app.get(&path).await.status().as_u16());
                n += 1;
            }
            statuses
        }));
    }
    // Cron: `reprocess --all` twice while the deliveries are still arriving and loading.
    let cron = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            (0..2)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(150));
                    std::process::Command::new(env!("CARGO_BIN_EXE_chatsink"))
                        .args(["reprocess", "--all"])
                        .env("CHATSINK_DATABASE", &app.db_path)
                        .env("CHATSINK_DATA_DIR", &app.data_dir)
                        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
                        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
                        .env("RUST_LOG", "warn")
                        .output()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
    };

    let mut answers = Vec::new();
    for sender in senders {
        answers.extend(sender.await.unwrap());
    }
    let runs = cron.await.unwrap();
    let jobs = app.wait_for_jobs(Duration::from_secs(60)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut query_statuses = Vec::new();
    for analyst in analysts {
        query_statuses.extend(analyst.await.unwrap());
    }

    assert_eq!(answers.len(), 200);
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let accepted = answers.iter().filter(|(_, s)| s == "accepted").count();
    assert_eq!(accepted, 50, "one accepted delivery per distinct body");
    let failed: Vec<_> = query_statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty() && query_statuses.len() > 20,
        "{} of {} queries failed: {:?}",
        failed.len(),
        query_statuses.len(),
        &failed[..failed.len().min(10)]
    );
    for run in &runs {
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "reprocess: {stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
    }
    assert!(jobs.iter().all(|(_, state, _)| state == "done"), "{jobs:?}");
    assert_eq!(app.jobs_where(|j| j.kind == JobKind::Delivery), 50);
    let max_attempts = app.archive.jobs().iter().map(|j| j.attempts).max();
    assert_eq!(max_attempts, Some(1), "no job was claimed twice");
    for (session, rows, _) in sessions.iter() {
        let stored = app.archive.messages_of(session);
        let distinct: std::collections::HashSet<&str> =
            stored.iter().map(|m| m.id.as_str()).collect();
        let recorded = app.archive.session(session).unwrap().message_count;
        assert_eq!(
            (stored.len(), distinct.len(), recorded),
            (*rows, *rows, *rows as i64)
        );
    }
}
