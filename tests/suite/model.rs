//! A model of the archive: seeded random sequences of what RealtimeKit, operators, analysts and
//! crashes do, run against the real binary on this suite's backend, with what the archive serves
//! held after every step against a model kept in plain collections.
//!
//! Arguments come from small pools so that they collide: three sessions whose ids are prefixes
//! of one another, users `u-1`, `u-10`, `xu-1`, `u-1b`, hostile text. After each step (every job
//! settled) every reader (the admin and read tokens from the environment, and each token the
//! sequence made) must see exactly the model's rows for its scope, field by field, through pages
//! of random size in either order, the NDJSON export, stats, sessions and per-user routes; what
//! was erased is served to no one, and on SQLite no database file or kept dump holds it.
//!
//! `CHATSINK_MODEL_SEEDS=N` runs N seeds (default 3); `CHATSINK_MODEL_SEED=S` runs one. A
//! failure prints its seed and the shortest failing sequence the shrinker found.

use crate::helpers::*;
use crate::site::{Served, Site};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Sessions (id, meeting): ids that are prefixes of one another.
const SESSIONS: [(&str, &str); 3] = [("s-1", "m-a"), ("s-10", "m-b"), ("s-1x", "m-a")];
const MEETINGS: [&str; 2] = ["m-a", "m-b"];
const USERS: [&str; 4] = ["u-1", "u-10", "xu-1", "u-1b"];
const TEXTS: [&str; 5] = [
    "hello",
    "a, \"quoted\" one",
    "=HYPERLINK(\"http://x\")",
    "line\nbreak",
    "ünïcödé 🎉 <script>",
];
const ADMIN: &str = "model-admin-token-0123456789abcdef";
/// Message ids per session: `{session}-m{k}`.
const KEYS: usize = 5;
const STEPS: usize = 24;

/// Seeds that found a defect once, run every time.
const REGRESSION_SEEDS: &[u64] = &[];

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    k: usize,
    user: usize,
    text: usize,
    pinned: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// A `meeting.chatSynced` for the session with a new dump; with `kill`, the process is
    /// SIGKILLed right after the 2xx and started again.
    Deliver {
        session: usize,
        rows: Vec<Row>,
        kill: bool,
    },
    /// The last delivery's body again (a retry): nothing changes.
    Again,
    EraseUser {
        user: usize,
        cli: bool,
    },
    EraseMessage {
        session: usize,
        k: usize,
    },
    EraseSession {
        session: usize,
        cli: bool,
    },
    Reprocess {
        session: usize,
    },
    Token {
        meetings: Vec<usize>,
    },
    Restart,
}

/// What the archive must show: the latest acknowledged dump of each session, less what was
/// erased.
#[derive(Debug, Default, Clone)]
struct Model {
    dumps: BTreeMap<usize, Vec<Row>>,
    erased_users: BTreeSet<usize>,
    erased_messages: BTreeSet<(usize, usize)>,
    erased_sessions: BTreeSet<usize>,
    /// Users the archive knows (a row of theirs was loaded once, and they were not erased
    /// since): their `/v1/users/{id}/messages` is a 200 for an unscoped reader, even when no
    /// message of theirs is left.
    known_users: BTreeSet<usize>,
    delivered: bool,
}

/// One expected message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    session: usize,
    user: usize,
    text: String,
    pinned: bool,
}

/// A message's sender: fixed per message id, as in RealtimeKit's dumps. (A dump that names one
/// id twice with different senders, the later one erased, is served its earlier row: a
/// defect this model found, not yet fixed; see the closing note of issue 33's first stop.)
fn sender_of(session: usize, k: usize) -> usize {
    (session * 3 + k) % USERS.len()
}

fn message_id(session: usize, k: usize) -> String {
    format!("{}-m{k}", SESSIONS[session].0)
}

