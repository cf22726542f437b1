#![allow(dead_code)]

use base64::Engine;
use chatsink::config::Cli;
use chatsink::domain::{
    DeliveryRecord, Job, MessageFilter, MessageRow, Order, SessionRecord, StoredRejectedRow,
    TextQuery,
};
use chatsink::startup::Application;
use chatsink::store::Store;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rusqlite::Connection;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const HMAC_KEY: &[u8] = b"chatsink-test-hmac-key-0123456789";
pub const HMAC_KEY_2: &[u8] = b"second-rotated-key-abcdefghijklmn";
pub const READ_TOKEN: &str = "test-read-token-0123456789abcdef";

/// One RSA key pair per test binary (generation is the slow part), plus a second, wrong one.
pub fn rsa_keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        (
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

pub fn public_pem(key: &RsaPrivateKey) -> String {
    RsaPublicKey::from(key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}

/// Signs like RealtimeKit: base64 RSASSA-PKCS1-v1_5 SHA-256 over the raw body.
pub fn rtk_sign(key: &RsaPrivateKey, body: &[u8]) -> String {
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
}

pub fn whsec(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Runs a future to its end, for a test without a runtime of its own.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The archive as chatsink's own store reads it: typed views for tests, through the same use
/// cases the service calls, so what a test sees does not depend on the backend. Each call runs
/// on a thread of its own, so it works from sync and async tests alike.
pub struct Archive {
    store: Store,
}

/// No read of a test's archive needs a budget.
const NO_BUDGET: Duration = Duration::from_secs(600);

impl Archive {
    pub fn open(path: &Path) -> Self {
        Self {
            store: Store::open(path).expect("the test database opens"),
        }
    }

    /// The archive at a `CHATSINK_DATABASE` value: an SQLite path or a PostgreSQL URL.
    pub fn at(location: &str) -> Self {
        let location = chatsink::store::DatabaseLocation::parse(location).unwrap();
        let store = std::thread::scope(|scope| {
            scope
                .spawn(|| block_on(Store::connect(&location, 4)))
                .join()
                .unwrap()
        })
        .expect("the test database opens");
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn run<T: Send>(&self, work: impl std::future::Future<Output = T> + Send) -> T {
        std::thread::scope(|scope| scope.spawn(|| block_on(work)).join().unwrap())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs = self.run(self.store.jobs(None, u32::MAX)).unwrap();
        jobs.reverse();
        jobs
    }

    /// Every stored delivery, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        let mut deliveries = self.run(self.store.deliveries(u32::MAX)).unwrap();
        deliveries.reverse();
        deliveries
    }

    pub fn session(&self, id: &str) -> Option<SessionRecord> {
        self.run(self.store.session(id, None, NO_BUDGET)).unwrap()
    }

    /// Every session, newest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.run(self.store.session_page(None, None, u32::MAX, NO_BUDGET))
            .unwrap()
    }

    /// Every message `filter` selects, in time order.
    pub fn messages(&self, filter: MessageFilter) -> Vec<MessageRow> {
        self.run(
            self.store
                .message_page(&filter, Order::Asc, None, u32::MAX, NO_BUDGET),
        )
        .unwrap()
    }

    pub fn all_messages(&self) -> Vec<MessageRow> {
        self.messages(MessageFilter::default())
    }

    pub fn messages_of(&self, session: &str) -> Vec<MessageRow> {
        self.messages(MessageFilter {
            session: Some(session.to_owned()),
            ..MessageFilter::default()
        })
    }

    /// The messages a full-text `q` finds.
    pub fn search(&self, q: &str) -> Vec<MessageRow> {
        self.messages(MessageFilter {
            text_query: Some(TextQuery::parse(q).unwrap()),
            ..MessageFilter::default()
        })
    }

    /// The dump the session was last loaded from.
    pub fn dump(&self, session: &str) -> Option<chatsink::domain::SessionDump> {
        let id = chatsink::domain::SessionId::parse(session).unwrap();
        self.run(self.store.stored_dump(&id)).unwrap()
    }

    /// A session's rejected rows, in file order.
    pub fn rejected(&self, session: &str) -> Vec<StoredRejectedRow> {
        self.run(self.store.rejected_page(session, None, u32::MAX, NO_BUDGET))
            .unwrap()
    }
}

pub struct TestApp {
    pub address: String,
    pub db_path: PathBuf,
    pub data_dir: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub server: tokio::task::JoinHandle<()>,
    pub archive: Archive,
}

/// Extra `serve` flags per test; the defaults point at a temp dir with a test RSA key and HMAC
/// secret, downloads allowed from loopback over http.
#[derive(Default, Clone)]
pub struct AppOptions {
    pub args: Vec<String>,
    pub allow_hosts: Option<String>,
    pub dir: Option<PathBuf>,
    /// Another app's database (`TestApp::db_path`), to serve the same archive twice.
    pub database: Option<PathBuf>,
}

impl AppOptions {
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.args.push(flag.into());
        self.args.push(value.into());
        self
    }
    pub fn allow_hosts(mut self, hosts: &str) -> Self {
        self.allow_hosts = Some(hosts.into());
        self
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// For a test of the SQLite backend's own storage: on PostgreSQL it says so and is not run (it
/// has nothing to test there; it is no skip of something that should have run).
pub fn sqlite_only(test: &str) -> bool {
    if on_postgres() {
        eprintln!("SQLITE-ONLY {test}: not run on PostgreSQL");
        return true;
    }
    false
}

/// Whether this test binary runs its apps on PostgreSQL: `tests/suite_postgres.rs` compiles
/// this same suite again, and there every app gets a fresh database on the test server (see
/// `pg.rs`). Without a server, that binary says so for each app and runs it on SQLite.
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "suite_postgres"
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let base = options.dir.clone().unwrap_or_else(|| dir.path().to_owned());
    // `db_path` is what CHATSINK_DATABASE says: a file, or a PostgreSQL URL.
    let server = (on_postgres() && options.dir.is_none())
        .then(|| {
            crate::pg::postgres("suite_postgres: an app on PostgreSQL (run on SQLite instead)")
        })
        .flatten();
    let db_path = match (&options.database, server) {
        (Some(database), _) => database.clone(),
        (None, Some(server)) => PathBuf::from(server.fresh_database()),
        (None, None) => base.join("chatsink.db"),
    };
    let data_dir = base.join("data");
    let key_path = dir.path().join("rtk.pem");
    std::fs::write(&key_path, public_pem(&rsa_keys().0)).unwrap();
    let mut args: Vec<String> = vec![
        "chatsink".into(),
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--database".into(),
        db_path.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--hmac-secrets".into(),
        whsec(HMAC_KEY),
        "--read-tokens".into(),
        READ_TOKEN.into(),
        "--download-allow-hosts".into(),
        options
            .allow_hosts
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into()),
        "--download-allow-http".into(),
        "true".into(),
        "--job-backoff-base-ms".into(),
        "50".into(),
        "--download-read-timeout-secs".into(),
        "3".into(),
    ];
    // The test key, unless the test fetches a key from a URL of its own.
    for (file, url) in [
        ("--rtk-public-key-file", "--rtk-public-key-url"),
        ("--dyte-public-key-file", "--dyte-public-key-url"),
    ] {
        if !options.args.iter().any(|a| a == url) {
            args.extend([file.to_owned(), key_path.display().to_string()]);
        }
    }
    args.extend(options.args.iter().cloned());
    let cli = <Cli as clap::Parser>::try_parse_from(&args).expect("valid test arguments");
    let chatsink::config::Command::Serve(serve) = cli.command else {
        unreachable!()
    };
    let settings = serve.settings().expect("valid test settings");
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(async move {
        let _ = app.run_until_stopped().await;
    });
    TestApp {
        archive: Archive::at(&db_path.display().to_string()),
        address,
        db_path,
        data_dir,
        dir,
        client: reqwest::Client::new(),
        server,
    }
}

impl TestApp {
    /// The SQLite file itself, for tests of the SQLite backend's own storage (its integrity
    /// check, query plans, full-text index) and for faults injected below the store. Everything
    /// else reads the archive through [`TestApp::archive`].
    pub fn sqlite(&self) -> Option<Connection> {
        if self.db_path.to_string_lossy().starts_with("postgres") {
            return None;
        }
        let conn = Connection::open(&self.db_path).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        Some(conn)
    }

    /// Every rejected row of every session as (line, reason), in line order.
    pub fn rejected_rows(&self) -> Vec<(i64, String)> {
        let mut rows: Vec<(i64, String)> = self
            .archive
            .sessions()
            .iter()
            .flat_map(|s| self.archive.rejected(&s.session_id))
            .map(|r| (r.line, r.reason))
            .collect();
        rows.sort();
        rows
    }

    /// The one job there is.
    pub fn only_job(&self) -> Job {
        let mut jobs = self.archive.jobs();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        jobs.remove(0)
    }

    /// How many jobs match `keep`.
    pub fn jobs_where(&self, keep: impl Fn(&Job) -> bool) -> i64 {
        self.archive.jobs().iter().filter(|j| keep(j)).count() as i64
    }

    /// How many stored deliveries match `keep`.
    pub fn deliveries_where(&self, keep: impl Fn(&DeliveryRecord) -> bool) -> i64 {
        self.archive.deliveries().iter().filter(|d| keep(d)).count() as i64
    }

    /// How many messages the archive holds in all.
    pub fn message_count(&self) -> i64 {
        self.archive.all_messages().len() as i64
    }

    /// How many messages the session holds.
    pub fn messages_in(&self, session: &str) -> i64 {
        self.archive.messages_of(session).len() as i64
    }

    pub async fn post_webhook(&self, body: &[u8], headers: &[(&str, String)]) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/realtimekit", self.address))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.expect("request sent")
    }

    /// A delivery signed with the RealtimeKit key, with a fresh `rtk-uuid`.
    pub async fn post_rtk(&self, body: &[u8]) -> reqwest::Response {
        self.post_rtk_with_id(body, &uuid::Uuid::new_v4().to_string())
            .await
    }

    pub async fn post_rtk_with_id(&self, body: &[u8], id: &str) -> reqwest::Response {
        let signature = rtk_sign(&rsa_keys().0, body);
        self.post_webhook(
            body,
            &[("rtk-signature", signature), ("rtk-uuid", id.to_owned())],
        )
        .await
    }

    pub async fn post_hmac(&self, body: &[u8], key: &[u8], timestamp: i64) -> reqwest::Response {
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let signature = chatsink::webhook::sign_hmac(key, &id, timestamp, body);
        self.post_webhook(
            body,
            &[
                ("webhook-id", id),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signature),
            ],
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path_and_query))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .expect("request sent")
    }

    /// Waits until every job is done or dead (or the timeout passes) and returns the states.
    pub async fn wait_for_jobs(&self, timeout: Duration) -> Vec<(i64, String, Option<String>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let jobs = self.jobs();
            let settled = jobs.iter().all(|(_, s, _)| s == "done" || s == "dead");
            if (settled && !jobs.is_empty()) || Instant::now() > deadline {
                return jobs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (id, state, last error) of every job, oldest first.
    pub fn jobs(&self) -> Vec<(i64, String, Option<String>)> {
        self.archive
            .jobs()
            .into_iter()
            .map(|j| (j.id, j.state.as_str().to_owned(), j.last_error))
            .collect()
    }
}

/// A `meeting.chatSynced` body as RealtimeKit sends it.
pub fn chat_synced(session: &str, url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "event": "meeting.chatSynced",
        "sessionId": session,
        "meetingId": format!("meeting-of-{session}"),
        "title": "Weekly sync",
        "chatDownloadUrl": url,
        "chatDownloadUrlExpiry": "2099-06-10T10:30:00.000Z",
        "createdAt": "2026-06-03T10:00:00.000Z",
        "startedAt": "2026-06-03T10:00:05.000Z",
        "endedAt": "2026-06-03T11:00:00.000Z",
        "organizedBy": {"id": "org-1", "name": "Example organization"}
    }))
    .unwrap()
}

