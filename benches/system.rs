//! The whole-system benchmark: generates its own data (seeded), runs the release binary the way
//! operators do, measures each target of the speed issue against a reference measured in the
//! same run on the same disk, and prints one table.
//!
//!   cargo bench --bench system                           # everything, full size (~10 min)
//!   CHATSINK_BENCH_SCALE=0.1 cargo bench --bench system  # a tenth of the data, for a quick look
//!   CHATSINK_BENCH_ONLY=intake,ttq cargo bench --bench system
//!   CHATSINK_BENCH_ONLY=page cargo bench --bench system   # the analysts' page (needs Chromium)
//!   CHATSINK_BENCH_ONLY=purge,audit CHATSINK_BENCH_BASELINE_BIN=../base/target/release/chatsink \
//!       cargo bench --bench system   # retention beside intake; the audit log's cost per page
//!   CHATSINK_BENCH_DB=x.db CHATSINK_BENCH_ONLY=queries cargo bench --bench system
//!       # queries (or growth) on a database a previous run left in target/bench-work/ingest.db,
//!       # copied elsewhere first (the work dir is emptied at start), skipping the ingest
//!
//! Needs the `sqlite3` CLI for the references and `/usr/bin/time` for peak memory.

use base64::Engine;
use chatsink::domain::{MessageFilter, Order};
use chatsink::dumpgen;
use chatsink::store::sqlite::{message_page_sql, TextPlan};
use chatsink::webhook::sign_hmac;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "system/governance.rs"]
mod governance;
#[path = "system/page.rs"]
mod page;
#[path = "system/postgres.rs"]
mod postgres;

/// The binary under test: this build's, or `CHATSINK_BENCH_BIN` to compare another build.
fn bin() -> String {
    std::env::var("CHATSINK_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_chatsink").into())
}
const HMAC_KEY: &[u8] = b"bench-hmac-key-0123456789abcdefgh";
const TOKEN: &str = "bench-read-token-0123456789abcdef";

struct Figure {
    name: String,
    chatsink: String,
    reference: String,
    ratio: Option<f64>,
    target: String,
    /// `None` for a row that has no target (context only): it gets no verdict.
    met: Option<bool>,
}

