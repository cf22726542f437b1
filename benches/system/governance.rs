//! Figures 8 and 9: retention's purge beside webhook intake, and what the audit log costs a
//! query page.

use super::{bin, hmac_requests, percentile, serve, serve_binary, silent_server, test_pem};
use super::{Figure, TOKEN};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One webhook delivery every `PACE` from one sender, with each answer's latency in ms, until
/// `until` says stop.
async fn paced_deliveries(base: &str, prefix: &str, mut until: impl FnMut() -> bool) -> Vec<f64> {
    const PACE: Duration = Duration::from_millis(10);
    let client = reqwest::Client::new();
    let url = silent_server();
    let mut latencies = Vec::new();
    let mut i = 0;
    while !until() {
        let (body, headers) = hmac_requests(&format!("{prefix}-{i}"), 1, &url)
            .pop()
            .expect("one request");
        let mut request = client
            .post(format!("{base}/webhooks/realtimekit"))
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let sent = Instant::now();
        let answer = request.send().await.expect("delivery sent");
        assert_eq!(answer.status(), 200, "a delivery during the purge");
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        i += 1;
        tokio::time::sleep(PACE.saturating_sub(sent.elapsed())).await;
    }
    latencies
}

/// The number before `end` after the last `label` in `said` (a figure a command printed).
fn printed(said: &str, label: &str, end: &str) -> f64 {
    said.rsplit(label)
        .next()
        .and_then(|t| t.split(end).next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {said:?}"))
}

/// 8, erasure by id: `chatsink erase --user` for the archive's three busiest participants, one
/// after another, while `serve` takes a webhook every 10 ms. These erasures scrub (secure-delete
/// in the full-text index, zeroed pages, the WAL truncated), so their steps are the costliest.
async fn erase_the_busiest(work: &Path, db: &Path, base: &str) -> Figure {
    let users: Vec<String> = rusqlite::Connection::open(db)
        .unwrap()
        .prepare(
            "SELECT p.user_id FROM messages m JOIN participants p ON p.user_key = m.user_key
             GROUP BY m.user_key ORDER BY count(*) DESC LIMIT 3",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let (db, data) = (db.to_owned(), work.join("serve-data"));
    let erasing = std::thread::spawn(move || {
        users
            .iter()
            .map(|user| {
                let output = Command::new(bin())
                    .args(["erase", "--user", user])
                    .env("CHATSINK_DATABASE", &db)
                    .env("CHATSINK_DATA_DIR", &data)
                    .env("RUST_LOG", "error")
                    .output()
                    .unwrap();
                assert!(output.status.success(), "erase failed");
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            })
            .collect::<Vec<_>>()
    });
    let mut answers = paced_deliveries(base, "erasing", || erasing.is_finished()).await;
    let said = erasing.join().unwrap();
    let messages: f64 = said.iter().map(|s| printed(s, ": ", " messages")).sum();
    let longest = said
        .iter()
        .map(|s| printed(s, "the longest ", " ms)"))
        .fold(0.0, f64::max);
    for line in &said {
        eprintln!("bench: {line}");
    }
    eprintln!(
        "bench: webhook answers beside the erasures: p50 {:.1} ms, p99 {:.1} ms ({})",
        percentile(&mut answers, 0.50),
        percentile(&mut answers, 0.99),
        answers.len()
    );
    longest_hold(
        format!("8. erasure by id of the 3 busiest participants ({messages} messages): longest transaction holding the writer"),
        longest,
    )
}

/// A figure for the longest an erasure held SQLite's writer, against the 100 ms.
fn longest_hold(name: String, longest_ms: f64) -> Figure {
    Figure {
        name,
        chatsink: format!("{longest_ms:.0} ms"),
        reference: "-".into(),
        ratio: None,
        target: "<= 100 ms".into(),
        met: Some(longest_ms <= 100.0),
    }
}

/// 8: `chatsink purge` removes the whole 1M-message archive (every session is older than a
/// day) while `serve` takes a webhook every 10 ms on the same SQLite file. Reference: the same
/// deliveries for as long with no purge running, in the same run.
pub async fn purge_beside_intake(work: &Path, ingest_db: &Path) -> Vec<Figure> {
    let db = work.join("purge.db");
    std::fs::copy(ingest_db, &db).unwrap();
    let messages = |db: &Path| -> i64 {
        rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap()
    };
    let served = serve(work, &db, &[], &test_pem()).await;
    let quiet_until = Instant::now() + Duration::from_secs(5);
    let mut quiet = paced_deliveries(&served.base, "quiet", || Instant::now() > quiet_until).await;
    let erasures = erase_the_busiest(work, &db, &served.base).await;
    let before = messages(&db);
    let started = Instant::now();
    let mut purge = Command::new(bin())
        .args(["purge", "--older-than", "1d", "--yes"])
        .env("CHATSINK_DATABASE", &db)
        .env("CHATSINK_DATA_DIR", work.join("serve-data"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut busy = paced_deliveries(&served.base, "busy", || {
        purge.try_wait().expect("purge runs").is_some()
    })
    .await;
    let took = started.elapsed().as_secs_f64();
    let output = purge.wait_with_output().unwrap();
    assert!(output.status.success(), "purge failed");
    let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    drop(served);
    // A fast wrong answer is no figure: every message of the archive is gone.
    let after = messages(&db);
    assert_eq!(after, 0, "purge left {after} of {before} messages ({said})");
    eprintln!("bench: purge: {said} in {took:.1} s");
    let (quiet_p99, busy_p99) = (percentile(&mut quiet, 0.99), percentile(&mut busy, 0.99));
    let (quiet_p50, busy_p50) = (percentile(&mut quiet, 0.50), percentile(&mut busy, 0.50));
    let busy_max = busy.iter().copied().fold(0.0, f64::max);
    let quiet_max = quiet.iter().copied().fold(0.0, f64::max);
    // "... (N steps and K index merges, p99 P ms, the longest M ms)": each is one transaction
    // holding the writer.
    let (longest, p99_held) = (
        printed(&said, "the longest ", " ms)"),
        printed(&said, "p99 ", " ms,"),
    );
    eprintln!(
        "bench: webhook answers beside the purge: p50 {busy_p50:.1} ms, p99 {busy_p99:.1} ms, max {busy_max:.1} ms ({} deliveries); without: p50 {quiet_p50:.1} ms, p99 {quiet_p99:.1} ms, max {quiet_max:.1} ms ({})",
        busy.len(),
        quiet.len()
    );
    vec![
        erasures,
        Figure {
            name: format!("8. retention purge of {before} messages beside intake"),
            chatsink: format!("{took:.1} s"),
            reference: "-".into(),
            ratio: None,
            target: "-".into(),
            met: None,
        },
        longest_hold(
            format!("8. the purge's longest transaction holding the writer (p99 {p99_held:.0} ms)"),
            longest,
        ),
        Figure {
            name: format!(
                "8. webhook p99 while the purge runs (p50 {busy_p50:.1} ms, max {busy_max:.0} ms)"
            ),
            chatsink: format!("{busy_p99:.1} ms"),
            reference: format!("{quiet_p99:.1} ms"),
            ratio: Some(busy_p99 / quiet_p99.max(0.1)),
            target: "<= 100 ms".into(),
            met: Some(busy_p99 <= 100.0),
        },
    ]
}

/// 9: a page of messages from this build (which writes an audit entry per request) against the
/// same page from `CHATSINK_BENCH_BASELINE_BIN`, a build from before the audit log, each on its
/// own copy of the same archive, rounds alternating so a busy spell falls on both.
pub async fn audit_overhead(work: &Path, dump: &Path, ingest_db: &Path) -> Vec<Figure> {
    let Ok(baseline) = std::env::var("CHATSINK_BENCH_BASELINE_BIN") else {
        eprintln!("bench: figure 9 needs CHATSINK_BENCH_BASELINE_BIN, a chatsink built before the audit log (git worktree add ../base 4849fc6 && cargo build --release); not measured");
        return Vec::new();
    };
    let ours = work.join("audit-ours.db");
    std::fs::copy(ingest_db, &ours).unwrap();
    let theirs = work.join("audit-baseline.db");
    let loaded = Command::new(&baseline)
        .args(["ingest", "--database"])
        .arg(&theirs)
        .arg(dump)
        .env("CHATSINK_DATA_DIR", work.join("baseline-data"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(loaded.success(), "the baseline build's ingest failed");
    let ours_served = serve(work, &ours, &[], &test_pem()).await;
    let theirs_served = serve_binary(&baseline, work, &theirs, &[], &test_pem()).await;
    let client = reqwest::Client::new();
    let paths = [
        "/v1/messages?limit=100",
        "/v1/messages?limit=100&order=desc",
        "/v1/messages?type=file&limit=100",
        "/v1/sessions?limit=100",
    ];
    let page = |base: String| {
        let client = client.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..25 {
                for path in paths {
                    let sent = Instant::now();
                    let answer = client
                        .get(format!("{base}{path}"))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 200);
                    let body: serde_json::Value = answer.json().await.unwrap();
                    // A fast wrong answer is no figure: a full page.
                    let rows = body["messages"]
                        .as_array()
                        .or(body["sessions"].as_array())
                        .map_or(0, Vec::len);
                    assert_eq!(rows, 100, "{path}");
                    times.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            }
            times
        }
    };
    let (mut ours_ms, mut theirs_ms) = (Vec::new(), Vec::new());
    for _ in 0..8 {
        ours_ms.extend(page(ours_served.base.clone()).await);
        theirs_ms.extend(page(theirs_served.base.clone()).await);
    }
    let audited: i64 = rusqlite::Connection::open(&ours)
        .unwrap()
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(
        audited as usize >= ours_ms.len() * 9 / 10,
        "the pages were audited ({audited} entries for {} requests)",
        ours_ms.len()
    );
    let (ours_p50, theirs_p50) = (
        percentile(&mut ours_ms, 0.5),
        percentile(&mut theirs_ms, 0.5),
    );
    let ratio = ours_p50 / theirs_p50;
    eprintln!(
        "bench: a page with its audit entry: p50 {ours_p50:.2} ms; before the audit log: {theirs_p50:.2} ms ({} pages each)",
        ours_ms.len()
    );
    vec![Figure {
        name: "9. a query page, audited, against a build without the audit log (p50)".into(),
        chatsink: format!("{ours_p50:.2} ms"),
        reference: format!("{theirs_p50:.2} ms"),
        ratio: Some(ratio),
        target: "<= 1.05x".into(),
        met: Some(ratio <= 1.05),
    }]
}