pub const DUMP_HEADER: &str = "id,participantId,sessionId,meetingId,displayName,pinned,isEdited,payloadType,payload,createdAt";

/// One row of a dump, CSV-quoted.
pub fn csv_row(fields: &[&str]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer.write_record(fields).unwrap();
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

/// A dump of `n` text messages for `session`, `i`-th from `user-{i % 3}`.
pub fn simple_dump(session: &str, n: usize) -> Vec<u8> {
    let mut out = format!("{DUMP_HEADER}\r\n");
    for i in 0..n {
        let id = format!("{session}-m{i}");
        let user = format!("user-{}", i % 3);
        let text = format!("message {i}, with a comma");
        let time = chatsink::domain::Timestamp::from_millis(1_780_480_800_000 + i as i64 * 1000)
            .to_rfc3339();
        out.push_str(&csv_row(&[
            &id,
            &user,
            session,
            "meeting-1",
            "Ann",
            "false",
            "false",
            "TEXT_MESSAGE",
            &text,
            &time,
        ]));
    }
    out.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server on loopback, standing in for S3 and the Chat Replay API. It speaks
// raw HTTP over TCP so tests can also cut a body short or count bare connections.

#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// Any status with a body and extra headers.
    Status(u16, Vec<u8>, Vec<(String, String)>),
    /// Declares `declared` bytes, sends `body`, then closes the connection.
    CutShort { body: Vec<u8>, declared: usize },
    /// 302 to this location.
    Redirect(String),
    /// Sends the body in chunks with a pause between them.
    Slow {
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// A gzip-encoded body.
    Gzip(Vec<u8>),
    /// A gzip-encoded body, sent in chunks of the encoded bytes with a pause between them.
    SlowGzip {
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
}

#[derive(Default)]
struct FakeState {
    routes: HashMap<String, VecDeque<Reply>>,
    connections: usize,
    /// (path, Authorization header, when it arrived).
    requests: Vec<(String, Option<String>, Instant)>,
    /// Body bytes the socket accepted, per path.
    sent: HashMap<String, usize>,
}

#[derive(Clone)]
pub struct FakeServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

impl FakeServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(FakeState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                shared.lock().unwrap().connections += 1;
                tokio::spawn(serve_connection(socket, shared.clone()));
            }
        });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Queues replies for a path; the last one repeats.
    pub fn route(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), replies.into());
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    pub fn requests(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p == path)
            .count()
    }

    /// When each request for `path` arrived, in order.
    pub fn request_times(&self, path: &str) -> Vec<Instant> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, at)| *at)
            .collect()
    }

    /// Body bytes sent for `path` by slow replies, as far as the socket accepted them.
    pub fn bytes_sent(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .sent
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn authorization(&self, path: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .rev()
            .find(|(p, _, _)| p == path)
            .and_then(|(_, a, _)| a.clone())
    }
}