fn main() {
    let scale: f64 = std::env::var("CHATSINK_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let only = std::env::var("CHATSINK_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    let work = PathBuf::from(
        std::env::var("CHATSINK_BENCH_DIR").unwrap_or_else(|_| "target/bench-work".into()),
    );
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let mut figures = Vec::new();
    eprintln!("bench: work dir {}, scale {scale}", work.display());

    let sessions = ((500.0 * scale).round() as usize).max(1);
    let reuse = std::env::var_os("CHATSINK_BENCH_DB").map(PathBuf::from);
    let ingest_db = reuse.clone().unwrap_or_else(|| work.join("ingest.db"));
    if wanted("ingest")
        || (reuse.is_none()
            && ["growth", "queries", "page", "purge", "audit"]
                .iter()
                .any(|p| wanted(p)))
    {
        figures.extend(bulk_ingest(&work, sessions, &work.join("ingest.db")));
    }
    if wanted("growth") {
        figures.push(growth(&work, &ingest_db, scale));
    }
    if wanted("intake") {
        figures.extend(runtime.block_on(intake(&work, scale)));
    }
    if wanted("queries") {
        figures.extend(runtime.block_on(queries(&work, &ingest_db)));
    }
    if wanted("ttq") {
        figures.push(runtime.block_on(time_to_queryable(&work)));
    }
    if wanted("page") {
        figures.extend(runtime.block_on(page::transcript_paint(&work, &ingest_db)));
    }
    if wanted("purge") {
        figures.extend(runtime.block_on(governance::purge_beside_intake(&work, &ingest_db)));
    }
    if wanted("audit") {
        let (dump, _) = bench_dump(&work, sessions);
        figures.extend(runtime.block_on(governance::audit_overhead(&work, &dump, &ingest_db)));
    }
    let pg_parts = ["pg-ingest", "pg-intake", "pg-queries"];
    if pg_parts.iter().any(|p| wanted(p)) {
        if let Some(pg) = postgres::Pg::start(&work) {
            let (dump, rows) = bench_dump(&work, sessions);
            let archive = if wanted("pg-ingest") || wanted("pg-queries") {
                let (found, archive) = postgres::bulk_ingest(&pg, &dump, rows);
                if wanted("pg-ingest") {
                    figures.extend(found);
                }
                Some(archive)
            } else {
                None
            };
            if wanted("pg-intake") {
                figures.extend(runtime.block_on(postgres::intake(&work, &pg, scale)));
            }
            if let (true, Some(archive)) = (wanted("pg-queries"), archive) {
                figures.extend(runtime.block_on(postgres::queries(&work, &pg, &archive)));
            }
        }
    }
    print_table(&figures, scale);
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: bulk ingest and its memory

/// Runs of each side of target 1; the median is reported. Runs alternate between chatsink and
/// the references, so a busy spell on the shared host falls on both.
const INGEST_RUNS: usize = 3;

/// The bench's dump (seeded), generated once per run: its path and row count.
fn bench_dump(work: &Path, sessions: usize) -> (PathBuf, u64) {
    static DONE: std::sync::OnceLock<(PathBuf, u64)> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let dump = work.join("dump.csv");
        let started = Instant::now();
        let mut file = BufWriter::new(std::fs::File::create(&dump).unwrap());
        let rows = dumpgen::write_dump(&mut file, 42, "bench-", sessions, 2000).unwrap();
        // On disk before anything is timed: the first run must not pay for writing it back.
        file.into_inner().unwrap().sync_all().unwrap();
        let bytes = std::fs::metadata(&dump).unwrap().len();
        eprintln!(
            "bench: generated {rows} rows, {:.0} MB in {:.1}s",
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        (dump, rows)
    })
    .clone()
}

fn bulk_ingest(work: &Path, sessions: usize, db: &Path) -> Vec<Figure> {
    let (dump, rows) = bench_dump(work, sessions);
    let bytes = std::fs::metadata(&dump).unwrap().len();

    let (mut ours, mut indexed, mut with_fts, mut bare) = (vec![], vec![], vec![], vec![]);
    let mut rss_kb = 0;
    for run in 0..INGEST_RUNS {
        for file in ["ref-indexed.db", "ref-bare.db"] {
            let _ = std::fs::remove_file(work.join(file));
        }
        let _ = std::fs::remove_dir_all(work.join("ingest-data"));
        let _ = std::fs::remove_file(db);
        let (secs, rss) = time_and_rss(
            Command::new(bin())
                .args(["ingest", "--database"])
                .arg(db)
                .arg("--data-dir")
                .arg(work.join("ingest-data"))
                .arg(&dump),
        );
        rss_kb = rss_kb.max(rss);
        ours.push(secs);
        // A fast wrong answer is no figure: every generated row must be in the archive.
        let loaded: i64 = rusqlite::Connection::open(db)
            .unwrap()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            loaded as u64, rows,
            "chatsink ingest loaded {loaded} of {rows} rows"
        );
        eprintln!(
            "bench: run {run}: chatsink ingest {secs:.1}s, peak RSS {} MB",
            rss / 1024
        );

        let secs = sqlite_import(
            &work.join("ref-indexed.db"),
            &dump,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
            "CREATE UNIQUE INDEX ref_id ON messages (sessionId, id);
             CREATE INDEX ref_time ON messages (createdAt);
             CREATE INDEX ref_session ON messages (sessionId, createdAt);
             CREATE INDEX ref_meeting ON messages (meetingId, createdAt);
             CREATE INDEX ref_user ON messages (participantId, createdAt);
             CREATE INDEX ref_kind ON messages (payloadType, createdAt);
             CREATE INDEX ref_pinned ON messages (pinned, createdAt);
             CREATE INDEX ref_edited ON messages (isEdited, createdAt);",
        );
        indexed.push(secs);
        // chatsink also builds a full-text index; the cheapest way for sqlite3 is one rebuild
        // after the import.
        let fts_started = Instant::now();
        run_sqlite(
            &work.join("ref-indexed.db"),
            "CREATE VIRTUAL TABLE fts USING fts5 (payload, displayName, content = 'messages',
                 tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO fts (fts) VALUES ('rebuild');",
        );
        with_fts.push(secs + fts_started.elapsed().as_secs_f64());
        bare.push(sqlite_import(
            &work.join("ref-bare.db"),
            &dump,
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;",
            "",
        ));
        eprintln!(
            "bench: run {run}: sqlite3 .import with indexes {:.1}s (plus the full-text index {:.1}s), bare {:.1}s",
            indexed[run], with_fts[run], bare[run]
        );
    }
    let (secs, indexed, with_fts, bare) = (
        median(&mut ours),
        median(&mut indexed),
        median(&mut with_fts),
        median(&mut bare),
    );

    let label = format!(
        "{rows} rows, {:.0} MB, median of {INGEST_RUNS}",
        bytes as f64 / 1e6
    );
    vec![
        Figure {
            name: format!("1. bulk ingest ({label}) vs indexed .import"),
            chatsink: format!("{secs:.1} s"),
            reference: format!("{indexed:.1} s"),
            ratio: Some(secs / indexed),
            target: "<= 0.5x".into(),
            met: Some(secs / indexed <= 0.5),
        },
        Figure {
            name: "1. bulk ingest vs indexed .import + FTS5 rebuild".into(),
            chatsink: format!("{secs:.1} s"),
            reference: format!("{with_fts:.1} s"),
            ratio: Some(secs / with_fts),
            target: "(context)".into(),
            met: None,
        },
        Figure {
            name: "1. bulk ingest vs bare .import (no index, no journal)".into(),
            chatsink: format!("{secs:.1} s"),
            reference: format!("{bare:.1} s"),
            ratio: Some(secs / bare),
            target: "<= 3x".into(),
            met: Some(secs / bare <= 3.0),
        },
        Figure {
            name: "2. peak RSS during that ingest".into(),
            chatsink: format!("{} MB", rss_kb / 1024),
            reference: "-".into(),
            ratio: None,
            target: "<= 150 MB".into(),
            met: Some(rss_kb / 1024 <= 150),
        },
    ]
}

