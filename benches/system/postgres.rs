//! The PostgreSQL figures of the system benchmark, each against a reference measured in the same
//! run on the same server: its own throwaway cluster (PostgreSQL's server binaries, as the
//! `postgres` user when run as root) or `CHATSINK_BENCH_POSTGRES_URL`.
//!
//! - bulk ingest of the dump vs `psql \copy` of the same CSV into a table with the same indexes
//!   and a GIN index over `to_tsvector('simple', payload)`;
//! - intake with 64 senders vs pgbench's one-row INSERT transactions from one client (and 64);
//! - `/v1/messages` under 16 clients on the ingested archive;
//! - two instances on one database: intake and query throughput against one instance's, and a
//!   pass of real jobs in which no job is claimed twice.

use super::*;

/// A PostgreSQL server for the bench; a cluster of its own is stopped when this drops.
pub struct Pg {
    base: String,
    bin: Option<PathBuf>,
    cluster: Option<(PathBuf, bool)>,
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let (Some(bin), Some((data, as_postgres))) = (&self.bin, &self.cluster) {
            let _ = as_user(*as_postgres, &bin.join("pg_ctl"))
                .arg("-D")
                .arg(data)
                .args(["-m", "fast", "-w", "stop"])
                .output();
        }
    }
}

fn as_user(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Pg {
    /// The server, or `None` (said on stderr) when there is none to use.
    pub fn start(work: &Path) -> Option<Self> {
        if let Ok(url) = std::env::var("CHATSINK_BENCH_POSTGRES_URL") {
            let base = match url.trim_end_matches('/').rsplit_once('/') {
                Some((head, _)) if head.len() > "postgres://".len() => head.to_owned(),
                _ => url.trim_end_matches('/').to_owned(),
            };
            return Some(Self {
                base,
                bin: None,
                cluster: None,
            });
        }
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").is_file());
        let Some(bin) = bin else {
            eprintln!("bench: no PostgreSQL server binaries and no CHATSINK_BENCH_POSTGRES_URL: the PostgreSQL figures are skipped");
            return None;
        };
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = std::env::temp_dir().join(format!("chatsink-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let run = |program: &str, args: &[&str]| {
            let output = as_user(as_postgres, &bin.join(program))
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{program}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let data_arg = data.to_str().unwrap();
        run(
            "initdb",
            &[
                "-D",
                data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        // A stock server with durable commits: what an operator starts with.
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=300 -c shared_buffers=256MB",
            dir.display()
        );
        let log = dir.join("server.log");
        run(
            "pg_ctl",
            &[
                "-D",
                data_arg,
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        let _ = work;
        eprintln!("bench: PostgreSQL cluster on 127.0.0.1:{port}");
        Some(Self {
            base: format!("postgres://postgres@127.0.0.1:{port}"),
            bin: Some(bin),
            cluster: Some((data, as_postgres)),
        })
    }

    fn tool(&self, name: &str) -> PathBuf {
        match &self.bin {
            Some(bin) => bin.join(name),
            None => PathBuf::from(name),
        }
    }

    /// A new empty database, as a URL.
    pub fn fresh(&self, name: &str) -> String {
        let admin = format!("{}/postgres", self.base);
        self.psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
        self.psql(&admin, &format!("CREATE DATABASE {name}"));
        format!("{}/{name}", self.base)
    }

    /// Runs SQL with psql; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.tool("psql"))
            .arg(url)
            .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Transactions per second pgbench reports for `script` with `clients` for `seconds`.
    fn pgbench(&self, url: &str, script: &Path, clients: usize, seconds: u64) -> f64 {
        let output = Command::new(self.tool("pgbench"))
            .args([
                "-n",
                "-c",
                &clients.to_string(),
                "-j",
                "2",
                "-T",
                &seconds.to_string(),
                "-f",
            ])
            .arg(script)
            .arg(url)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "pgbench: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text.lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no tps in pgbench's report: {text}"))
    }
}

/// Runs of each side of the bulk ingest; the median is reported (alternating, as for SQLite).
const PG_INGEST_RUNS: usize = 2;

/// Bulk ingest of `dump` through `chatsink ingest` vs `psql \copy`. Leaves the last run's
/// archive in the database it returns, for the query figures.
pub fn bulk_ingest(pg: &Pg, dump: &Path, rows: u64) -> (Vec<Figure>, String) {
    let copy_sql =
        "CREATE TABLE messages (id TEXT, participantId TEXT, sessionId TEXT, meetingId TEXT,
             displayName TEXT, pinned TEXT, isEdited TEXT, payloadType TEXT, payload TEXT, createdAt TEXT);
         CREATE UNIQUE INDEX ref_id ON messages (sessionId, id);
         CREATE INDEX ref_time ON messages (createdAt);
         CREATE INDEX ref_session ON messages (sessionId, createdAt);
         CREATE INDEX ref_meeting ON messages (meetingId, createdAt);
         CREATE INDEX ref_user ON messages (participantId, createdAt);
         CREATE INDEX ref_kind ON messages (payloadType, createdAt);
         CREATE INDEX ref_pinned ON messages (pinned, createdAt);
         CREATE INDEX ref_edited ON messages (isEdited, createdAt);
         CREATE INDEX ref_search ON messages USING GIN (to_tsvector('simple', payload));";
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    let mut archive = String::new();
    for run in 0..PG_INGEST_RUNS {
        archive = pg.fresh("bench_ingest");
        // The schema first, so the run times the load alone (as the reference's does).
        let status = Command::new(bin())
            .args(["migrate", "--database", &archive])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let secs =
            timed(|| chatsink_quiet(&["ingest", "--database", &archive, dump.to_str().unwrap()]));
        let loaded: u64 = pg
            .psql(&archive, "SELECT count(*) FROM messages")
            .parse()
            .unwrap();
        assert_eq!(
            loaded, rows,
            "chatsink ingest loaded {loaded} of {rows} rows"
        );
        ours.push(secs);
        let by_hand = pg.fresh("bench_copy_ref");
        pg.psql(&by_hand, copy_sql);
        let secs_ref = timed(|| {
            pg.psql(
                &by_hand,
                &format!(
                    "\\copy messages FROM '{}' WITH (FORMAT csv, HEADER true)",
                    dump.display()
                ),
            );
        });
        reference.push(secs_ref);
        eprintln!("bench: PostgreSQL run {run}: chatsink ingest {secs:.1}s, psql \\copy with the same indexes + GIN {secs_ref:.1}s");
    }
    let (secs, reference) = (median(&mut ours), median(&mut reference));
    (
        vec![Figure {
            name: format!("P1. PostgreSQL bulk ingest ({rows} rows, median of {PG_INGEST_RUNS}) vs psql \\copy with the same indexes + GIN"),
            chatsink: format!("{secs:.1} s"),
            reference: format!("{reference:.1} s"),
            ratio: Some(secs / reference),
            target: "<= 1.0x".into(),
            met: Some(secs / reference <= 1.0),
        }],
        archive,
    )
}

/// Intake with 64 senders on one instance, then on two instances sharing the database, against
/// pgbench's one-row INSERT transactions; then a pass with real jobs across both instances.
pub async fn intake(work: &Path, pg: &Pg, scale: f64) -> Vec<Figure> {
    let reference_db = pg.fresh("bench_pgbench");
    pg.psql(
        &reference_db,
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)",
    );
    let script = work.join("insert.sql");
    std::fs::write(&script, "INSERT INTO t (body) VALUES (repeat('x', 600));\n").unwrap();
    let one = pg.pgbench(&reference_db, &script, 1, 5);
    let sixty_four = pg.pgbench(&reference_db, &script, 64, 5);
    eprintln!("bench: pgbench one-row INSERT transactions: 1 client {one:.0}/s, 64 clients {sixty_four:.0}/s");

    let silent = silent_server();
    let count = ((20_000.0 * scale) as usize).max(2000);
    let mut figures = Vec::new();

    // One instance.
    let url = pg.fresh("bench_intake_one");
    let served = serve_pg(work, &url, "one").await;
    let (rate_one, mut latencies) =
        blast(&served.base, hmac_requests("one", count, &silent), 64).await;
    let stored: usize = pg.psql(&url, "SELECT count(*) FROM inbox").parse().unwrap();
    assert_eq!(stored, count, "every acknowledged delivery is stored");
    drop(served);
    let p99 = percentile(&mut latencies, 0.99);
    let p50 = percentile(&mut latencies, 0.50);
    eprintln!(
        "bench: PostgreSQL intake, one instance: {rate_one:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms"
    );
    figures.push(Figure {
        name: format!("P2. PostgreSQL intake, HMAC, 64 senders ({count}) vs pgbench 1 client (64 clients: {sixty_four:.0}/s)"),
        chatsink: format!("{rate_one:.0}/s"),
        reference: format!("{one:.0}/s"),
        ratio: Some(rate_one / one),
        target: ">= 2x".into(),
        met: Some(rate_one / one >= 2.0),
    });
    figures.push(Figure {
        name: format!("P2. PostgreSQL intake p99 latency (p50 {p50:.1} ms)"),
        chatsink: format!("{p99:.1} ms"),
        reference: "-".into(),
        ratio: None,
        target: "<= 50 ms".into(),
        met: Some(p99 <= 50.0),
    });

    // Two instances on one database, 32 senders each.
    let url = pg.fresh("bench_intake_two");
    let a = serve_pg(work, &url, "two-a").await;
    let b = serve_pg(work, &url, "two-b").await;
    let half = count / 2;
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        blast(&a.base, hmac_requests("two-a", half, &silent), 32),
        blast(&b.base, hmac_requests("two-b", count - half, &silent), 32)
    );
    let rate_two = count as f64 / started.elapsed().as_secs_f64();
    let _ = (ra, rb);
    let stored: usize = pg.psql(&url, "SELECT count(*) FROM inbox").parse().unwrap();
    assert_eq!(stored, count, "every acknowledged delivery is stored");
    drop((a, b));
    eprintln!("bench: PostgreSQL intake, two instances: {rate_two:.0}/s");
    figures.push(Figure {
        name: "P4. PostgreSQL intake, two instances (32 senders each) vs one instance".into(),
        chatsink: format!("{rate_two:.0}/s"),
        reference: format!("{rate_one:.0}/s"),
        ratio: Some(rate_two / rate_one),
        target: ">= 1.0x".into(),
        met: Some(rate_two / rate_one >= 1.0),
    });

    // Real jobs across two instances: every one claimed once, every session's rows once.
    let sessions = 200;
    let mut dumps = std::collections::HashMap::new();
    for i in 0..sessions {
        let mut body = Vec::new();
        dumpgen::write_dump(&mut body, 9000 + i as u64, &format!("jobs-{i}-"), 1, 50).unwrap();
        dumps.insert(format!("/jobs-{i}.csv"), body);
    }
    let storage = serve_files(dumps);
    let url = pg.fresh("bench_jobs_two");
    let a = serve_pg(work, &url, "jobs-a").await;
    let b = serve_pg(work, &url, "jobs-b").await;
    let requests: Vec<Request> = (0..sessions)
        .map(|i| {
            let session = dumpgen::session_id(&format!("jobs-{i}-"), 0);
            signed(
                dumpgen::chat_synced_body(&session, &format!("http://{storage}/jobs-{i}.csv")),
                &format!("jobs-{i}"),
            )
        })
        .collect();
    let (first, second): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let started = Instant::now();
    tokio::join!(
        blast(&a.base, first.into_iter().map(|(_, r)| r).collect(), 8),
        blast(&b.base, second.into_iter().map(|(_, r)| r).collect(), 8)
    );
    loop {
        let open: i64 = pg
            .psql(&url, "SELECT count(*) FROM jobs WHERE state <> 'done'")
            .parse()
            .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{open} jobs never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded_in = started.elapsed().as_secs_f64();
    let twice: i64 = pg
        .psql(&url, "SELECT count(*) FROM jobs WHERE attempts <> 1")
        .parse()
        .unwrap();
    let messages: i64 = pg
        .psql(&url, "SELECT count(*) FROM messages")
        .parse()
        .unwrap();
    drop((a, b));
    assert_eq!(messages, sessions as i64 * 50, "every session's rows once");
    eprintln!("bench: two instances loaded {sessions} sessions in {loaded_in:.1}s; jobs claimed more than once: {twice}");
    figures.push(Figure {
        name: format!("P4. two instances, {sessions} real jobs: jobs claimed more than once"),
        chatsink: twice.to_string(),
        reference: "-".into(),
        ratio: None,
        target: "0".into(),
        met: Some(twice == 0),
    });
    figures
}

/// `/v1/messages` on the ingested archive, 16 clients, on one instance and then spread over two.
pub async fn queries(work: &Path, pg: &Pg, archive: &str) -> Vec<Figure> {
    let user = pg.psql(
        archive,
        "SELECT p.user_id FROM messages m JOIN participants p ON p.user_key = m.user_key
         GROUP BY p.user_id ORDER BY count(*) DESC LIMIT 1",
    );
    let session = pg.psql(
        archive,
        "SELECT session_id FROM sessions ORDER BY session_id LIMIT 1 OFFSET 7",
    );
    pg.psql(archive, "VACUUM ANALYZE");
    let cases = query_cases(&user, &session);
    let served = serve_pg(work, archive, "query-one").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap();
    let mut figures = Vec::new();
    let mut one_total = 0.0;
    for (name, query, filter) in &cases {
        let url = format!("{}/v1/messages?{query}&limit=100", served.base);
        check_page(&client, &url, filter).await;
        let (ours, theirs, bench) = (
            cpu_seconds(served.child.id()),
            postgres_cpu_seconds(),
            cpu_seconds(std::process::id()),
        );
        let (rps, mut latencies) = hammer(&client, &url, 16, Duration::from_secs(4)).await;
        let per = |now: f64, before: f64| (now - before) * 1e3 / latencies.len() as f64;
        let (ours, theirs, bench) = (
            per(cpu_seconds(served.child.id()), ours),
            per(postgres_cpu_seconds(), theirs),
            per(cpu_seconds(std::process::id()), bench),
        );
        one_total += rps;
        let p99 = percentile(&mut latencies, 0.99);
        eprintln!("bench: PostgreSQL query {name}: {rps:.0}/s, p99 {p99:.1} ms; CPU per request: chatsink {ours:.2} ms, PostgreSQL {theirs:.2} ms, the bench's clients {bench:.2} ms");
        figures.push(Figure {
            name: format!("P3. PostgreSQL /v1/messages {name}, 16 clients: p99"),
            chatsink: format!("{p99:.1} ms"),
            reference: "-".into(),
            ratio: None,
            target: "<= 20 ms".into(),
            met: Some(p99 <= 20.0),
        });
        figures.push(Figure {
            name: format!("P3. PostgreSQL /v1/messages {name}, 16 clients: throughput"),
            chatsink: format!("{rps:.0}/s"),
            reference: "-".into(),
            ratio: None,
            target: ">= 1500/s".into(),
            met: Some(rps >= 1500.0),
        });
    }
    let second = serve_pg(work, archive, "query-two").await;
    let mut two_total = 0.0;
    for (_, query, _) in &cases {
        let url_a = format!("{}/v1/messages?{query}&limit=100", served.base);
        let url_b = format!("{}/v1/messages?{query}&limit=100", second.base);
        let ((ra, _), (rb, _)) = tokio::join!(
            hammer(&client, &url_a, 8, Duration::from_secs(4)),
            hammer(&client, &url_b, 8, Duration::from_secs(4))
        );
        two_total += ra + rb;
    }
    let n = cases.len() as f64;
    let (one, two) = (one_total / n, two_total / n);
    eprintln!(
        "bench: PostgreSQL queries, mean over the cases: one instance {one:.0}/s, two {two:.0}/s"
    );
    figures.push(Figure {
        name: "P4. PostgreSQL query throughput, two instances (8 clients each) vs one (16)".into(),
        chatsink: format!("{two:.0}/s"),
        reference: format!("{one:.0}/s"),
        ratio: Some(two / one),
        target: ">= 1.0x".into(),
        met: Some(two / one >= 1.0),
    });
    figures
}

/// User plus system CPU of every PostgreSQL server process on this host so far.
fn postgres_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// An instance on the PostgreSQL database `url`, its data dir its own.
async fn serve_pg(work: &Path, url: &str, name: &str) -> Served {
    let data = work.join(format!("pg-{name}-data"));
    let data = data.to_str().unwrap();
    serve(
        work,
        Path::new("unused.db"),
        &[("CHATSINK_DATABASE", url), ("CHATSINK_DATA_DIR", data)],
        &test_pem(),
    )
    .await
}