async fn serve_connection(mut socket: tokio::net::TcpStream, state: Arc<Mutex<FakeState>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_owned();
    let authorization = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned());
    let reply = {
        let mut state = state.lock().unwrap();
        state
            .requests
            .push((path.clone(), authorization, Instant::now()));
        match state.routes.get_mut(&path) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        }
    };
    let reply = reply.unwrap_or(Reply::Status(404, b"not found".to_vec(), vec![]));
    let head = |status: u16, len: usize, extra: &[(String, String)]| {
        let mut h =
            format!("HTTP/1.1 {status} X\r\nContent-Length: {len}\r\nConnection: close\r\n");
        for (k, v) in extra {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        h.push_str("\r\n");
        h.into_bytes()
    };
    let _ = match reply {
        Reply::Body(body) => {
            socket
                .write_all(&[head(200, body.len(), &[]), body].concat())
                .await
        }
        Reply::Status(status, body, headers) => {
            socket
                .write_all(&[head(status, body.len(), &headers), body].concat())
                .await
        }
        Reply::CutShort { body, declared } => {
            socket
                .write_all(&[head(200, declared, &[]), body].concat())
                .await
        }
        Reply::Redirect(location) => {
            socket
                .write_all(&head(302, 0, &[("Location".into(), location)]))
                .await
        }
        Reply::Gzip(body) => {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).unwrap();
            let gz = encoder.finish().unwrap();
            socket
                .write_all(
                    &[
                        head(200, gz.len(), &[("Content-Encoding".into(), "gzip".into())]),
                        gz,
                    ]
                    .concat(),
                )
                .await
        }
        Reply::Slow { body, chunk, pause } => {
            let head = head(200, body.len(), &[]);
            send_slowly(&mut socket, &state, &path, head, &body, chunk, pause).await
        }
        Reply::SlowGzip { body, chunk, pause } => {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&body).unwrap();
            let gz = encoder.finish().unwrap();
            let head = head(200, gz.len(), &[("Content-Encoding".into(), "gzip".into())]);
            send_slowly(&mut socket, &state, &path, head, &gz, chunk, pause).await
        }
    };
    let _ = socket.shutdown().await;
}