/// Wall time and peak RSS (KiB) of a command, through `/usr/bin/time`.
fn time_and_rss(command: &mut Command) -> (f64, u64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .expect("/usr/bin/time runs");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "{command:?} failed");
    let text = std::fs::read_to_string(report.path()).unwrap();
    // No figure rather than a 0 MB that would pass the memory target.
    let rss = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time's report: {text:?}"));
    (secs, rss)
}

/// Seconds for the sqlite3 CLI to `.import` the dump into a table with the dump's columns.
fn sqlite_import(db: &Path, dump: &Path, pragmas: &str, indexes: &str) -> f64 {
    // Dot commands must start their line.
    let script = format!(
        "{pragmas}
         CREATE TABLE messages (id TEXT, participantId TEXT, sessionId TEXT, meetingId TEXT,
             displayName TEXT, pinned TEXT, isEdited TEXT, payloadType TEXT, payload TEXT, createdAt TEXT);
         {indexes}\n.mode csv\n.import --skip 1 {} messages\n",
        dump.display()
    );
    let started = Instant::now();
    run_sqlite(db, &script);
    started.elapsed().as_secs_f64()
}

fn run_sqlite(db: &Path, script: &str) -> String {
    let mut child = Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the sqlite3 CLI is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "sqlite3 failed");
    out
}

// ---------------------------------------------------------------------------------------------
// 3: growth