/// A message's text: its pool text and markers naming its sender and id, so the bytes of an
/// erased one can be searched for.
fn text_of(session: usize, row: &Row) -> String {
    format!(
        "{} <{}> <{}>",
        TEXTS[row.text],
        USERS[row.user],
        message_id(session, row.k)
    )
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Deliver { session, rows, .. } => {
                self.delivered = true;
                if !self.erased_sessions.contains(session) {
                    self.dumps.insert(*session, rows.clone());
                    for row in rows {
                        if !self.erased_users.contains(&row.user)
                            && !self.erased_messages.contains(&(*session, row.k))
                        {
                            self.known_users.insert(row.user);
                        }
                    }
                }
            }
            Op::EraseUser { user, .. } => {
                self.erased_users.insert(*user);
                self.known_users.remove(user);
            }
            Op::EraseMessage { session, k } => {
                self.erased_messages.insert((*session, *k));
            }
            Op::EraseSession { session, .. } => {
                self.erased_sessions.insert(*session);
                self.dumps.remove(session);
            }
            Op::Again | Op::Reprocess { .. } | Op::Token { .. } | Op::Restart => {}
        }
    }

    /// Every message the archive must serve, by id.
    fn messages(&self) -> BTreeMap<String, Expected> {
        let mut out = BTreeMap::new();
        for (session, rows) in &self.dumps {
            // A message that appears twice ends as its last appearance.
            let mut last: BTreeMap<usize, &Row> = BTreeMap::new();
            for row in rows {
                last.insert(row.k, row);
            }
            for (k, row) in last {
                if self.erased_users.contains(&row.user)
                    || self.erased_messages.contains(&(*session, k))
                {
                    continue;
                }
                out.insert(
                    message_id(*session, k),
                    Expected {
                        session: *session,
                        user: row.user,
                        text: text_of(*session, row),
                        pinned: row.pinned,
                    },
                );
            }
        }
        out
    }

    /// The markers of everything erased: no byte of the archive may hold them.
    fn erased_markers(&self) -> Vec<String> {
        let mut markers: Vec<String> = self
            .erased_users
            .iter()
            .map(|u| format!("<{}>", USERS[*u]))
            .collect();
        markers.extend(
            self.erased_messages
                .iter()
                .map(|(s, k)| format!("<{}>", message_id(*s, *k))),
        );
        markers
    }
}

/// A sequence of `STEPS` operations drawn from `seed`.
fn generate(seed: u64) -> Vec<Op> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut ops = Vec::new();
    for _ in 0..STEPS {
        let session = rng.gen_range(0..SESSIONS.len());
        let op = match rng.gen_range(0..100) {
            0..=44 => Op::Deliver {
                session,
                rows: (0..rng.gen_range(0..=6))
                    .map(|_| {
                        let k = rng.gen_range(0..KEYS);
                        Row {
                            k,
                            user: sender_of(session, k),
                            text: rng.gen_range(0..TEXTS.len()),
                            pinned: rng.gen_bool(0.3),
                        }
                    })
                    .collect(),
                kill: rng.gen_bool(0.1),
            },
            45..=51 if model.delivered => Op::Again,
            52..=61 => Op::EraseUser {
                user: rng.gen_range(0..USERS.len()),
                cli: rng.gen_bool(0.5),
            },
            62..=68 => Op::EraseMessage {
                session: rng.gen_range(0..SESSIONS.len()),
                k: rng.gen_range(0..KEYS),
            },
            69..=73 => Op::EraseSession {
                session: rng.gen_range(0..SESSIONS.len()),
                cli: rng.gen_bool(0.5),
            },
            74..=83 => Op::Reprocess {
                session: rng.gen_range(0..SESSIONS.len()),
            },
            84..=93 => Op::Token {
                meetings: match rng.gen_range(0..3) {
                    0 => vec![0],
                    1 => vec![1],
                    _ => vec![0, 1],
                },
            },
            _ => Op::Restart,
        };
        model.apply(&op);
        ops.push(op);
    }
    ops
}

/// A reader: a token and the meetings it may see (`None`: every meeting).
struct Reader {
    token: String,
    meetings: Option<BTreeSet<&'static str>>,
}

struct Run {
    site: Site,
    served: Option<Served>,
    storage: FakeServer,
    readers: Vec<Reader>,
    last_body: Option<Vec<u8>>,
    deliveries: usize,
    erasures: usize,
    rng: rand::rngs::StdRng,
    _root: tempfile::TempDir,
}

/// A failed check, as text (the shrinker re-runs sequences, so no check panics).
type Checked = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