/// Writes the head, then the body a chunk at a time with pauses, counting what the socket took.
async fn send_slowly(
    socket: &mut tokio::net::TcpStream,
    state: &Arc<Mutex<FakeState>>,
    path: &str,
    head: Vec<u8>,
    body: &[u8],
    chunk: usize,
    pause: Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    socket.write_all(&head).await?;
    for part in body.chunks(chunk.max(1)) {
        tokio::time::sleep(pause).await;
        socket.write_all(part).await?;
        *state
            .lock()
            .unwrap()
            .sent
            .entry(path.to_owned())
            .or_default() += part.len();
    }
    Ok(())
}

/// Tests that could not run, for the closing line printed when the test binary exits.
static SKIPPED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

extern "C" fn print_skipped() {
    use std::io::Write;
    let skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {} test(s) could not run here: {}",
        skipped.len(),
        skipped.join("; ")
    );
}

/// Records that `test` cannot run here and why. Under `CI=true` that is a failure (CI installs
/// what every test needs); elsewhere the skip is written straight to stderr, past the test
/// harness's capture, so it shows in `cargo test`'s default output, and counted in a closing
/// line when the test binary exits.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run, and under CI=true a test that cannot run fails: {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
    let mut skipped = SKIPPED.lock().unwrap_or_else(|e| e.into_inner());
    if skipped.is_empty() {
        // SAFETY: registers a plain function with no captured state to run at process exit.
        unsafe {
            libc::atexit(print_skipped);
        }
    }
    skipped.push(format!("{test} ({why})"));
}