fn growth(work: &Path, ingest_db: &Path, scale: f64) -> Figure {
    let target_rows = (5_000_000.0 * scale) as i64;
    let big = work.join("big.db");
    std::fs::copy(ingest_db, &big).unwrap();
    let have: i64 = run_sqlite(&big, "SELECT count(*) FROM messages;")
        .trim()
        .parse()
        .unwrap();
    let sessions: i64 = run_sqlite(&big, "SELECT max(session_key) FROM sessions;")
        .trim()
        .parse()
        .unwrap();
    let copies = ((target_rows - have) as f64 / have as f64).ceil().max(0.0) as i64;
    let started = Instant::now();
    let mut script = String::from("PRAGMA journal_mode = WAL; BEGIN;");
    // Each copy of the loaded sessions is a new session a day later.
    for k in 1..=copies {
        script.push_str(&format!(
            "INSERT INTO sessions (session_id, meeting_id, sort_ms, status, updated_ms)
             SELECT session_id || '-copy{k}', meeting_id, sort_ms + {k} * 86400000, status, updated_ms
             FROM sessions WHERE session_key <= {sessions};
             INSERT INTO messages (id, session_key, meeting_key, user_key, display_name, kind, pinned, edited,
                                   link, file_name, file_size, payload, created_ms)
             SELECT m.id, c.session_key, m.meeting_key, m.user_key, m.display_name, m.kind, m.pinned, m.edited,
                    m.link, m.file_name, m.file_size, m.payload, m.created_ms + {k} * 86400000
             FROM messages m JOIN sessions s ON s.session_key = m.session_key
             JOIN sessions c ON c.session_id = s.session_id || '-copy{k}'
             WHERE m.seq <= {have};"
        ));
    }
    script.push_str("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild'); COMMIT; SELECT count(*) FROM messages;");
    let total = run_sqlite(&big, &script)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "bench: grew the archive to {} messages in {:.0}s",
        total.trim(),
        started.elapsed().as_secs_f64()
    );

    let mut empty_times = Vec::new();
    let mut big_times = Vec::new();
    for i in 0..5 {
        let session_file = work.join(format!("growth-{i}.csv"));
        dumpgen::write_dump(
            &mut BufWriter::new(std::fs::File::create(&session_file).unwrap()),
            1000 + i,
            &format!("growth-{i}-"),
            1,
            2000,
        )
        .unwrap();
        let empty = work.join(format!("empty-{i}.db"));
        // Create the schema first, with the build under test (an older build refuses a newer
        // schema), so both runs only load.
        let header = work.join("header-only.csv");
        std::fs::write(
            &header,
            format!("{}\r\n", chatsink::ingest::REQUIRED_COLUMNS.join(",")),
        )
        .unwrap();
        chatsink_quiet(&[
            "ingest",
            "--database",
            empty.to_str().unwrap(),
            header.to_str().unwrap(),
        ]);
        empty_times.push(timed(|| {
            chatsink_quiet(&[
                "ingest",
                "--database",
                empty.to_str().unwrap(),
                session_file.to_str().unwrap(),
            ])
        }));
        big_times.push(timed(|| {
            chatsink_quiet(&[
                "ingest",
                "--database",
                big.to_str().unwrap(),
                session_file.to_str().unwrap(),
            ])
        }));
        // A fast wrong answer is no figure: the session is whole in both databases.
        let session = dumpgen::session_id(&format!("growth-{i}-"), 0);
        for db in [&empty, &big] {
            let loaded: i64 = rusqlite::Connection::open(db)
                .unwrap()
                .query_row(
                    "SELECT count(*) FROM message_view WHERE session_id = ?1",
                    [&session],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(loaded, 2000, "{}: {session}", db.display());
        }
    }
    let (empty, big) = (median(&mut empty_times), median(&mut big_times));
    Figure {
        name: format!(
            "3. one 2,000-row session into {}M messages vs empty (median of 5)",
            total.trim().parse::<f64>().unwrap_or(0.0) / 1e6
        ),
        chatsink: format!("{:.0} ms", big * 1e3),
        reference: format!("{:.0} ms", empty * 1e3),
        ratio: Some(big / empty),
        target: "<= 2x".into(),
        met: Some(big / empty <= 2.0),
    }
}

fn chatsink_quiet(args: &[&str]) {
    let status = Command::new(bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .env(
            "CHATSINK_DATA_DIR",
            std::env::temp_dir().join("chatsink-bench-data"),
        )
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "chatsink {args:?}");
}

fn timed(f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 * p).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