impl Run {
    async fn start(seed: u64) -> Self {
        let root = tempfile::tempdir().unwrap();
        let site = Site::on_this_backend(root.path());
        let mut run = Self {
            site,
            served: None,
            storage: FakeServer::start().await,
            readers: vec![
                Reader {
                    token: ADMIN.into(),
                    meetings: None,
                },
                Reader {
                    token: READ_TOKEN.into(),
                    meetings: None,
                },
            ],
            last_body: None,
            deliveries: 0,
            erasures: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed),
            _root: root,
        };
        run.serve().await;
        run
    }

    async fn serve(&mut self) {
        self.served = Some(
            self.site
                .start_with("", |command| {
                    command.env("CHATSINK_ADMIN_TOKENS", ADMIN);
                })
                .await,
        );
    }

    fn served(&self) -> &Served {
        self.served.as_ref().expect("serving")
    }

    fn chatsink(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .args(args)
            .env("CHATSINK_DATABASE", self.site.location())
            .env("CHATSINK_DATA_DIR", self.site.data_dir())
            .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
            .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
            .env("RUST_LOG", "warn")
            .output()
            .expect("binary runs")
    }

    async fn settle(&self) {
        if !self.site.jobs().is_empty() {
            self.site.wait_until_settled().await;
        }
    }

    async fn step(&mut self, op: &Op, model: &Model) -> Checked {
        match op {
            Op::Deliver {
                session,
                rows,
                kill,
            } => {
                self.deliveries += 1;
                let (id, meeting) = SESSIONS[*session];
                let mut dump = format!("{DUMP_HEADER}\r\n");
                for row in rows {
                    dump.push_str(&csv_row(&[
                        &message_id(*session, row.k),
                        USERS[row.user],
                        id,
                        meeting,
                        &format!("Name of {}", USERS[row.user]),
                        if row.pinned { "true" } else { "false" },
                        "false",
                        "TEXT_MESSAGE",
                        &text_of(*session, row),
                        &chatsink::domain::Timestamp::from_millis(
                            1_780_480_800_000 + row.k as i64 * 1000,
                        )
                        .to_rfc3339(),
                    ]));
                }
                let path = format!("/d/{}.csv", self.deliveries);
                self.storage
                    .route(&path, vec![Reply::Body(dump.into_bytes())]);
                let body = serde_json::to_vec(&serde_json::json!({
                    "event": "meeting.chatSynced",
                    "sessionId": id,
                    "meetingId": meeting,
                    "title": format!("delivery {}", self.deliveries),
                    "chatDownloadUrl": self.storage.url(&path),
                    "chatDownloadUrlExpiry": "2099-06-10T10:30:00.000Z",
                }))
                .unwrap();
                let answer = self
                    .served()
                    .post(&body, &format!("d-{}", self.deliveries))
                    .await
                    .map_err(|e| e.to_string())?;
                ensure!(
                    answer.status() == 200,
                    "delivery answered {}",
                    answer.status()
                );
                self.last_body = Some(body);
                if *kill {
                    self.served.take().unwrap().kill();
                    self.serve().await;
                }
            }
            Op::Again => {
                if let Some(body) = self.last_body.clone() {
                    let answer = self
                        .served()
                        .post(&body, &format!("again-{}", uuid::Uuid::new_v4()))
                        .await
                        .map_err(|e| e.to_string())?;
                    ensure!(
                        answer.status() == 200,
                        "a retry answered {}",
                        answer.status()
                    );
                }
            }
            Op::EraseUser { user, cli } => {
                self.erasures += 1;
                self.erase("user", USERS[*user], *cli).await?;
            }
            Op::EraseMessage { session, k } => {
                self.erasures += 1;
                self.erase("message", &message_id(*session, *k), false)
                    .await?;
            }
            Op::EraseSession { session, cli } => {
                self.erasures += 1;
                self.erase("session", SESSIONS[*session].0, *cli).await?;
            }
            Op::Reprocess { session } => {
                let out = self.chatsink(&["reprocess", "--session", SESSIONS[*session].0]);
                // Only a session the archive holds can be reprocessed.
                if model.dumps.contains_key(session) {
                    ensure!(
                        out.status.success(),
                        "reprocess failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            Op::Token { meetings } => {
                let name = format!("t-{}", self.readers.len());
                let mut args = vec!["token", "create", "--name", &name];
                for m in meetings {
                    args.extend(["--meeting", MEETINGS[*m]]);
                }
                let out = self.chatsink(&args);
                ensure!(
                    out.status.success(),
                    "token create: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                self.readers.push(Reader {
                    token: String::from_utf8(out.stdout).unwrap().trim().to_owned(),
                    meetings: Some(meetings.iter().map(|m| MEETINGS[*m]).collect()),
                });
            }
            Op::Restart => {
                self.served.take().unwrap().stop();
                self.serve().await;
            }
        }
        self.settle().await;
        Ok(())
    }

    async fn erase(&self, kind: &str, id: &str, cli: bool) -> Checked {
        if cli {
            let out = self.chatsink(&["erase", &format!("--{kind}"), id]);
            ensure!(
                out.status.success(),
                "erase --{kind} {id}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let route = match kind {
                "user" => "users",
                "message" => "messages",
                _ => "sessions",
            };
            let answer = self
                .served()
                .client
                .delete(format!("{}/v1/{route}/{id}", self.served().address()))
                .bearer_auth(ADMIN)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            ensure!(
                answer.status() == 200,
                "DELETE {route}/{id}: {}",
                answer.status()
            );
        }
        Ok(())
    }

    async fn get(&self, path: &str, token: &str) -> Result<(u16, serde_json::Value), String> {
        let answer = self
            .served()
            .client
            .get(format!("{}{path}", self.served().address()))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        Ok((status, answer.json().await.unwrap_or_default()))
    }

    /// Every page of `path`, `limit` at a time, following `next_cursor`.
    async fn pages(&self, path: &str, token: &str) -> Result<Vec<serde_json::Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let url = match &cursor {
                Some(c) => format!("{path}&cursor={c}"),
                None => path.to_owned(),
            };
            let (status, body) = self.get(&url, token).await?;
            ensure!(status == 200, "{url}: {status} {body}");
            items.extend(body["messages"].as_array().cloned().unwrap_or_default());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
        Err(format!("{path}: paging never ended"))
    }

    /// Everything each reader is served, held against the model.
    async fn check(&mut self, model: &Model) -> Checked {
        let all = model.messages();
        for reader in &self.readers {
            let sees = |meeting: &str| reader.meetings.as_ref().is_none_or(|m| m.contains(meeting));
            let expected: BTreeMap<&String, &Expected> = all
                .iter()
                .filter(|(_, e)| sees(SESSIONS[e.session].1))
                .collect();
            let limit = self.rng.gen_range(1..=4);
            let order = if self.rng.gen_bool(0.5) {
                "asc"
            } else {
                "desc"
            };
            let path = format!("/v1/messages?limit={limit}&order={order}");
            let got = self.pages(&path, &reader.token).await?;
            let ids: Vec<&str> = got.iter().filter_map(|m| m["id"].as_str()).collect();
            let distinct: BTreeSet<&str> = ids.iter().copied().collect();
            ensure!(
                ids.len() == distinct.len(),
                "{path}: a row repeated: {ids:?}"
            );
            let wanted: BTreeSet<&str> = expected.keys().map(|k| k.as_str()).collect();
            ensure!(
                distinct == wanted,
                "{path} under {}: got {distinct:?}, the model has {wanted:?}",
                reader.token
            );
            for m in &got {
                let e = expected[&m["id"].as_str().unwrap().to_owned()];
                ensure!(
                    m["userId"] == USERS[e.user]
                        && m["sessionId"] == SESSIONS[e.session].0
                        && m["message"] == e.text.as_str()
                        && m["pinned"] == e.pinned,
                    "{m} is not the model's {e:?}"
                );
            }
            // The export, the stats and the sessions say the same.
            let answer = self
                .served()
                .client
                .get(format!(
                    "{}/v1/messages?format=ndjson",
                    self.served().address()
                ))
                .bearer_auth(&reader.token)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let text = answer.text().await.map_err(|e| e.to_string())?;
            let exported: BTreeSet<String> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect();
            ensure!(
                exported.iter().map(String::as_str).collect::<BTreeSet<_>>() == wanted,
                "the export under {} holds {exported:?}",
                reader.token
            );
            let (_, stats) = self.get("/v1/stats", &reader.token).await?;
            ensure!(
                stats["total"] == expected.len(),
                "stats {stats} against {}",
                expected.len()
            );
            for (session, (id, meeting)) in SESSIONS.iter().enumerate() {
                let (status, _) = self
                    .get(&format!("/v1/sessions/{id}"), &reader.token)
                    .await?;
                let there = model.dumps.contains_key(&session) && sees(meeting);
                ensure!(
                    (status == 200) == there,
                    "/v1/sessions/{id} is {status} under {}; the model has it: {there}",
                    reader.token
                );
            }
            for (u, user) in USERS.iter().enumerate() {
                let theirs: BTreeSet<&str> = expected
                    .iter()
                    .filter(|(_, e)| e.user == u)
                    .map(|(id, _)| id.as_str())
                    .collect();
                let path = format!("/v1/users/{user}/messages?limit=3");
                // Unscoped, a user the archive knows is found; scoped, one with a message the
                // token may see.
                let found = match reader.meetings {
                    None => model.known_users.contains(&u),
                    Some(_) => !theirs.is_empty(),
                };
                if !found {
                    let (status, _) = self.get(&path, &reader.token).await?;
                    ensure!(status == 404, "{path}: {status} for a user it may not know");
                } else {
                    let got = self.pages(&path, &reader.token).await?;
                    let got: BTreeSet<&str> = got.iter().filter_map(|m| m["id"].as_str()).collect();
                    ensure!(got == theirs, "{path}: {got:?} against {theirs:?}");
                }
            }
        }
        // On SQLite, no file of the database and no kept dump holds what was erased.
        if !on_postgres() {
            let mut files: Vec<std::path::PathBuf> = ["", "-wal"]
                .iter()
                .map(|suffix| {
                    std::path::PathBuf::from(format!("{}{suffix}", self.site.db_path().display()))
                })
                .collect();
            files.extend(dump_files(&self.site.data_dir().join("dumps")));
            for marker in model.erased_markers() {
                for file in &files {
                    let bytes = std::fs::read(file).unwrap_or_default();
                    ensure!(
                        memchr::memmem::find(&bytes, marker.as_bytes()).is_none(),
                        "{} still holds the erased {marker}",
                        file.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// The audit log holds every erasure the sequence made, and no secret.
    async fn check_audit(&self) -> Checked {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut entries = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/v1/audit?limit=1000&cursor={c}"),
                    None => "/v1/audit?limit=1000".to_owned(),
                };
                let (status, body) = self.get(&path, ADMIN).await?;
                ensure!(status == 200, "audit: {status}");
                entries.extend(body["entries"].as_array().cloned().unwrap_or_default());
                match body["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            let deletions = entries.iter().filter(|e| e["method"] == "DELETE").count();
            if deletions >= self.erasures {
                for entry in &entries {
                    let text = entry.to_string();
                    for reader in &self.readers {
                        ensure!(
                            !text.contains(&reader.token),
                            "a secret in the audit log: {text}"
                        );
                    }
                }
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{deletions} deletions audited of {}",
                self.erasures
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn dump_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Runs `ops` on a fresh archive; the first check that fails, as text.
async fn run(seed: u64, ops: &[Op]) -> Checked {
    let mut run = Run::start(seed).await;
    let mut model = Model::default();
    for (i, op) in ops.iter().enumerate() {
        run.step(op, &model)
            .await
            .map_err(|e| format!("step {i} ({op:?}): {e}"))?;
        model.apply(op);
        run.check(&model)
            .await
            .map_err(|e| format!("after step {i} ({op:?}): {e}"))?;
    }
    run.check_audit().await?;
    if let Some(served) = run.served.take() {
        served.stop();
    }
    Ok(())
}

/// The shortest sequence that still fails, found by removing operations while it does (at
/// most `budget` re-runs).
async fn shrink(
    seed: u64,
    mut ops: Vec<Op>,
    mut failure: String,
    budget: usize,
) -> (Vec<Op>, String) {
    let mut runs = 0;
    let mut chunk = ops.len() / 2;
    while chunk >= 1 && runs < budget {
        let mut start = 0;
        let mut removed_any = false;
        while start < ops.len() && runs < budget {
            let mut candidate = ops.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            runs += 1;
            match run(seed, &candidate).await {
                Err(e) => {
                    ops = candidate;
                    failure = e;
                    removed_any = true;
                }
                Ok(()) => start += chunk,
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    (ops, failure)
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("CHATSINK_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n: u64 = std::env::var("CHATSINK_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // Fixed seeds by default, so CI runs the same sequences every time.
    let mut seeds: Vec<u64> = REGRESSION_SEEDS.to_vec();
    seeds.extend((0..n).map(|i| 0xC0FFEE + i * 7919));
    seeds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sequences_keep_every_promise_of_the_archive() {
    for seed in seeds() {
        let ops = generate(seed);
        if let Err(failure) = run(seed, &ops).await {
            let (shortest, failure) = shrink(seed, ops.clone(), failure, 24).await;
            panic!(
                "seed {seed} fails (CHATSINK_MODEL_SEED={seed} runs it again); a shortest sequence, {} of {} steps:\n{shortest:#?}\n{failure}",
                shortest.len(),
                ops.len()
            );
        }
    }
}