/// A public key for instances that only take HMAC deliveries (so none fetches the real one).
fn test_pem() -> String {
    static PEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PEM.get_or_init(|| {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        RsaPublicKey::from(&key)
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// A served instance

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    /// SIGKILL: a graceful stop would wait out the jobs still downloading from the intake run's
    /// silent server (about 20 s per service), and what was acknowledged is on disk anyway.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(work: &Path, db: &Path, extra: &[(&str, &str)], rsa_pem: &str) -> Served {
    serve_binary(&bin(), work, db, extra, rsa_pem).await
}

/// [`serve`] with another build of chatsink (a baseline to compare with).
async fn serve_binary(
    binary: &str,
    work: &Path,
    db: &Path,
    extra: &[(&str, &str)],
    rsa_pem: &str,
) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key_file = work.join("rtk.pem");
    std::fs::write(&key_file, rsa_pem).unwrap();
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .env("CHATSINK_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHATSINK_DATABASE", db)
        .env("CHATSINK_DATA_DIR", work.join("serve-data"))
        .env(
            "CHATSINK_HMAC_SECRETS",
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(HMAC_KEY)
            ),
        )
        .env("CHATSINK_READ_TOKENS", TOKEN)
        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
        .env("CHATSINK_RTK_PUBLIC_KEY_FILE", &key_file)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let served = Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..400 {
        if client
            .get(format!("{}/healthz", served.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chatsink serve did not start");
}

// ---------------------------------------------------------------------------------------------
// 4: webhook intake

type Request = (Vec<u8>, Vec<(&'static str, String)>);

async fn intake(work: &Path, scale: f64) -> Vec<Figure> {
    // Reference: one-row synchronous=FULL commits on the same disk.
    let reference = {
        let conn = rusqlite::Connection::open(work.join("fsync-ref.db")).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(
            "PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB);",
        )
        .unwrap();
        let body = vec![b'x'; 600];
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                .unwrap();
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    eprintln!("bench: one-row synchronous=FULL commits: {reference:.0}/s");

    let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = RsaPublicKey::from(&private)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let silent_url = silent_server();
    let count = ((20_000.0 * scale) as usize).max(2000);
    let hmac = hmac_requests("hmac", count, &silent_url);
    // As many RSA deliveries as HMAC ones, signed on every core (a 2048-bit signature takes ~1 ms).
    let signer = SigningKey::<Sha256>::new(private);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rsa: Vec<Request> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (signer, silent_url) = (&signer, &silent_url);
                scope.spawn(move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| {
                            let body = dumpgen::chat_synced_body(&format!("rsa-{i}"), silent_url);
                            let signature = base64::engine::general_purpose::STANDARD
                                .encode(signer.sign(&body).to_bytes());
                            (
                                body,
                                vec![
                                    ("rtk-signature", signature),
                                    ("rtk-uuid", format!("rsa-{i}")),
                                ],
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    // Each scheme on its own service and fresh database, so the second run does not start with
    // the first one's deliveries and jobs.
    let mut figures = Vec::new();
    for (scheme, requests) in [("HMAC", hmac), ("RSA", rsa)] {
        let n = requests.len();
        let db = work.join(format!("intake-{}.db", scheme.to_lowercase()));
        let served = serve(work, &db, &[], &pem).await;
        let (server_before, client_before) = (
            cpu_seconds(served.child.id()),
            cpu_seconds(std::process::id()),
        );
        let (rate, mut latencies) = blast(&served.base, requests, 64).await;
        let per_delivery = |cpu: f64, before: f64| (cpu - before) * 1e6 / n as f64;
        let server_us = per_delivery(cpu_seconds(served.child.id()), server_before);
        let client_us = per_delivery(cpu_seconds(std::process::id()), client_before);
        let stored: i64 = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            stored, n as i64,
            "every acknowledged {scheme} delivery is stored"
        );
        drop(served);
        let p99 = percentile(&mut latencies, 0.99);
        let p50 = percentile(&mut latencies, 0.50);
        eprintln!("bench: intake {scheme}: {rate:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms, CPU per delivery: server {server_us:.0} us, senders {client_us:.0} us ({n} deliveries)");
        figures.push(Figure {
            name: format!("4. webhook intake, {scheme}, 64 senders ({n} deliveries)"),
            chatsink: format!("{rate:.0}/s"),
            reference: format!("{reference:.0}/s"),
            ratio: Some(rate / reference),
            target: ">= 2x".into(),
            met: Some(rate / reference >= 2.0),
        });
        figures.push(Figure {
            name: format!("4. webhook intake, {scheme}, p99 latency (p50 {p50:.1} ms)"),
            chatsink: format!("{p99:.1} ms"),
            reference: "-".into(),
            ratio: None,
            target: "<= 50 ms".into(),
            met: Some(p99 <= 50.0),
        });
    }
    figures
}

/// A download URL on a loopback server that accepts and then says nothing: every delivery
/// enqueues a real job, and the workers wait on it instead of competing for the disk.
fn silent_server() -> String {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/dump.csv", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// A delivery of `body` signed with the bench's HMAC key.
fn signed(body: Vec<u8>, id: &str) -> Request {
    let now = chrono::Utc::now().timestamp();
    let signature = sign_hmac(HMAC_KEY, id, now, &body);
    (
        body,
        vec![
            ("webhook-id", id.to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signature),
        ],
    )
}

/// `count` HMAC deliveries of distinct sessions (`<prefix>-<i>`) whose dumps are at `url`.
fn hmac_requests(prefix: &str, count: usize, url: &str) -> Vec<Request> {
    (0..count)
        .map(|i| {
            let body = dumpgen::chat_synced_body(&format!("{prefix}-{i}"), url);
            signed(body, &format!("msg_{prefix}_{i}"))
        })
        .collect()
}

/// Sends every request once from `senders` concurrent clients; returns deliveries/s and each
/// request's latency in ms. Anything but 200 aborts the run.
///
/// Each sender is one keep-alive HTTP/1.1 connection driven by hyper directly, with bodies and
/// headers prepared before the clock starts, as a load generator like wrk or oha does: sender
/// and service share this host's two cores, and reqwest's pooled client spent about twice the
/// CPU per request (27 us), taken from the service being measured.
async fn blast(base: &str, requests: Vec<Request>, senders: usize) -> (f64, Vec<f64>) {
    use http_body_util::{BodyExt, Full};
    use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};

    let address = base.trim_start_matches("http://").to_owned();
    let prepared: Vec<(bytes::Bytes, Vec<(HeaderName, HeaderValue)>)> = requests
        .into_iter()
        .map(|(body, headers)| {
            let mut headers: Vec<_> = headers
                .into_iter()
                .map(|(k, v)| {
                    (
                        HeaderName::from_static(k),
                        HeaderValue::try_from(v).unwrap(),
                    )
                })
                .collect();
            headers.push((HOST, HeaderValue::try_from(&address).unwrap()));
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
            (bytes::Bytes::from(body), headers)
        })
        .collect();
    let requests = Arc::new(prepared);
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::with_capacity(senders);
    for _ in 0..senders {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        connections.push(sender);
    }
    let started = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|mut sender| {
            let (requests, next) = (requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((body, headers)) = requests.get(i) else {
                        break;
                    };
                    let mut request = hyper::Request::post("/webhooks/realtimekit")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    request.headers_mut().extend(headers.iter().cloned());
                    let sent = Instant::now();
                    sender.ready().await.expect("connection open");
                    let response = sender.send_request(request).await.expect("delivery sent");
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    assert_eq!(status, 200, "delivery {i} answered {status}");
                    mine.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                mine
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests.len());
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = requests.len() as f64 / started.elapsed().as_secs_f64();
    (rate, latencies)
}

// ---------------------------------------------------------------------------------------------
// 5: queries

async fn queries(work: &Path, ingest_db: &Path) -> Vec<Figure> {
    let db = work.join("query.db");
    std::fs::copy(ingest_db, &db).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let user: String = conn
        .query_row(
            "SELECT p.user_id FROM messages m JOIN participants p ON p.user_key = m.user_key
             GROUP BY m.user_key ORDER BY count(*) DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let session: String = conn
        .query_row(
            "SELECT session_id FROM sessions ORDER BY session_id LIMIT 1 OFFSET 7",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let cases = query_cases(&user, &session);
    let served = serve(work, &db, &[], &test_pem()).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();
    let mut figures = Vec::new();
    for (name, query, filter) in cases {
        let url = format!("{}/v1/messages?{query}&limit=100", served.base);
        check_page(&client, &url, &filter).await;
        let cpu_before = cpu_seconds(served.child.id());
        let (rps, mut latencies) = hammer(&client, &url, 16, Duration::from_secs(4)).await;
        // CPU per request is steadier than requests/s on a shared host: it ignores stolen time.
        let cpu_ms = (cpu_seconds(served.child.id()) - cpu_before) * 1e3 / latencies.len() as f64;
        let p99 = percentile(&mut latencies, 0.99);
        let reference = sqlite_cli_query_ms(&db, &filter);
        eprintln!(
            "bench: query {name}: {rps:.0}/s, p99 {p99:.1} ms, server CPU {cpu_ms:.3} ms/request; sqlite3 CLI {reference:.2} ms"
        );
        figures.push(Figure {
            name: format!("5. /v1/messages {name}, 16 clients: p99 (sqlite3 CLI: plain SQL)"),
            chatsink: format!("{p99:.1} ms"),
            reference: format!("{reference:.2} ms"),
            ratio: Some(p99 / reference),
            target: "p99 <= 20 ms".into(),
            met: Some(p99 <= 20.0),
        });
        figures.push(Figure {
            name: format!("5. /v1/messages {name}, 16 clients: throughput"),
            chatsink: format!("{rps:.0}/s"),
            reference: "-".into(),
            ratio: None,
            target: ">= 2000/s".into(),
            met: Some(rps >= 2000.0),
        });
    }
    figures
}

/// The query figures' cases: a name, the query string and the filter it means.
fn query_cases(user: &str, session: &str) -> Vec<(&'static str, String, MessageFilter)> {
    vec![
        (
            "by user",
            format!("user={user}"),
            MessageFilter {
                users: vec![user.to_owned()],
                ..MessageFilter::default()
            },
        ),
        (
            "by type+pinned",
            "type=image&pinned=true".into(),
            MessageFilter {
                kinds: vec!["image".into()],
                pinned: Some(true),
                ..MessageFilter::default()
            },
        ),
        (
            "by session",
            format!("session={session}"),
            MessageFilter {
                session: Some(session.to_owned()),
                ..MessageFilter::default()
            },
        ),
        (
            "full-text q",
            "q=roadmap".into(),
            MessageFilter {
                text_query: Some(chatsink::domain::TextQuery::parse("roadmap").unwrap()),
                ..MessageFilter::default()
            },
        ),
    ]
}

/// One `/v1` answer as JSON, with the bench's token.
async fn get_page(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A fast wrong answer is no figure: the page holds rows, is full unless it is the last, and every
/// row matches the filter.
async fn check_page(client: &reqwest::Client, url: &str, filter: &MessageFilter) {
    let page = get_page(client, url).await;
    let messages = page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: {page}"));
    assert!(!messages.is_empty(), "{url}: the query finds rows");
    assert!(
        messages.len() == 100 || page["next_cursor"].is_null(),
        "{url}: a short page must be the last"
    );
    for m in messages {
        let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
        if !filter.users.is_empty() {
            assert!(filter.users.contains(&text("userId")), "{url}: {m}");
        }
        if !filter.kinds.is_empty() {
            assert!(filter.kinds.contains(&text("type")), "{url}: {m}");
        }
        if let Some(pinned) = filter.pinned {
            assert_eq!(m["pinned"].as_bool(), Some(pinned), "{url}: {m}");
        }
        if let Some(session) = &filter.session {
            assert_eq!(&text("sessionId"), session, "{url}: {m}");
        }
        if filter.text_query.is_some() {
            let haystack = format!(
                "{} {} {}",
                text("message"),
                text("name"),
                text("displayName")
            );
            assert!(haystack.to_lowercase().contains("roadmap"), "{url}: {m}");
        }
    }
}

/// User plus system CPU time of a process so far (Linux `/proc`; 0 elsewhere).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11..13]
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ, 100 on Linux
}

/// Requests `url` from `clients` concurrent clients for `length`; returns requests/s and ms.
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    length: Duration,
) -> (f64, Vec<f64>) {
    // Warm the page cache and the connection pool first.
    for _ in 0..20 {
        let _ = client.get(url).bearer_auth(TOKEN).send().await;
    }
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while started.elapsed() < length {
                    let sent = Instant::now();
                    let response = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
                    assert_eq!(response.status(), 200, "{url}");
                    let _ = response.bytes().await.unwrap();
                    mine.push(sent.elapsed().as_secs_f64() * 1e3);
                }
                mine
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rps = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (rps, latencies)
}

/// Milliseconds per execution, through the sqlite3 CLI, of chatsink's SQL for a page of `filter`
/// (rows with their stored keys; chatsink then looks up the page's ids. The collect-and-sort
/// form for `q`; chatsink may plan it differently). 100 runs in one
/// process with output discarded, or one run when a single one is slow.
fn sqlite_cli_query_ms(db: &Path, filter: &MessageFilter) -> f64 {
    let (sql, params) = message_page_sql(filter, Order::Asc, None, 100, TextPlan::Collect);
    let mut inlined = String::new();
    let mut params = params.into_iter();
    for part in sql.split('?') {
        inlined.push_str(part);
        if let Some(value) = params.next() {
            inlined.push_str(&match value {
                rusqlite::types::Value::Integer(i) => i.to_string(),
                rusqlite::types::Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
                other => panic!("unexpected parameter {other:?}"),
            });
        }
    }
    let time = |runs: usize| {
        let script = format!(
            ".output /dev/null\n{}",
            format!("{inlined};\n").repeat(runs)
        );
        let started = Instant::now();
        run_sqlite(db, &script);
        started.elapsed().as_secs_f64() * 1e3 / runs as f64
    };
    let once = time(1);
    if once > 50.0 {
        once
    } else {
        time(100)
    }
}

// ---------------------------------------------------------------------------------------------
// 6: time to queryable

async fn time_to_queryable(work: &Path) -> Figure {
    let runs = 15;
    let mut dumps = std::collections::HashMap::new();
    for i in 0..runs {
        let mut body = Vec::new();
        dumpgen::write_dump(&mut body, 5000 + i as u64, &format!("ttq-{i}-"), 1, 2000).unwrap();
        dumps.insert(format!("/ttq-{i}.csv"), body);
    }
    let storage = serve_files(dumps);
    let served = serve(work, &work.join("ttq.db"), &[], &test_pem()).await;
    let client = reqwest::Client::new();
    let mut times = Vec::new();
    for i in 0..runs {
        let session = dumpgen::session_id(&format!("ttq-{i}-"), 0);
        let body = dumpgen::chat_synced_body(&session, &format!("http://{storage}/ttq-{i}.csv"));
        let now = chrono::Utc::now().timestamp();
        let id = format!("ttq_{i}");
        let response = client
            .post(format!("{}/webhooks/realtimekit", served.base))
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sign_hmac(HMAC_KEY, &id, now, &body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let acknowledged = Instant::now();
        let url = format!("{}/v1/messages?session={session}&limit=1", served.base);
        loop {
            let page = get_page(&client, &url).await;
            if page["messages"].as_array().is_some_and(|m| !m.is_empty()) {
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(30),
                "never loaded"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(acknowledged.elapsed().as_secs_f64() * 1e3);
    }
    let mut sorted = times.clone();
    let median = median(&mut sorted);
    eprintln!("bench: time to queryable {times:.0?} ms");
    Figure {
        name: "6. webhook 2xx -> 2,000-row session queryable (median of 15)".into(),
        chatsink: format!("{median:.0} ms"),
        reference: "-".into(),
        ratio: None,
        target: "<= 500 ms".into(),
        met: Some(median <= 500.0),
    }
}

/// A loopback HTTP server playing S3: GET path -> body. Returns its address.
fn serve_files(files: std::collections::HashMap<String, Vec<u8>>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = match files.get(&path) {
                    Some(body) => ("200 OK", body.as_slice()),
                    None => ("404 Not Found", &b""[..]),
                };
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                let _ = stream.write_all(body);
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------

fn print_table(figures: &[Figure], scale: f64) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nchatsink system benchmark (scale {scale}; {} cores)\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    out.push_str("| figure | chatsink | reference | ratio | target | met |\n");
    out.push_str("|---|---:|---:|---:|---|---|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            f.name,
            f.chatsink,
            f.reference,
            f.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            f.target,
            match f.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            }
        ));
    }
    println!("{out}");
    let _ = std::fs::write("target/bench-results.md", out);
}
