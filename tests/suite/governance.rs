//! Who may read what, and for how long: scoped tokens, erasure, retention and the audit log,
//! against the real binary on this suite's backend, with a loopback server holding the dumps.

use crate::helpers::*;
use crate::site::{Served, Site};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
const MEETINGS: [&str; 4] = ["meet-a", "meet-b", "meet-c", "meet-d"];
const USERS: [&str; 5] = ["u-ann", "u-bob", "u-cat", "u-dan", "u-eve"];
const KINDS: [&str; 3] = ["TEXT_MESSAGE", "IMAGE_MESSAGE", "FILE_MESSAGE"];
const CORPUS_SESSIONS: usize = 9;

/// One message of a generated dump.
#[derive(Debug, Clone)]
struct Msg {
    id: String,
    user: String,
    session: String,
    meeting: String,
    kind: &'static str,
    pinned: bool,
    text: String,
    ms: i64,
}

impl Msg {
    fn stored_kind(&self) -> &'static str {
        match self.kind {
            "TEXT_MESSAGE" => "text",
            "IMAGE_MESSAGE" => "image",
            _ => "file",
        }
    }

    fn row(&self) -> String {
        let payload = match self.kind {
            "TEXT_MESSAGE" => self.text.clone(),
            "IMAGE_MESSAGE" => "https://pictures.example/p.png".into(),
            _ => {
                r#"{"link": "https://files.example/f.pdf", "name": "notes.pdf", "size": 12}"#.into()
            }
        };
        csv_row(&[
            &self.id,
            &self.user,
            &self.session,
            &self.meeting,
            &format!("Name of {}", self.user),
            if self.pinned { "true" } else { "false" },
            "false",
            self.kind,
            &payload,
            &chatsink::domain::Timestamp::from_millis(self.ms).to_rfc3339(),
        ])
    }
}

fn dump(messages: &[Msg], extra: &str) -> Vec<u8> {
    let mut out = format!("{DUMP_HEADER}\r\n");
    for m in messages {
        out.push_str(&m.row());
    }
    out.push_str(extra);
    out.into_bytes()
}

/// A `meeting.chatSynced` for `session` of `meeting`, its dump at `url`; `note` makes the body
/// differ (a re-delivery RealtimeKit made anew).
fn synced(session: &str, meeting: &str, url: &str, note: &str) -> Vec<u8> {
    let mut body = serde_json::json!({
        "event": "meeting.chatSynced",
        "sessionId": session,
        "meetingId": meeting,
        "title": format!("Sync {note}"),
        "chatDownloadUrl": url,
        "chatDownloadUrlExpiry": "2099-06-10T10:30:00.000Z",
        "createdAt": "2026-06-03T10:00:00.000Z",
        "startedAt": "2026-06-03T10:00:05.000Z",
        "endedAt": "2026-06-03T11:00:00.000Z",
        "organizedBy": {"id": "org-1", "name": "Example organization"}
    });
    // A session with no meeting: the delivery names none.
    if meeting.is_empty() {
        body.as_object_mut().unwrap().remove("meetingId");
    }
    serde_json::to_vec(&body).unwrap()
}

/// A site served by the real binary with an admin token from the environment, and a loopback
/// server for its dumps.
struct World {
    site: Site,
    served: Served,
    storage: FakeServer,
    _root: tempfile::TempDir,
}

impl World {
    async fn start(env: &[(&str, String)]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let site = Site::on_this_backend(root.path());
        let served = Self::serve(&site, env).await;
        Self {
            site,
            served,
            storage: FakeServer::start().await,
            _root: root,
        }
    }

    async fn serve(site: &Site, env: &[(&str, String)]) -> Served {
        let env = env.to_vec();
        site.start_with("", move |command| {
            command
                .env("CHATSINK_ADMIN_TOKENS", ADMIN_TOKEN)
                .env("RUST_LOG", "info");
            for (k, v) in &env {
                command.env(k, v);
            }
        })
        .await
    }

    /// Delivers `session` with `messages` and waits until its jobs settle.
    async fn deliver(
        &self,
        session: &str,
        meeting: &str,
        messages: &[Msg],
        extra: &str,
        note: &str,
    ) {
        let path = format!("/dumps/{session}-{note}.csv");
        self.storage
            .route(&path, vec![Reply::Body(dump(messages, extra))]);
        let body = synced(session, meeting, &self.storage.url(&path), note);
        let answer = self
            .served
            .post(&body, &uuid::Uuid::new_v4().to_string())
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        self.site.wait_until_settled().await;
    }

    fn chatsink(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .args(args)
            .env("CHATSINK_DATABASE", self.site.location())
            .env("CHATSINK_DATA_DIR", self.site.data_dir())
            .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
            .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
            .env("RUST_LOG", "warn")
            .output()
            .expect("binary runs")
    }

    fn token(&self, args: &[&str]) -> String {
        let output = self.chatsink(&[&["token", "create"], args].concat());
        assert!(output.status.success(), "{}", said(&output));
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout.lines().count(), 1, "the secret alone: {stdout:?}");
        stdout.trim().to_owned()
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::Response {
        self.served
            .client
            .request(method, format!("{}{path}", self.served.address()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let answer = self.call(reqwest::Method::GET, path, token).await;
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or_default())
    }

    /// Every page of a list route, following `next_cursor`: the items under `field`.
    async fn all(&self, path: &str, field: &str, token: &str) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{sep}cursor={c}"),
                None => path.to_owned(),
            };
            let (status, body) = self.get(&url, token).await;
            assert_eq!(status, 200, "{url}: {body}");
            items.extend(body[field].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
    }
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ids(items: &[serde_json::Value], field: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

/// The archive every scope test reads: 8 sessions over 4 meetings and one with no meeting, 6
/// messages each, by five users in every type, some pinned.
fn corpus() -> Vec<(String, String, Vec<Msg>)> {
    (0..CORPUS_SESSIONS)
        .map(|s| {
            let session = uuid::Uuid::new_v4().to_string();
            let meeting = if s == 8 {
                String::new()
            } else {
                MEETINGS[s % 4].to_owned()
            };
            let messages = (0..6)
                .map(|i| Msg {
                    id: format!("{session}-m{i}"),
                    user: USERS[(s * 2 + i) % 5].to_owned(),
                    session: session.clone(),
                    meeting: meeting.clone(),
                    kind: KINDS[(s + i) % 3],
                    pinned: (s + i) % 4 == 0,
                    text: format!("word{s} shared text {i}"),
                    ms: 1_780_480_800_000 + (s as i64) * 100_000 + i as i64 * 1000,
                })
                .collect();
            (session, meeting, messages)
        })
        .collect()
}

async fn world_with_corpus() -> (World, Vec<(String, String, Vec<Msg>)>) {
    let world = World::start(&[]).await;
    let corpus = corpus();
    for (session, meeting, messages) in &corpus {
        world.deliver(session, meeting, messages, "", "first").await;
    }
    (world, corpus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_kept_as_a_hash_scoped_expired_and_revoked_at_once() {
    let (world, corpus) = world_with_corpus().await;
    let alice = world.token(&["--name", "alice", "--meeting", "meet-a"]);
    assert!(
        alice.starts_with("chatsink_") && alice.len() > 60,
        "{alice}"
    );
    // A name is one token for ever.
    let again = world.chatsink(&["token", "create", "--name", "alice"]);
    assert!(!again.status.success() && said(&again).contains("exists already"));
    let bad = world.chatsink(&[
        "token",
        "create",
        "--name",
        "x",
        "--admin",
        "--meeting",
        "m",
    ]);
    assert!(!bad.status.success() && said(&bad).contains("--admin and --meeting"));
    let bad = world.chatsink(&["token", "create", "--name", "x", "--expires", "30"]);
    assert!(!bad.status.success() && said(&bad).contains("needs a unit"));

    // Alice sees meeting A only, everywhere.
    let in_a: Vec<&(String, String, Vec<Msg>)> =
        corpus.iter().filter(|(_, m, _)| m == "meet-a").collect();
    let sessions = world.all("/v1/sessions?limit=1", "sessions", &alice).await;
    assert_eq!(
        ids(&sessions, "sessionId"),
        in_a.iter().map(|(s, _, _)| s.clone()).collect()
    );
    let outside = &corpus.iter().find(|(_, m, _)| m == "meet-b").unwrap().0;
    for path in [
        format!("/v1/sessions/{outside}"),
        format!("/v1/sessions/{outside}/messages"),
        format!("/v1/sessions/{outside}/rejected"),
    ] {
        assert_eq!(world.get(&path, &alice).await.0, 404, "{path}");
    }
    // A cursor is bound to its token's scope.
    let (_, first) = world.get("/v1/sessions?limit=1", READ_TOKEN).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (status, body) = world
        .get(&format!("/v1/sessions?limit=1&cursor={cursor}"), &alice)
        .await;
    assert_eq!((status, body["parameter"].as_str()), (400, Some("cursor")));

    // Expiry.
    let brief = world.token(&["--name", "brief", "--expires", "2s"]);
    assert_eq!(world.get("/v1/sessions", &brief).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(world.get("/v1/sessions", &brief).await.0, 401);

    // Revocation holds at once, on this instance and on a second one on the same database.
    let second = World::serve(&world.site, &[]).await;
    let on_second = |token: &str| {
        let request = second
            .client
            .get(format!("{}/v1/sessions", second.address()))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(on_second(&alice).await, 200);
    let revoked = world.chatsink(&["token", "revoke", "alice"]);
    assert!(revoked.status.success(), "{}", said(&revoked));
    assert_eq!(world.get("/v1/sessions", &alice).await.0, 401);
    assert_eq!(on_second(&alice).await, 401);
    let unknown = world.chatsink(&["token", "revoke", "nobody"]);
    assert!(!unknown.status.success() && said(&unknown).contains("no token named"));

    // The list shows names, scopes and uses, never a secret.
    let list = world.chatsink(&["token", "list"]);
    let listed = said(&list);
    assert!(list.status.success(), "{listed}");
    assert!(listed.contains("alice") && listed.contains("revoked") && listed.contains("expired"));
    assert!(listed.contains("read: meet-a"), "{listed}");
    assert!(!listed.contains(&alice[9..]) && !listed.contains(&brief[9..]));

    // A read token is refused the admin routes; an admin token is not.
    assert_eq!(
        world
            .call(reqwest::Method::DELETE, "/v1/users/u-ann", READ_TOKEN)
            .await
            .status(),
        403
    );
    assert_eq!(world.get("/v1/audit", READ_TOKEN).await.0, 403);
    assert_eq!(world.get("/v1/audit", ADMIN_TOKEN).await.0, 200);
    let made_admin = world.token(&["--name", "ops", "--admin"]);
    assert_eq!(world.get("/v1/audit", &made_admin).await.0, 200);

    // A refused secret (one never made, and a revoked one) is kept nowhere either.
    let never_made = format!("chatsink_{}", "f0".repeat(32));
    assert_eq!(world.get("/v1/sessions", &never_made).await.0, 401);
    assert_eq!(world.get("/v1/audit", &alice).await.0, 401);
    // The secrets appear in no file the database wrote, and in no log: tokens made in the
    // database, the environment's, and refused ones.
    second.stop();
    let log = world.site.log();
    let from_env = [ADMIN_TOKEN.to_owned(), READ_TOKEN.to_owned()];
    for secret in [
        &alice,
        &brief,
        &made_admin,
        &never_made,
        &from_env[0],
        &from_env[1],
    ] {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
        for (file, bytes) in database_files(&world.site) {
            assert!(
                memchr::memmem::find(&bytes, secret.as_bytes()).is_none(),
                "a secret in {file}"
            );
        }
    }
}

/// The bytes of every file the site's database is kept in: the SQLite file and its WAL, or the
/// PostgreSQL cluster's data files (after a checkpoint).
fn database_files(site: &Site) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut roots = Vec::new();
    if on_postgres() {
        if let Some(server) = crate::pg::postgres("governance: database files") {
            server.sql(&site.location(), "CHECKPOINT");
            roots.extend(server.data_dir());
        }
    } else {
        roots.push(site.db_path().parent().unwrap().to_owned());
    }
    let mut stack = roots;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    assert!(!files.is_empty(), "no database files found");
    files
}

/// A query a scoped reader may make, on any route.
#[derive(Debug, Clone)]
enum Probe {
    Messages {
        user: Option<usize>,
        kind: Option<usize>,
        pinned: Option<bool>,
        meeting: Option<usize>,
        session: Option<usize>,
        q: bool,
        desc: bool,
        limit: u32,
    },
    Sessions(u32),
    Users {
        session: Option<usize>,
        limit: u32,
    },
    Stats {
        user: Option<usize>,
        meeting: Option<usize>,
        session: Option<usize>,
        pinned: Option<bool>,
    },
    Session(usize),
    SessionMessages(usize),
    UserMessages(usize),
    /// An export: `?format=csv` (0), `Accept: text/csv` (1) or NDJSON (2).
    Export {
        meeting: Option<usize>,
        format: u8,
    },
    /// A cursor issued to another token (the unscoped one), or by this token to the unscoped
    /// one, in either order.
    ForeignCursor {
        desc: bool,
        to_unscoped: bool,
    },
}

fn probe() -> impl Strategy<Value = Probe> {
    let maybe = |n: usize| proptest::option::of(0..n);
    prop_oneof![
        (
            (
                maybe(5),
                maybe(3),
                proptest::option::of(any::<bool>()),
                maybe(4)
            ),
            (
                maybe(CORPUS_SESSIONS),
                any::<bool>(),
                any::<bool>(),
                1u32..8
            )
        )
            .prop_map(
                |((user, kind, pinned, meeting), (session, q, desc, limit))| Probe::Messages {
                    user,
                    kind,
                    pinned,
                    meeting,
                    session,
                    q,
                    desc,
                    limit
                }
            ),
        (1u32..4).prop_map(Probe::Sessions),
        (maybe(CORPUS_SESSIONS), 1u32..4)
            .prop_map(|(session, limit)| Probe::Users { session, limit }),
        (
            maybe(5),
            maybe(4),
            maybe(CORPUS_SESSIONS),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(user, meeting, session, pinned)| Probe::Stats {
                user,
                meeting,
                session,
                pinned
            }),
        (0usize..CORPUS_SESSIONS).prop_map(Probe::Session),
        (0usize..CORPUS_SESSIONS).prop_map(Probe::SessionMessages),
        (0usize..5).prop_map(Probe::UserMessages),
        (maybe(4), 0u8..3).prop_map(|(meeting, format)| Probe::Export { meeting, format }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(desc, to_unscoped)| Probe::ForeignCursor { desc, to_unscoped }),
    ]
}

/// A scoped token never sees a row outside its scope, on any route, filter or export: each
/// answer equals what the corpus itself says for that scope and query.
#[test]
fn a_scoped_token_sees_exactly_its_meetings_on_every_route() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (world, corpus) = runtime.block_on(world_with_corpus());
    // One token per non-empty set of meetings.
    let scopes: Vec<(BTreeSet<&str>, String)> = (1u32..16)
        .map(|mask| {
            let meetings: BTreeSet<&str> = (0..4)
                .filter(|b| mask & (1 << b) != 0)
                .map(|b| MEETINGS[b])
                .collect();
            let mut args = vec!["--name".to_owned(), format!("scope-{mask}")];
            for m in &meetings {
                args.push("--meeting".into());
                args.push((*m).to_owned());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (meetings, world.token(&args))
        })
        .collect();
    let all: Vec<Msg> = corpus.iter().flat_map(|(_, _, m)| m.clone()).collect();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 48,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&(0usize..15, probe()), |(scope, probe)| {
            let (meetings, token) = &scopes[scope];
            let visible: Vec<&Msg> = all
                .iter()
                .filter(|m| meetings.contains(m.meeting.as_str()))
                .collect();
            runtime.block_on(check(&world, &corpus, &visible, token, &probe));
            Ok(())
        })
        .unwrap();
}

async fn check(
    world: &World,
    corpus: &[(String, String, Vec<Msg>)],
    visible: &[&Msg],
    token: &str,
    probe: &Probe,
) {
    let message_ids = |keep: &dyn Fn(&Msg) -> bool| -> BTreeSet<String> {
        visible
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.id.clone())
            .collect()
    };
    let session_visible = |i: usize| visible.iter().any(|m| m.session == corpus[i].0);
    match probe {
        Probe::Messages {
            user,
            kind,
            pinned,
            meeting,
            session,
            q,
            desc,
            limit,
        } => {
            let mut path = format!("/v1/messages?limit={limit}");
            if let Some(s) = session {
                path.push_str(&format!("&session={}", corpus[*s].0));
            }
            if *desc {
                path.push_str("&order=desc");
            }
            if let Some(u) = user {
                path.push_str(&format!("&user={}", USERS[*u]));
            }
            if let Some(k) = kind {
                path.push_str(&format!("&type={}", KINDS[*k]));
            }
            if let Some(p) = pinned {
                path.push_str(&format!("&pinned={p}"));
            }
            if let Some(m) = meeting {
                path.push_str(&format!("&meeting={}", MEETINGS[*m]));
            }
            if *q {
                path.push_str("&q=shared");
            }
            let got = world.all(&path, "messages", token).await;
            let expected = message_ids(&|m| {
                user.is_none_or(|u| m.user == USERS[u])
                    && kind.is_none_or(|k| m.kind == KINDS[k])
                    && pinned.is_none_or(|p| m.pinned == p)
                    && meeting.is_none_or(|k| m.meeting == MEETINGS[k])
                    && session.is_none_or(|s| m.session == corpus[s].0)
                    && (!q || m.kind == "TEXT_MESSAGE")
            });
            assert_eq!(got.len(), expected.len(), "{path}: a row twice");
            assert_eq!(ids(&got, "id"), expected, "{path}");
        }
        Probe::Sessions(limit) => {
            let got = world
                .all(&format!("/v1/sessions?limit={limit}"), "sessions", token)
                .await;
            let expected: BTreeSet<String> = (0..corpus.len())
                .filter(|i| session_visible(*i))
                .map(|i| corpus[i].0.clone())
                .collect();
            assert_eq!(ids(&got, "sessionId"), expected);
        }
        Probe::Users { session, limit } => {
            let mut path = format!("/v1/users?limit={limit}");
            if let Some(s) = session {
                path.push_str(&format!("&session={}", corpus[*s].0));
            }
            let got = world.all(&path, "users", token).await;
            let mut expected: BTreeMap<String, i64> = BTreeMap::new();
            for m in visible
                .iter()
                .filter(|m| session.is_none_or(|s| m.session == corpus[s].0))
            {
                *expected.entry(m.user.clone()).or_default() += 1;
            }
            let got: BTreeMap<String, i64> = got
                .iter()
                .map(|u| {
                    (
                        u["id"].as_str().unwrap().to_owned(),
                        u["messageCount"].as_i64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "{path}");
        }
        Probe::Stats {
            user,
            meeting,
            session,
            pinned,
        } => {
            let mut path = "/v1/stats?".to_owned();
            if let Some(u) = user {
                path.push_str(&format!("user={}&", USERS[*u]));
            }
            if let Some(s) = session {
                path.push_str(&format!("session={}&", corpus[*s].0));
            }
            if let Some(p) = pinned {
                path.push_str(&format!("pinned={p}&"));
            }
            if let Some(m) = meeting {
                path.push_str(&format!("meeting={}", MEETINGS[*m]));
            }
            let (status, body) = world.get(&path, token).await;
            assert_eq!(status, 200, "{body}");
            let counted: Vec<&&Msg> = visible
                .iter()
                .filter(|m| {
                    user.is_none_or(|u| m.user == USERS[u])
                        && meeting.is_none_or(|k| m.meeting == MEETINGS[k])
                        && session.is_none_or(|s| m.session == corpus[s].0)
                        && pinned.is_none_or(|p| m.pinned == p)
                })
                .collect();
            assert_eq!(body["total"].as_i64(), Some(counted.len() as i64), "{path}");
            let mut by_type: BTreeMap<String, i64> = BTreeMap::new();
            for m in &counted {
                *by_type.entry(m.stored_kind().to_owned()).or_default() += 1;
            }
            let got: BTreeMap<String, i64> =
                serde_json::from_value(body["byType"].clone()).unwrap();
            assert_eq!(got, by_type, "{path}");
            for top in body["topUsers"].as_array().unwrap() {
                assert!(counted
                    .iter()
                    .any(|m| Some(m.user.as_str()) == top["userId"].as_str()));
            }
        }
        Probe::Session(i) => {
            let (status, _) = world
                .get(&format!("/v1/sessions/{}", corpus[*i].0), token)
                .await;
            assert_eq!(status, if session_visible(*i) { 200 } else { 404 });
        }
        Probe::SessionMessages(i) => {
            let path = format!("/v1/sessions/{}/messages?limit=4", corpus[*i].0);
            if session_visible(*i) {
                let got = world.all(&path, "messages", token).await;
                assert_eq!(ids(&got, "id"), message_ids(&|m| m.session == corpus[*i].0));
            } else {
                assert_eq!(world.get(&path, token).await.0, 404);
            }
        }
        Probe::UserMessages(u) => {
            let path = format!("/v1/users/{}/messages?limit=5", USERS[*u]);
            let expected = message_ids(&|m| m.user == USERS[*u]);
            if expected.is_empty() {
                assert_eq!(world.get(&path, token).await.0, 404, "{path}");
            } else {
                let got = world.all(&path, "messages", token).await;
                assert_eq!(ids(&got, "id"), expected, "{path}");
            }
        }
        Probe::Export { meeting, format } => {
            let mut path = match format {
                0 => "/v1/messages?format=csv".to_owned(),
                1 => "/v1/messages?limit=1000".to_owned(),
                _ => "/v1/messages?format=ndjson".to_owned(),
            };
            if let Some(m) = meeting {
                path.push_str(&format!("&meeting={}", MEETINGS[*m]));
            }
            let mut request = world
                .served
                .client
                .get(format!("{}{path}", world.served.address()))
                .bearer_auth(token);
            if *format == 1 {
                request = request.header("accept", "text/csv");
            }
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200);
            let text = answer.text().await.unwrap();
            let got: BTreeSet<String> = if *format == 2 {
                text.lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect()
            } else {
                let mut reader = csv::Reader::from_reader(text.as_bytes());
                reader.records().map(|r| r.unwrap()[0].to_owned()).collect()
            };
            assert_eq!(
                got,
                message_ids(&|m| meeting.is_none_or(|k| m.meeting == MEETINGS[k])),
                "{path} (format {format})"
            );
        }
        Probe::ForeignCursor { desc, to_unscoped } => {
            let order = if *desc { "desc" } else { "asc" };
            let path = format!("/v1/messages?limit=1&order={order}");
            let (issuer, user) = if *to_unscoped {
                (token, READ_TOKEN)
            } else {
                (READ_TOKEN, token)
            };
            let (status, first) = world.get(&path, issuer).await;
            assert_eq!(status, 200);
            if let Some(cursor) = first["next_cursor"].as_str() {
                let (status, body) = world.get(&format!("{path}&cursor={cursor}"), user).await;
                assert_eq!(
                    (status, body["parameter"].as_str()),
                    (400, Some("cursor")),
                    "{body}"
                );
            }
        }
    }
}

fn msg(session: &str, meeting: &str, i: usize, user: &str, text: &str) -> Msg {
    Msg {
        id: format!("{session}-m{i}"),
        user: user.to_owned(),
        session: session.to_owned(),
        meeting: meeting.to_owned(),
        kind: "TEXT_MESSAGE",
        pinned: false,
        text: text.to_owned(),
        ms: 1_780_480_800_000 + i as i64 * 1000,
    }
}

/// Every kept dump file's bytes (the default dump store: a directory in the data dir).
fn kept_dumps(site: &Site) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut stack = vec![site.data_dir().join("dumps")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                found.push(std::fs::read(entry.path()).unwrap());
            }
        }
    }
    found
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().is_dir() {
            found.extend(walk(&entry.path()));
        } else {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

fn holds(haystacks: &[Vec<u8>], needle: &str) -> bool {
    haystacks
        .iter()
        .any(|h| memchr::memmem::find(h, needle.as_bytes()).is_some())
}

/// Nothing of `u-gone` (whose messages said "zanzibar") is anywhere the API or the dump store
/// can reach.
async fn assert_user_gone(world: &World, s1: &str) {
    let (_, found) = world.get("/v1/messages?q=zanzibar", READ_TOKEN).await;
    assert_eq!(found["messages"], serde_json::json!([]), "full text");
    let (_, by_user) = world.get("/v1/messages?user=u-gone", READ_TOKEN).await;
    assert_eq!(by_user["messages"], serde_json::json!([]));
    assert_eq!(
        world.get("/v1/users/u-gone/messages", READ_TOKEN).await.0,
        404
    );
    let users = world.all("/v1/users", "users", READ_TOKEN).await;
    assert!(!ids(&users, "id").contains("u-gone"));
    let (_, rejected) = world
        .get(&format!("/v1/sessions/{s1}/rejected"), READ_TOKEN)
        .await;
    assert_eq!(rejected["rejected"], serde_json::json!([]));
    assert!(
        !holds(&kept_dumps(&world.site), "zanzibar"),
        "a kept dump: {:?}",
        walk(&world.site.data_dir())
    );
    let (_, stats) = world.get("/v1/stats", READ_TOKEN).await;
    assert_eq!(stats["total"], 3, "{stats}");
    // Below the API too: no file of the database holds what they wrote (the phrases are never
    // sent in a query, which the audit log keeps). On SQLite: the file and its WAL.
    if !on_postgres() {
        for (file, bytes) in database_files(&world.site) {
            for phrase in [
                "secret plans",
                "more zanzibar",
                "zanzibar again",
                "broken-row",
            ] {
                assert!(
                    memchr::memmem::find(&bytes, phrase.as_bytes()).is_none(),
                    "{phrase:?} is still in {file}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_everything_and_lasts_through_reprocess_and_redelivery() {
    let world = World::start(&[]).await;
    let (s1, s2) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let one: Vec<Msg> = vec![
        msg(&s1, "meet-a", 0, "u-gone", "zanzibar secret plans"),
        msg(&s1, "meet-a", 1, "u-stay", "ordinary words"),
        // Long enough to need overflow pages, which its deletion frees whole.
        msg(
            &s1,
            "meet-a",
            2,
            "u-gone",
            &format!("more zanzibar{}", " and more zanzibar".repeat(4000)),
        ),
        msg(&s1, "meet-a", 3, "u-stay", "a message to erase alone"),
    ];
    // A row that cannot be parsed but names the user: kept raw, so it must go too.
    let broken = format!(
        "broken-row,u-gone,{s1},meet-a,Gone,maybe,false,TEXT_MESSAGE,zanzibar,notatime\r\n"
    );
    let two: Vec<Msg> = vec![
        msg(&s2, "meet-b", 0, "u-gone", "zanzibar again"),
        msg(&s2, "meet-b", 1, "u-other", "hello"),
    ];
    world.deliver(&s1, "meet-a", &one, &broken, "first").await;
    world.deliver(&s2, "meet-b", &two, "", "first").await;
    assert!(holds(&kept_dumps(&world.site), "zanzibar"));
    let (_, rejected) = world
        .get(&format!("/v1/sessions/{s1}/rejected"), READ_TOKEN)
        .await;
    assert_eq!(rejected["rejected"].as_array().unwrap().len(), 1);

    // Erase the user.
    let answer = world
        .call(reqwest::Method::DELETE, "/v1/users/u-gone", ADMIN_TOKEN)
        .await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["removed"]["messages"], 3, "{body}");
    assert_eq!(body["removed"]["rejectedRows"], 1, "{body}");
    assert_eq!(body["removed"]["dumps"], 2, "{body}");
    // Idempotent.
    let again: serde_json::Value = world
        .call(reqwest::Method::DELETE, "/v1/users/u-gone", ADMIN_TOKEN)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["removed"]["messages"], 0);
    assert_eq!(again["removed"]["dumps"], 0);

    assert_user_gone(&world, &s1).await;
    let (_, session) = world.get(&format!("/v1/sessions/{s1}"), READ_TOKEN).await;
    assert_eq!(session["messageCounts"]["total"], 2, "{session}");

    // Neither a reprocess (which must download again: the dump was deleted) nor a re-delivery
    // of the same dump brings any of it back.
    let reprocess = world.chatsink(&["reprocess", "--session", &s1]);
    assert!(reprocess.status.success(), "{}", said(&reprocess));
    world.deliver(&s2, "meet-b", &two, "", "again").await;
    world.deliver(&s1, "meet-a", &one, &broken, "first").await;
    assert_user_gone(&world, &s1).await;
    assert_eq!(
        world.get("/v1/messages?user=u-stay", READ_TOKEN).await.1["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // One message, by its id.
    let lone = format!("{s1}-m3");
    let answer: serde_json::Value = world
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/messages/{lone}"),
            ADMIN_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["removed"]["messages"], 1, "{answer}");
    world.deliver(&s1, "meet-a", &one, &broken, "later").await;
    let left = world.all("/v1/messages", "messages", READ_TOKEN).await;
    assert!(!ids(&left, "id").contains(&lone));
    assert!(ids(&left, "id").contains(&format!("{s1}-m1")));

    // A session: gone, and a re-delivery is recorded but neither downloaded nor loaded.
    let answer: serde_json::Value = world
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{s2}"),
            ADMIN_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["removed"]["sessions"], 1, "{answer}");
    assert_eq!(
        world.get(&format!("/v1/sessions/{s2}"), READ_TOKEN).await.0,
        404
    );
    let deliveries = world.site.archive().deliveries().len();
    world.deliver(&s2, "meet-b", &two, "", "late").await;
    assert_eq!(world.site.archive().deliveries().len(), deliveries + 1);
    assert_eq!(world.storage.requests(&format!("/dumps/{s2}-late.csv")), 0);
    assert_eq!(
        world.get(&format!("/v1/sessions/{s2}"), READ_TOKEN).await.0,
        404
    );
    let erased_jobs = world
        .site
        .archive()
        .jobs()
        .into_iter()
        .filter(|j| j.session_id == s2)
        .map(|j| j.outcome.map(|o| o.as_str()))
        .collect::<Vec<_>>();
    assert_eq!(erased_jobs, vec![Some("erased")]);

    // The same from the command line, for a user never seen: listed before any data comes.
    let output = world.chatsink(&["erase", "--user", "u-future"]);
    assert!(output.status.success(), "{}", said(&output));
    assert!(said(&output).contains("erased user u-future: 0 messages"));
    let s3 = uuid::Uuid::new_v4().to_string();
    let three = vec![
        msg(&s3, "meet-c", 0, "u-future", "from the future"),
        msg(&s3, "meet-c", 1, "u-stay", "present"),
    ];
    world.deliver(&s3, "meet-c", &three, "", "first").await;
    let (_, session) = world.get(&format!("/v1/sessions/{s3}"), READ_TOKEN).await;
    assert_eq!(session["messageCounts"]["total"], 1, "{session}");
    assert!(!holds(&kept_dumps(&world.site), "from the future"));
    let bad = world.chatsink(&["erase", "--user", "a", "--session", "b"]);
    assert!(!bad.status.success());
    let bad = world.chatsink(&["erase"]);
    assert!(!bad.status.success());
    // An admin route still checks its input.
    let (status, body) = {
        let answer = world
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/sessions/{}", "x".repeat(300)),
                ADMIN_TOKEN,
            )
            .await;
        (
            answer.status(),
            answer.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(
        (status.as_u16(), body["parameter"].as_str()),
        (400, Some("id"))
    );
}

/// `n` sessions whose messages are `days_ago` days old, their text starting with `label`.
fn aged(n: usize, days_ago: i64, label: &str) -> Vec<(String, Vec<Msg>)> {
    let now = chrono::Utc::now().timestamp_millis();
    (0..n)
        .map(|s| {
            let session = uuid::Uuid::new_v4().to_string();
            let messages = (0..20)
                .map(|i| Msg {
                    ms: now - days_ago * 86_400_000 + i as i64 * 1000,
                    ..msg(
                        &session,
                        "meet-a",
                        i,
                        USERS[i % 5],
                        &format!("{label} {s} {i}"),
                    )
                })
                .collect();
            (session, messages)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_sweep_runs_beside_deliveries_and_queries_and_leaves_tombstones() {
    let world = World::start(&[]).await;
    let old = aged(30, 400, "expired");
    let recent = aged(2, 1, "recent");
    for (session, messages) in old.iter().chain(&recent) {
        world
            .deliver(session, "meet-a", messages, "", "first")
            .await;
    }
    world.served.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Each purged session holds the sweep 300 ms (a failpoint), so the sweep surely overlaps
    // the deliveries below.
    let served = World::serve(
        &world.site,
        &[
            ("CHATSINK_RETENTION_DAYS", "30".into()),
            ("CHATSINK_FAILPOINTS", "purge.session=300".into()),
        ],
    )
    .await;
    let world = World { served, ..world };
    // Deliveries and queries while the first sweep (two seconds after start) runs.
    let fresh = aged(6, 0, "fresh");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut during_sweep = 0;
    let old_left =
        |listed: &BTreeSet<String>| old.iter().filter(|(s, _)| listed.contains(s)).count();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (session, messages) in &fresh {
        let before = old_left(&ids(
            &world.all("/v1/sessions", "sessions", READ_TOKEN).await,
            "sessionId",
        ));
        let path = format!("/dumps/{session}.csv");
        world
            .storage
            .route(&path, vec![Reply::Body(dump(messages, ""))]);
        let body = synced(session, "meet-a", &world.storage.url(&path), "fresh");
        let sent = Instant::now();
        let answer = world
            .served
            .post(&body, &uuid::Uuid::new_v4().to_string())
            .await
            .unwrap();
        slowest = slowest.max(sent.elapsed());
        assert!(answer.status().is_success());
        assert_eq!(world.get("/v1/sessions?limit=5", READ_TOKEN).await.0, 200);
        let after = old_left(&ids(
            &world.all("/v1/sessions", "sessions", READ_TOKEN).await,
            "sessionId",
        ));
        // The sweep had begun before this delivery and had not ended after it.
        if before < old.len() && after > 0 {
            during_sweep += 1;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    eprintln!(
        "slowest webhook answer during the sweep: {slowest:?} (after {:?})",
        started.elapsed()
    );
    assert!(
        during_sweep >= 2,
        "only {during_sweep} deliveries overlapped the sweep"
    );
    // RealtimeKit's sender waits 3 s for an answer (Dyte asked for that); the sweep must never
    // keep a delivery past it.
    assert!(
        slowest < Duration::from_secs(3),
        "a delivery waited {slowest:?} beside the sweep"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sessions = world.all("/v1/sessions", "sessions", READ_TOKEN).await;
        let listed = ids(&sessions, "sessionId");
        if old.iter().all(|(s, _)| !listed.contains(s))
            && fresh.iter().all(|(s, _)| listed.contains(s))
        {
            assert!(
                recent.iter().all(|(s, _)| listed.contains(s)),
                "a recent session went"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sweep did not finish: {} left",
            listed.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.site.wait_until_settled().await;
    let (_, stats) = world.get("/v1/stats", READ_TOKEN).await;
    assert_eq!(stats["total"], 20 * (recent.len() + fresh.len()), "{stats}");
    // The trash is emptied after each round of the purge: soon after its last session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while holds(&kept_dumps(&world.site), "expired") {
        assert!(Instant::now() < deadline, "a purged dump");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A late re-delivery of a purged session is recorded, and not loaded.
    let (late, messages) = &old[0];
    let deliveries = world.site.archive().deliveries().len();
    world.deliver(late, "meet-a", messages, "", "late").await;
    assert_eq!(world.site.archive().deliveries().len(), deliveries + 1);
    assert_eq!(
        world
            .get(&format!("/v1/sessions/{late}"), READ_TOKEN)
            .await
            .0,
        404
    );
    assert_eq!(
        world.storage.requests(&format!("/dumps/{late}-late.csv")),
        0
    );

    // `chatsink purge` for cron does the same, and says what it removed.
    let output = world.chatsink(&["purge", "--older-than", "12h", "--yes"]);
    assert!(output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("purged 2 sessions: 40 messages"),
        "{}",
        said(&output)
    );
    let output = world.chatsink(&["purge", "--older-than", "soon"]);
    assert!(!output.status.success() && said(&output).contains("--older-than"));
    let audit = world
        .all("/v1/audit?token=retention%20sweep", "entries", ADMIN_TOKEN)
        .await;
    assert!(!audit.is_empty(), "the sweep's deletion is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_and_every_deletion_has_an_audit_entry() {
    let world = World::start(&[]).await;
    let session = uuid::Uuid::new_v4().to_string();
    let messages: Vec<Msg> = (0..5)
        .map(|i| msg(&session, "meet-a", i, "u-ann", "audited words"))
        .collect();
    world
        .deliver(&session, "meet-a", &messages, "", "first")
        .await;
    let scoped = world.token(&["--name", "analyst", "--meeting", "meet-a"]);
    let requests = [
        ("/v1/messages?limit=3", READ_TOKEN, 200, Some(3)),
        ("/v1/sessions", &scoped, 200, Some(1)),
        ("/v1/messages?bogus=1", &scoped, 400, None),
        ("/v1/users", "not-a-token", 401, None),
        ("/v1/messages?format=csv", READ_TOKEN, 200, Some(5)),
    ];
    for (path, token, status, _) in &requests {
        assert_eq!(world.get(path, token).await.0, *status, "{path}");
    }
    let erased = world
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/messages/{session}-m0"),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(erased.status(), 200);
    let cli = world.chatsink(&["erase", "--message", &format!("{session}-m1")]);
    assert!(cli.status.success(), "{}", said(&cli));

    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = world.all("/v1/audit?limit=2", "entries", ADMIN_TOKEN).await;
        if entries.len() >= requests.len() + 2 || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |route: &str, filters: &str| {
        entries
            .iter()
            .find(|e| e["route"] == route && e["filters"] == filters)
            .unwrap_or_else(|| panic!("no audit entry for {route}?{filters} in {entries:#?}"))
            .clone()
    };
    for (path, _, status, rows) in &requests {
        let (route, filters) = path.split_once('?').unwrap_or((path, ""));
        let entry = find(route, filters);
        assert_eq!(entry["status"], *status, "{entry}");
        assert_eq!(entry["rows"].as_i64(), *rows, "{entry}");
    }
    assert_eq!(
        find("/v1/messages", "limit=3")["token"],
        "CHATSINK_READ_TOKENS#1"
    );
    assert_eq!(find("/v1/sessions", "")["token"], "analyst");
    assert_eq!(find("/v1/users", "")["token"], "-");
    let api_delete = find(&format!("/v1/messages/{session}-m0"), "");
    assert_eq!(
        (
            api_delete["token"].as_str(),
            api_delete["method"].as_str(),
            api_delete["rows"].as_i64()
        ),
        (Some("CHATSINK_ADMIN_TOKENS#1"), Some("DELETE"), Some(1))
    );
    let cli_delete = find("erase --message", &format!("{session}-m1"));
    assert_eq!(cli_delete["token"], "chatsink erase");
    // No token string in the log the entries were written beside.
    assert!(!world.site.log().contains(&scoped));

    // `chatsink audit` reads the same log; its own retention removes old entries.
    let printed = world.chatsink(&[
        "audit",
        "--since",
        "2020-01-01T00:00:00Z",
        "--token",
        "analyst",
    ]);
    assert!(printed.status.success(), "{}", said(&printed));
    let text = said(&printed);
    assert!(
        text.contains("/v1/sessions") && text.contains("bogus=1"),
        "{text}"
    );
    assert!(!text.contains("limit=3"), "another token's entry: {text}");
    // A date, as the API takes it, reads the same; entries are listed newest first by time.
    let by_date = world.chatsink(&["audit", "--since", "2020-01-01", "--token", "analyst"]);
    assert!(by_date.status.success(), "{}", said(&by_date));
    assert_eq!(said(&by_date), text);
    let times: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(times.len() >= 2, "{text}");
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {times:?}"
    );
    let bad = world.chatsink(&["audit", "--since", "yesterday"]);
    assert!(!bad.status.success());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    world.served.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let purged = world.chatsink(&[
        "purge",
        "--older-than",
        "3650d",
        "--audit-older-than",
        "1s",
        "--yes",
    ]);
    assert!(purged.status.success(), "{}", said(&purged));
    assert!(said(&purged).contains("audit entries"), "{}", said(&purged));
    let left = world.chatsink(&[
        "audit",
        "--since",
        "2020-01-01T00:00:00Z",
        "--token",
        "analyst",
    ]);
    assert!(!said(&left).contains("bogus=1"), "{}", said(&left));
}

/// The one value `sql` selects from the site's database, as text.
pub(crate) fn query_sql(site: &Site, sql: &str) -> String {
    let location = site.location();
    if location.starts_with("postgres") {
        crate::pg::postgres("query_sql")
            .expect("a PostgreSQL site has its server")
            .sql(&location, sql)
    } else {
        rusqlite::Connection::open(&location)
            .unwrap()
            .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    }
}

/// Runs `sql` on the site's database, whichever backend it is on.
fn run_sql(site: &Site, sql: &str) {
    let location = site.location();
    if location.starts_with("postgres") {
        crate::pg::postgres("run_sql")
            .expect("a PostgreSQL site has its server")
            .sql(&location, sql);
    } else {
        rusqlite::Connection::open(&location)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }
}

/// Erasing `u-1` erases `u-1` alone: the rejected rows and messages of `u-10`, `xu-1` and `u-1b`
/// stay, through the erasure and through every later load of the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_an_id_leaves_the_ids_that_contain_it() {
    let world = World::start(&[]).await;
    let session = uuid::Uuid::new_v4().to_string();
    let users = ["u-1", "u-10", "xu-1", "u-1b"];
    let messages: Vec<Msg> = users
        .iter()
        .enumerate()
        .map(|(i, user)| msg(&session, "meet-a", i, user, &format!("hello from {user}")))
        .collect();
    // One rejected row per user: a pinned value that is no boolean.
    let rejected: String = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            csv_row(&[
                &format!("bad-{i}"),
                user,
                &session,
                "meet-a",
                "N",
                "perhaps",
                "false",
                "TEXT_MESSAGE",
                "x",
                "2026-06-03T10:00:00Z",
            ])
        })
        .collect();
    world
        .deliver(&session, "meet-a", &messages, &rejected, "first")
        .await;
    let rejected_senders = || async {
        let (status, body) = world
            .get(&format!("/v1/sessions/{session}/rejected"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 200, "{body}");
        let rows = body["rejected"].as_array().cloned().unwrap_or_default();
        let mut senders: Vec<String> = users
            .iter()
            .filter(|u| {
                rows.iter()
                    .any(|r| r["raw"].as_str().unwrap().contains(&format!(",{u},")))
            })
            .map(|u| u.to_string())
            .collect();
        senders.sort();
        (rows.len(), senders)
    };
    assert_eq!(rejected_senders().await.0, 4);
    let answer = world
        .call(reqwest::Method::DELETE, "/v1/users/u-1", ADMIN_TOKEN)
        .await;
    assert_eq!(answer.status(), 200);
    let expected_left = vec!["u-10".to_owned(), "u-1b".to_owned(), "xu-1".to_owned()];
    for round in ["after the erasure", "after a re-delivery"] {
        assert_eq!(
            rejected_senders().await,
            (3, expected_left.clone()),
            "{round}"
        );
        let left = world
            .all(
                &format!("/v1/messages?session={session}"),
                "messages",
                ADMIN_TOKEN,
            )
            .await;
        let mut senders: Vec<String> = left
            .iter()
            .map(|m| m["userId"].as_str().unwrap().to_owned())
            .collect();
        senders.sort();
        assert_eq!(senders, expected_left, "{round}");
        world
            .deliver(&session, "meet-a", &messages, &rejected, "again")
            .await;
    }
}

/// A secret sent in a URL is kept nowhere: not in the audit log's filters, not in the log, for
/// the audit route's `token` filter and for token-like parameters a route refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_sent_in_a_url_is_kept_nowhere() {
    let world = World::start(&[]).await;
    let made = world.token(&["--name", "url-reader"]);
    for (path, token) in [
        (format!("/v1/audit?token={ADMIN_TOKEN}"), ADMIN_TOKEN),
        (format!("/v1/audit?token={made}"), ADMIN_TOKEN),
        (format!("/v1/messages?access_token={made}"), made.as_str()),
        (
            format!("/v1/messages?limit=nope&api_key={made}"),
            READ_TOKEN,
        ),
        (format!("/v1/sessions?token={READ_TOKEN}"), "wrong"),
        (format!("/no/such/route?access_token={READ_TOKEN}"), "wrong"),
    ] {
        world.call(reqwest::Method::GET, &path, token).await;
    }
    // A token's name is no secret: the audit filter by name still works.
    let (status, _) = world.get("/v1/audit?token=url-reader", ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    // Entries are queued to a writer: wait for the last request's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let entries = world
            .all("/v1/audit?limit=100", "entries", ADMIN_TOKEN)
            .await;
        if entries.len() >= 7 || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let filters: Vec<&str> = entries
        .iter()
        .map(|e| e["filters"].as_str().unwrap_or_default())
        .collect();
    assert!(
        filters.iter().any(|f| f.contains("token=REDACTED")),
        "{filters:?}"
    );
    assert!(filters.contains(&"token=url-reader"), "{filters:?}");
    let log = world.site.log();
    assert!(log.contains("REDACTED"), "the requests were logged");
    for secret in [ADMIN_TOKEN, READ_TOKEN, made.as_str()] {
        assert!(!log.contains(secret), "{secret} in the log");
        for f in &filters {
            assert!(!f.contains(secret), "{secret} in the audit log: {f}");
        }
    }
}

/// Names the audit log uses for chatsink's own actions are refused; a scope that cannot be
/// read refuses its token (and says so in the log); an empty meeting id is no scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_names_and_scopes_cannot_widen_or_impersonate() {
    let world = World::start(&[]).await;
    for name in [
        "chatsink erase",
        "chatsink purge",
        "Chatsink Erasures Apply",
        "retention sweep",
        "CHATSINK_ADMIN_TOKENS#1",
        "-",
    ] {
        let made = world.chatsink(&["token", "create", "--name", name]);
        assert!(!made.status.success(), "{name} was taken");
        assert!(said(&made).contains("--name"), "{}", said(&made));
    }
    for meeting in ["", "  "] {
        let made = world.chatsink(&["token", "create", "--name", "empty", "--meeting", meeting]);
        assert!(!made.status.success(), "{meeting:?} was a scope");
        assert!(said(&made).contains("--meeting"), "{}", said(&made));
    }
    let session = uuid::Uuid::new_v4().to_string();
    world
        .deliver(
            &session,
            "meet-a",
            &[msg(&session, "meet-a", 0, "u-ann", "hi")],
            "",
            "1",
        )
        .await;
    let scoped = world.token(&["--name", "scoped", "--meeting", "meet-a"]);
    assert_eq!(world.get("/v1/sessions", &scoped).await.0, 200);
    // A scope broken in the database (by hand, a bad restore) refuses the token.
    let broken = if world.site.location().starts_with("postgres") {
        "UPDATE tokens SET meetings = ARRAY['']::text[] WHERE name = 'scoped'"
    } else {
        "UPDATE tokens SET meetings = 'meet-a' WHERE name = 'scoped'"
    };
    run_sql(&world.site, broken);
    let (status, body) = world.get("/v1/messages", &scoped).await;
    assert_eq!(status, 401, "{body}");
    assert!(world.site.log().contains("scope cannot be read"));
}

/// `copy-archive` moves the whole archive: after users, a message and a session are erased,
/// a session purged, tokens made (scoped, admin, revoked) and requests audited on SQLite, the
/// copy on PostgreSQL loads nothing erased again (re-delivery, reprocess, backfill), every token
/// works in its scope there, and the audit log is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copy_archive_moves_the_erasure_list_tokens_and_audit_log_and_nothing_erased_returns() {
    use crate::pull::{backfill, ended, Chat, FakeRtk};
    const TEST: &str = "governance::copy_archive_moves_the_erasure_list";
    if sqlite_only(TEST) {
        return;
    }
    let Some(server) = crate::pg::postgres(TEST) else {
        return;
    };
    let world = World::start(&[]).await;
    let keep = uuid::Uuid::new_v4().to_string();
    let gone_session = uuid::Uuid::new_v4().to_string();
    let keep_messages: Vec<Msg> = ["u-1", "u-10", "u-gone", "u-1", "u-10"]
        .iter()
        .enumerate()
        .map(|(i, u)| Msg {
            // Recent: the purge below is for the old session alone.
            ms: chrono::Utc::now().timestamp_millis() - 60_000 + i as i64,
            ..msg(&keep, "meet-a", i, u, &format!("keep {i} by {u}"))
        })
        .collect();
    let erased_message = keep_messages[3].id.clone();
    let gone_messages = vec![Msg {
        ms: chrono::Utc::now().timestamp_millis() - 60_000,
        ..msg(&gone_session, "meet-b", 0, "u-1", "whole session goes")
    }];
    let old = aged(1, 400, "expired");
    let (old_session, old_messages) = &old[0];
    world
        .deliver(&keep, "meet-a", &keep_messages, "", "1")
        .await;
    world
        .deliver(&gone_session, "meet-b", &gone_messages, "", "1")
        .await;
    world
        .deliver(old_session, "meet-a", old_messages, "", "1")
        .await;
    let scoped = world.token(&["--name", "scoped", "--meeting", "meet-a"]);
    let admin = world.token(&["--name", "ops", "--admin"]);
    let revoked = world.token(&["--name", "gone-reader"]);
    assert!(world
        .chatsink(&["token", "revoke", "gone-reader"])
        .status
        .success());
    for path in [
        "/v1/users/u-gone".to_owned(),
        format!("/v1/sessions/{gone_session}"),
    ] {
        let answer = world.call(reqwest::Method::DELETE, &path, &admin).await;
        assert_eq!(answer.status(), 200, "{path}");
    }
    let erased = world.chatsink(&["erase", "--message", &erased_message]);
    assert!(erased.status.success(), "{}", said(&erased));
    let purged = world.chatsink(&["purge", "--older-than", "30d", "--yes"]);
    assert!(purged.status.success(), "{}", said(&purged));
    let (status, _) = world
        .get(&format!("/v1/sessions/{old_session}"), READ_TOKEN)
        .await;
    assert_eq!(status, 404, "the purge ran");
    assert_eq!(
        world
            .get(&format!("/v1/sessions/{keep}"), READ_TOKEN)
            .await
            .0,
        200
    );
    let erased_user_status = world.get("/v1/users/u-gone/messages", READ_TOKEN).await.0;
    world.served.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let on_sqlite = rusqlite::Connection::open(world.site.db_path()).unwrap();
    let count = |table: &str| -> i64 {
        on_sqlite
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let before: Vec<(&str, i64)> = ["erasures", "tokens", "audit", "dump_trash", "passes"]
        .into_iter()
        .map(|t| (t, count(t)))
        .collect();
    assert!(
        before
            .iter()
            .all(|(t, n)| *n > 0 || *t == "dump_trash" || *t == "passes"),
        "{before:?}"
    );
    let url = server.fresh_database();
    let copied = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["copy-archive", "--from"])
        .arg(world.site.db_path())
        .args(["--to", &url])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", said(&copied));
    // Every table of PostgreSQL's schema is copied or left on purpose (SQLite's: a unit test).
    let tables = server.sql(
        &url,
        "SELECT string_agg(table_name, ',') FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    );
    let forgotten: Vec<&str> = tables
        .split(',')
        .filter(|t| !chatsink::store::accounted_for(t))
        .collect();
    assert!(forgotten.is_empty(), "copy-archive forgets {forgotten:?}");
    assert!(tables.contains("erasures"), "{tables}");
    for (table, n) in &before {
        assert_eq!(
            server.sql(&url, &format!("SELECT count(*) FROM {table}")),
            n.to_string(),
            "{table} on PostgreSQL"
        );
    }

    // The rest of the story on PostgreSQL.
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_postgres(&url, root.path());
    let served = World::serve(&site, &[]).await;
    let world = World {
        site,
        served,
        storage: world.storage,
        _root: root,
    };
    // Re-deliveries of everything, the erased session and the purged one too.
    world
        .deliver(&keep, "meet-a", &keep_messages, "", "2")
        .await;
    world
        .deliver(&gone_session, "meet-b", &gone_messages, "", "2")
        .await;
    world
        .deliver(old_session, "meet-a", old_messages, "", "2")
        .await;
    let reprocessed = world.chatsink(&["reprocess", "--session", &keep]);
    assert!(reprocessed.status.success(), "{}", said(&reprocessed));
    let api = FakeRtk::start().await;
    for (id, messages) in [(&gone_session, &gone_messages), (old_session, old_messages)] {
        let mut listed = ended(id, Duration::from_secs(3600), 0);
        listed.chat = Chat::Dump(dump(messages, ""));
        api.add(listed);
    }
    let backfilled = backfill(&world.site, &api, &["--since", &crate::pull::since()]);
    assert!(backfilled.status.success(), "{}", said(&backfilled));

    let left = world
        .all(
            &format!("/v1/messages?session={keep}"),
            "messages",
            ADMIN_TOKEN,
        )
        .await;
    let left_ids = ids(&left, "id");
    assert_eq!(left_ids.len(), 3, "{left_ids:?}");
    assert!(!left_ids.contains(&erased_message));
    assert!(left.iter().all(|m| m["userId"] != "u-gone"));
    for session in [&gone_session, old_session] {
        let (status, _) = world
            .get(&format!("/v1/sessions/{session}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 404, "{session} came back");
    }
    assert_eq!(
        world.get("/v1/users/u-gone/messages", READ_TOKEN).await.0,
        erased_user_status
    );
    // Tokens: each in its scope.
    let sessions = world.all("/v1/sessions", "sessions", &scoped).await;
    assert_eq!(ids(&sessions, "sessionId"), BTreeSet::from([keep.clone()]));
    assert_eq!(world.get("/v1/audit", &admin).await.0, 200);
    assert_eq!(world.get("/v1/audit", &scoped).await.0, 403);
    assert_eq!(world.get("/v1/sessions", &revoked).await.0, 401);
    // The audit log is whole: every entry of the SQLite archive is there, and the new ones after.
    let audited = world.all("/v1/audit?limit=500", "entries", &admin).await;
    let audit_before = before.iter().find(|(t, _)| *t == "audit").unwrap().1;
    let audited_ids: BTreeSet<i64> = audited.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let copied_ids: BTreeSet<i64> = on_sqlite
        .prepare("SELECT id FROM audit")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(copied_ids.len() as i64, audit_before);
    assert!(
        copied_ids.is_subset(&audited_ids),
        "{copied_ids:?} {audited_ids:?}"
    );
    assert!(audited
        .iter()
        .any(|e| e["token"] == "chatsink erase" || e["token"] == "chatsink purge"));
    world.served.terminate();
}

/// A backup taken before an erasure brings the erased back when restored; the erasure list,
/// exported before the restore (or written beside a later backup) and applied after it, takes
/// them out again, through the same steps, idempotently. On SQLite with `chatsink backup`, on
/// PostgreSQL with `pg_dump` and `pg_restore`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasures_outlive_a_restore_when_the_list_is_applied() {
    let world = World::start(&[]).await;
    let s1 = uuid::Uuid::new_v4().to_string();
    let s2 = uuid::Uuid::new_v4().to_string();
    let m1: Vec<Msg> = ["u-1", "u-x", "u-1", "u-x"]
        .iter()
        .enumerate()
        .map(|(i, u)| msg(&s1, "meet-a", i, u, &format!("said {i}")))
        .collect();
    let m2 = vec![msg(&s2, "meet-a", 0, "u-1", "session two")];
    world.deliver(&s1, "meet-a", &m1, "", "1").await;
    world.deliver(&s2, "meet-a", &m2, "", "1").await;
    let files = tempfile::tempdir().unwrap();
    let on_postgres = world.site.location().starts_with("postgres");
    // The backup, before any erasure.
    let backup = files.path().join("before.db");
    let restore_from = if on_postgres {
        let server = crate::pg::postgres("erasures_outlive_a_restore").unwrap();
        server.dump_and_restore(&world.site.location())
    } else {
        let out = world.chatsink(&["backup", backup.to_str().unwrap()]);
        assert!(out.status.success(), "{}", said(&out));
        let beside = std::fs::read_to_string(files.path().join("before.db.erasures.ndjson"));
        assert_eq!(beside.unwrap(), "", "no erasure yet");
        backup.to_str().unwrap().to_owned()
    };
    let admin = ADMIN_TOKEN;
    let answer = world
        .call(reqwest::Method::DELETE, "/v1/users/u-x", admin)
        .await;
    assert_eq!(answer.status(), 200);
    let out = world.chatsink(&["erase", "--session", &s2]);
    assert!(out.status.success(), "{}", said(&out));
    let list = files.path().join("erasures.ndjson");
    let out = world.chatsink(&["erasures", "export", list.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(std::fs::read_to_string(&list).unwrap().lines().count(), 2);
    world.served.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The restore: the erased are back.
    let restored = if on_postgres {
        restore_from
    } else {
        let db = world.site.db_path();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(&restore_from, &db).unwrap();
        world.site.location()
    };
    let chatsink_on = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .args(args)
            .env("CHATSINK_DATABASE", &restored)
            .env("CHATSINK_DATA_DIR", world.site.data_dir())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let archive = Archive::at(&restored);
    assert_eq!(archive.messages_of(&s1).len(), 4, "the restore resurrects");
    assert_eq!(archive.messages_of(&s2).len(), 1);
    drop(archive);

    // A damaged list applies nothing.
    let damaged = files.path().join("damaged.ndjson");
    let first_line = std::fs::read_to_string(&list).unwrap();
    let first_line = first_line.lines().next().unwrap();
    std::fs::write(&damaged, format!("{first_line}\n{{\"kind\":\"meeting\",\"id\":\"x\",\"reason\":\"erased\",\"at_ms\":1}}\n")).unwrap();
    let out = chatsink_on(&["erasures", "apply", damaged.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("line 2") && said(&out).contains("nothing was applied"),
        "{}",
        said(&out)
    );
    assert_eq!(Archive::at(&restored).messages_of(&s1).len(), 4);

    let out = chatsink_on(&["erasures", "apply", list.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("applied 2 erasure(s): 3 messages"),
        "{}",
        said(&out)
    );
    let again = chatsink_on(&["erasures", "apply", list.to_str().unwrap()]);
    assert!(
        said(&again).contains("applied 2 erasure(s): 0 messages"),
        "{}",
        said(&again)
    );
    let archive = Archive::at(&restored);
    let left: Vec<String> = archive
        .messages_of(&s1)
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(left, ["u-1", "u-1"]);
    assert!(archive.session(&s2).is_none());
}

/// On PostgreSQL the database's clock decides who may read and what retention keeps: an
/// instance (or a cron job) whose clock runs two hours or a day ahead agrees with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_skewed_clocks_agree_on_expiry_and_retention() {
    if !on_postgres() {
        eprintln!("POSTGRES-ONLY governance::instances_with_skewed_clocks: one SQLite writer has one clock");
        return;
    }
    const AHEAD_2H: &str = "7200000";
    let world = World::start(&[("CHATSINK_TEST_CLOCK_SKEW_MS", AHEAD_2H.into())]).await;
    // Made by a process two hours behind: its expiry is still an hour from the database's now.
    let behind = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["token", "create", "--name", "hour", "--expires", "1h"])
        .env("CHATSINK_DATABASE", world.site.location())
        .env("CHATSINK_TEST_CLOCK_SKEW_MS", "-7200000")
        .output()
        .unwrap();
    assert!(behind.status.success(), "{}", said(&behind));
    let hour = String::from_utf8(behind.stdout).unwrap().trim().to_owned();
    // The instance two hours ahead would call it expired by its own clock.
    assert_eq!(world.get("/v1/sessions", &hour).await.0, 200);

    // Retention: a session 36 hours old is kept by `purge --older-than 2d` run a day ahead.
    let now = chrono::Utc::now().timestamp_millis();
    let session = uuid::Uuid::new_v4().to_string();
    let messages = vec![Msg {
        ms: now - 36 * 3_600_000,
        ..msg(&session, "meet-a", 0, "u-1", "a day and a half ago")
    }];
    world.deliver(&session, "meet-a", &messages, "", "1").await;
    let purge = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["purge", "--older-than", "2d"])
        .env("CHATSINK_DATABASE", world.site.location())
        .env("CHATSINK_DATA_DIR", world.site.data_dir())
        .env("CHATSINK_TEST_CLOCK_SKEW_MS", "86400000")
        .output()
        .unwrap();
    assert!(purge.status.success(), "{}", said(&purge));
    assert_eq!(
        world
            .get(&format!("/v1/sessions/{session}"), READ_TOKEN)
            .await
            .0,
        200,
        "{}",
        said(&purge)
    );
}

/// A clean stop (SIGTERM) loses no audit entry: every request answered before it has its entry
/// on disk when the process has exited, though entries are written in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_loses_no_audit_entry() {
    let world = World::start(&[]).await;
    let requests = 40;
    for i in 0..requests {
        let (status, _) = world
            .get(&format!("/v1/sessions?limit={}", i % 7 + 1), READ_TOKEN)
            .await;
        assert_eq!(status, 200);
    }
    let World { site, served, .. } = world;
    served.stop();
    assert_eq!(
        query_sql(
            &site,
            "SELECT count(*) FROM audit WHERE route = '/v1/sessions'"
        ),
        requests.to_string()
    );
}

/// A dump's columns chatsink has no field for are kept and served (`extra` in JSON and NDJSON,
/// one JSON column in CSV), `targetUserIds` makes a message private (served, filtered), and an
/// erased user's id leaves both, in the archive and in every later load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_columns_and_private_messages_are_kept_served_filtered_and_erased() {
    let world = World::start(&[]).await;
    let session = uuid::Uuid::new_v4().to_string();
    let header = format!("{DUMP_HEADER},targetUserIds,reactionCount,Mood");
    let row = |id: &str, user: &str, targets: &str, reactions: &str, mood: &str, i: i64| {
        let mut line = Msg {
            ms: 1_780_480_800_000 + i * 1000,
            ..msg(&session, "meet-a", i as usize, user, &format!("text {id}"))
        }
        .row();
        line.truncate(line.len() - 2); // the row's CRLF
        let extra = csv_row(&[targets, reactions, mood]);
        format!("{line},{extra}")
    };
    let body = [
        header,
        row("m1", "u-1", "", "3", "=HYPERLINK(\"x\")", 0),
        row("m2", "u-1", r#"["u-2","u-10","u-watcher"]"#, "", "calm", 1),
        row("m3", "u-2", "u-1", "1", "", 2),
        row("m4", "u-10", "", "0", "thanks u-2, u-20", 3),
    ]
    .concat()
    .replace(
        &format!("{DUMP_HEADER},targetUserIds,reactionCount,Mood"),
        &format!("{DUMP_HEADER},targetUserIds,reactionCount,Mood\r\n"),
    );
    let path = format!("/dumps/{session}.csv");
    let world = &world;
    let deliver = |note: &str| {
        world
            .storage
            .route(&path, vec![Reply::Body(body.clone().into_bytes())]);
        let delivery = synced(&session, "meet-a", &world.storage.url(&path), note);
        async move {
            let answer = world
                .served
                .post(&delivery, &uuid::Uuid::new_v4().to_string())
                .await
                .unwrap();
            assert!(answer.status().is_success());
            world.site.wait_until_settled().await;
        }
    };
    deliver("1").await;
    let by_id = |messages: Vec<serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
        messages
            .into_iter()
            .map(|m| {
                (
                    m["id"]
                        .as_str()
                        .unwrap()
                        .rsplit('-')
                        .next()
                        .unwrap()
                        .to_owned(),
                    m,
                )
            })
            .collect()
    };
    let all = by_id(
        world
            .all(
                &format!("/v1/messages?session={session}"),
                "messages",
                READ_TOKEN,
            )
            .await,
    );
    assert_eq!(all.len(), 4, "{all:?}");
    assert_eq!(all["m0"]["private"], false);
    assert!(all["m0"].get("targetUserIds").is_none());
    assert_eq!(
        all["m0"]["extra"],
        serde_json::json!({"reactionCount": "3", "Mood": "=HYPERLINK(\"x\")"})
    );
    assert_eq!(all["m1"]["private"], true);
    assert_eq!(
        all["m1"]["targetUserIds"],
        serde_json::json!(["u-2", "u-10", "u-watcher"])
    );
    assert_eq!(
        all["m1"]["extra"],
        serde_json::json!({"reactionCount": "", "Mood": "calm"})
    );
    assert_eq!(all["m2"]["targetUserIds"], serde_json::json!(["u-1"]));
    // Filtered, both ways, and counted.
    for (filter, expected) in [("true", ["m1", "m2"]), ("false", ["m0", "m3"])] {
        let got = by_id(
            world
                .all(
                    &format!("/v1/messages?session={session}&private={filter}"),
                    "messages",
                    READ_TOKEN,
                )
                .await,
        );
        assert_eq!(
            got.keys().cloned().collect::<Vec<_>>(),
            expected,
            "private={filter}"
        );
        let (_, stats) = world
            .get(
                &format!("/v1/stats?session={session}&private={filter}"),
                READ_TOKEN,
            )
            .await;
        assert_eq!(stats["total"], 2, "{stats}");
    }
    let (status, body_of) = world.get("/v1/messages?private=perhaps", READ_TOKEN).await;
    assert_eq!(
        (status, body_of["parameter"].as_str()),
        (400, Some("private"))
    );
    // Exports: NDJSON carries the same objects; CSV one JSON column `extra`.
    let ndjson = world
        .call(
            reqwest::Method::GET,
            &format!("/v1/messages?session={session}&format=ndjson"),
            READ_TOKEN,
        )
        .await
        .text()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(by_id(lines), all);
    let csv_text = world
        .call(
            reqwest::Method::GET,
            &format!("/v1/messages?session={session}&format=csv"),
            READ_TOKEN,
        )
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let second = &records[1];
    assert_eq!(&second[column("private")], "true");
    assert_eq!(
        &second[column("targetUserIds")],
        r#"["u-2","u-10","u-watcher"]"#
    );
    let extra: serde_json::Value = serde_json::from_str(&records[0][column("extra")]).unwrap();
    assert_eq!(extra, all["m0"]["extra"]);

    // Erasing u-2: their message goes, and their id leaves the others' recipients and extra.
    let answer = world
        .call(reqwest::Method::DELETE, "/v1/users/u-2", ADMIN_TOKEN)
        .await;
    assert_eq!(answer.status(), 200);
    for round in ["after the erasure", "after a re-delivery"] {
        let left = by_id(
            world
                .all(
                    &format!("/v1/messages?session={session}"),
                    "messages",
                    READ_TOKEN,
                )
                .await,
        );
        assert_eq!(
            left.keys().cloned().collect::<Vec<_>>(),
            ["m0", "m1", "m3"],
            "{round}"
        );
        assert_eq!(
            left["m1"]["targetUserIds"],
            serde_json::json!(["u-10", "u-watcher"]),
            "{round}"
        );
        assert_eq!(left["m1"]["private"], true, "{round}");
        let mood = left["m3"]["extra"]["Mood"].as_str().unwrap();
        assert!(
            !mood.contains("u-2,") && mood.contains("u-20"),
            "{round}: {mood}"
        );
        assert_eq!(left["m0"]["extra"], all["m0"]["extra"], "{round}");
        deliver(round).await;
    }

    // A user named only as a recipient: their id leaves the recipients, and the kept dump that
    // names them goes (the archive keeps no file holding an erased id).
    let quiet = uuid::Uuid::new_v4().to_string();
    let quiet_dump = format!(
        "{DUMP_HEADER},targetUserIds\r\n{}",
        csv_row(&[
            "q-1",
            "u-10",
            &quiet,
            "meet-a",
            "Ten",
            "false",
            "false",
            "TEXT_MESSAGE",
            "psst",
            "2026-06-03T10:00:00Z",
            "u-watcher",
        ])
    );
    let quiet_path = format!("/dumps/{quiet}.csv");
    for round in ["first", "after the erasure", "after a re-delivery"] {
        if round == "after the erasure" {
            assert!(
                holds(&kept_dumps(&world.site), "u-watcher"),
                "the dump is kept"
            );
            let answer = world
                .call(reqwest::Method::DELETE, "/v1/users/u-watcher", ADMIN_TOKEN)
                .await;
            assert_eq!(answer.status(), 200);
        } else {
            world.storage.route(
                &quiet_path,
                vec![Reply::Body(quiet_dump.clone().into_bytes())],
            );
            let delivery = synced(&quiet, "meet-a", &world.storage.url(&quiet_path), round);
            let answer = world
                .served
                .post(&delivery, &uuid::Uuid::new_v4().to_string())
                .await
                .unwrap();
            assert!(answer.status().is_success());
            world.site.wait_until_settled().await;
        }
        let left = world
            .all(
                &format!("/v1/messages?session={quiet}"),
                "messages",
                READ_TOKEN,
            )
            .await;
        assert_eq!(left.len(), 1, "{round}");
        assert_eq!(left[0]["private"], true, "{round}");
        if round != "first" {
            assert_eq!(left[0]["targetUserIds"], serde_json::json!([]), "{round}");
            assert!(
                !holds(&kept_dumps(&world.site), "u-watcher"),
                "{round}: a kept dump names them"
            );
        }
    }
}

/// Tokens made in the database that are not admin tokens (scoped, unscoped), and admin tokens
/// that expired or were revoked, are refused every admin route: 403 for a usable read token,
/// 401 for one that is no longer usable; nothing is erased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_usable_admin_token_reaches_an_admin_route() {
    let world = World::start(&[]).await;
    let session = uuid::Uuid::new_v4().to_string();
    let messages = vec![msg(&session, "meet-a", 0, "u-ann", "stays")];
    world.deliver(&session, "meet-a", &messages, "", "1").await;
    let scoped = world.token(&["--name", "scoped", "--meeting", "meet-a"]);
    let unscoped = world.token(&["--name", "unscoped"]);
    let expiring = world.token(&["--name", "brief-admin", "--admin", "--expires", "1s"]);
    let revoked = world.token(&["--name", "gone-admin", "--admin"]);
    assert!(world
        .chatsink(&["token", "revoke", "gone-admin"])
        .status
        .success());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let routes = [
        (reqwest::Method::DELETE, "/v1/users/u-ann".to_owned()),
        (reqwest::Method::DELETE, format!("/v1/sessions/{session}")),
        (
            reqwest::Method::DELETE,
            format!("/v1/messages/{session}-m0"),
        ),
        (reqwest::Method::GET, "/v1/audit".to_owned()),
    ];
    for (token, expected) in [
        (&scoped, 403),
        (&unscoped, 403),
        (&expiring, 401),
        (&revoked, 401),
    ] {
        for (method, path) in &routes {
            let answer = world.call(method.clone(), path, token).await;
            assert_eq!(answer.status().as_u16(), expected, "{method} {path}");
        }
    }
    let left = world.all("/v1/messages", "messages", READ_TOKEN).await;
    assert_eq!(left.len(), 1, "nothing was erased");
}

/// A session's erasure removes every delivery of it and its kept dump, and says how many by
/// count: the numbers it answers equal what was there, and nothing of either is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_erasure_removes_and_counts_its_deliveries_and_kept_dumps() {
    let world = World::start(&[]).await;
    let session = uuid::Uuid::new_v4().to_string();
    let other = uuid::Uuid::new_v4().to_string();
    let messages = vec![msg(&session, "meet-a", 0, "u-1", "quokka words")];
    for note in ["1", "2", "3"] {
        world.deliver(&session, "meet-a", &messages, "", note).await;
    }
    let keep = vec![msg(&other, "meet-a", 0, "u-1", "wombat words")];
    world.deliver(&other, "meet-a", &keep, "", "1").await;
    let deliveries_of = |id: &str| {
        world
            .site
            .archive()
            .deliveries()
            .into_iter()
            .filter(|d| d.session_id.as_deref() == Some(id))
            .count()
    };
    let delivered = deliveries_of(&session);
    assert_eq!(delivered, 3);
    assert!(holds(&kept_dumps(&world.site), "quokka"));
    let answer: serde_json::Value = world
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{session}"),
            ADMIN_TOKEN,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["removed"]["deliveries"], delivered, "{answer}");
    assert_eq!(answer["removed"]["dumps"], 1, "{answer}");
    assert_eq!(answer["removed"]["messages"], 1, "{answer}");
    assert_eq!(deliveries_of(&session), 0);
    assert!(!holds(&kept_dumps(&world.site), "quokka"));
    // The other session keeps its delivery and its dump.
    assert_eq!(deliveries_of(&other), 1);
    assert!(holds(&kept_dumps(&world.site), "wombat"));
}

/// An erasure that arrives while a load of the same session is half-way (rows in the open
/// transaction) still erases them all: the load commits and the erasure then removes what it
/// wrote (SQLite: the writer's lock; PostgreSQL: the erasure lock); a later load leaves them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_during_a_load_of_the_same_session_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let served = site
        .start_with("load.mid=1500", |command| {
            command
                .env("CHATSINK_ADMIN_TOKENS", ADMIN_TOKEN)
                .env("RUST_LOG", "info");
        })
        .await;
    let world = World {
        site,
        served,
        storage: FakeServer::start().await,
        _root: root,
    };
    let session = uuid::Uuid::new_v4().to_string();
    let messages: Vec<Msg> = (0..5000)
        .map(|i| {
            msg(
                &session,
                "meet-a",
                i,
                if i % 3 == 0 { "u-racer" } else { "u-calm" },
                "row",
            )
        })
        .collect();
    let path = format!("/dumps/{session}.csv");
    world
        .storage
        .route(&path, vec![Reply::Body(dump(&messages, ""))]);
    let body = synced(&session, "meet-a", &world.storage.url(&path), "1");
    let answer = world.served.post(&body, "race-1").await.unwrap();
    assert_eq!(answer.status(), 200);
    world.site.wait_for_marker("load.mid").await;
    // The load holds rows it has not committed; the erasure comes now.
    let erased = world
        .call(reqwest::Method::DELETE, "/v1/users/u-racer", ADMIN_TOKEN)
        .await;
    assert_eq!(erased.status(), 200);
    world.site.wait_until_settled().await;
    let racer = |world: &World| {
        let archive = world.site.archive();
        archive
            .messages_of(&session)
            .iter()
            .filter(|m| m.user_id == "u-racer")
            .count()
    };
    assert_eq!(
        racer(&world),
        0,
        "the erased user's rows of the racing load"
    );
    assert_eq!(world.site.archive().messages_of(&session).len(), 3333);
    // And a reload (the same delivery made anew) leaves them out too.
    let again = synced(&session, "meet-a", &world.storage.url(&path), "2");
    assert_eq!(
        world.served.post(&again, "race-2").await.unwrap().status(),
        200
    );
    world.site.wait_until_settled().await;
    assert_eq!(racer(&world), 0);
}

/// An erasure made before the data arrives holds on every way data comes in: `chatsink ingest
/// FILE` (one session, and a file of many) and a reconcile pass that pulls a session whose
/// webhook never came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_holds_for_ingest_files_and_reconcile() {
    use crate::pull::{ended, Chat, FakeRtk};
    let world = World::start(&[]).await;
    let out = world.chatsink(&["erase", "--user", "u-early"]);
    assert!(out.status.success(), "{}", said(&out));
    let files = tempfile::tempdir().unwrap();
    let (a, b) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let rows = |session: &str| {
        vec![
            msg(session, "meet-a", 0, "u-early", "early words"),
            msg(session, "meet-a", 1, "u-late", "late words"),
        ]
    };
    let one = files.path().join("one.csv");
    std::fs::write(&one, dump(&rows(&a), "")).unwrap();
    let out = world.chatsink(&["ingest", one.to_str().unwrap(), "--session", &a]);
    assert!(out.status.success(), "{}", said(&out));
    let many = files.path().join("many.csv");
    let mut both = rows(&b);
    both.extend(rows(&format!("{b}-2")));
    std::fs::write(&many, dump(&both, "")).unwrap();
    let out = world.chatsink(&["ingest", many.to_str().unwrap()]);
    assert!(out.status.success(), "{}", said(&out));

    // Reconcile, in a serve with API credentials, pulls a session nobody delivered.
    world.served.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api = FakeRtk::start().await;
    let pulled = uuid::Uuid::new_v4().to_string();
    let mut listed = ended(&pulled, Duration::from_secs(600), 0);
    listed.chat = Chat::Dump(dump(&rows(&pulled), ""));
    api.add(listed);
    let mut env = api.env();
    env.push(("CHATSINK_RECONCILE_INTERVAL_SECS", "1".into()));
    env.push(("CHATSINK_RECONCILE_GRACE_SECS", "60".into()));
    let served = World::serve(&world.site, &env).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while world.site.archive().session(&pulled).is_none() {
        assert!(
            Instant::now() < deadline,
            "reconcile never pulled it: {}",
            world.site.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.site.wait_until_settled().await;
    let archive = world.site.archive();
    for session in [a.clone(), b.clone(), format!("{b}-2"), pulled.clone()] {
        let users: Vec<String> = archive
            .messages_of(&session)
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        assert_eq!(users, ["u-late"], "{session}");
    }
    served.stop();
}

/// Every `/ui` answer carries the page's headers (its Content-Security-Policy among them):
/// the page, the redirect from `/ui`, an unknown asset's 404, and other methods' JSON 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ui_answer_carries_the_pages_headers() {
    let world = World::start(&[]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = world.served.address().to_owned();
    for (method, path, status) in [
        (reqwest::Method::GET, "/ui/", 200),
        (reqwest::Method::GET, "/ui", 308),
        (reqwest::Method::GET, "/", 302),
        (reqwest::Method::GET, "/ui/assets/nope.js", 404),
        (reqwest::Method::POST, "/ui/", 405),
        (reqwest::Method::DELETE, "/ui", 405),
        (reqwest::Method::PUT, "/ui/sessions/x", 405),
    ] {
        let answer = client
            .request(method.clone(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{method} {path}");
        let headers = answer.headers().clone();
        assert_eq!(
            headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok()),
            Some(chatsink::ui::CONTENT_SECURITY_POLICY),
            "{method} {path}"
        );
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{method} {path} {name}"
            );
        }
        if status == 405 {
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
            assert_eq!(
                headers.get("allow").and_then(|v| v.to_str().ok()),
                Some("GET")
            );
        }
        if status == 308 {
            assert_eq!(
                headers.get("location").and_then(|v| v.to_str().ok()),
                Some("/ui/")
            );
        }
    }
}

/// `purge` deletes nothing by surprise: a bare `m` is refused naming both readings, `--dry-run`
/// says what would go and removes nothing, and a purge of more than half the archive, or of
/// messages from the last day, needs `--yes` when no one is at a terminal to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_asks_before_it_surprises() {
    let world = World::start(&[]).await;
    let now = chrono::Utc::now().timestamp_millis();
    let day = 86_400_000;
    let mut sessions = Vec::new();
    for (age, n) in [(40 * day, 10), (50 * day, 10), (2 * 3_600_000, 5)] {
        let session = uuid::Uuid::new_v4().to_string();
        let messages: Vec<Msg> = (0..n)
            .map(|i| Msg {
                ms: now - age + i as i64,
                ..msg(&session, "meet-a", i, "u-1", "said")
            })
            .collect();
        world.deliver(&session, "meet-a", &messages, "", "1").await;
        sessions.push(session);
    }
    let out = world.chatsink(&["purge", "--older-than", "6m"]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("6min") && said(&out).contains("6months"),
        "{}",
        said(&out)
    );
    let out = world.chatsink(&["purge", "--older-than", "30d", "--dry-run"]);
    assert!(out.status.success(), "{}", said(&out));
    let cutoff = chrono::DateTime::from_timestamp_millis(now - 30 * day).unwrap();
    assert!(
        said(&out).contains("2 sessions, 20 of the archive's 25 messages")
            && said(&out).contains(&cutoff.format("%Y-%m-%d").to_string())
            && said(&out).contains(&sessions[0])
            && said(&out).contains(&sessions[1]),
        "{}",
        said(&out)
    );
    assert_eq!(
        held(&world, &sessions).await,
        3,
        "a dry run removes nothing"
    );
    // More than half the archive: refused without --yes.
    let out = world.chatsink(&["purge", "--older-than", "30d"]);
    assert!(!out.status.success());
    assert!(
        said(&out).contains("more than half") && said(&out).contains("--yes"),
        "{}",
        said(&out)
    );
    assert_eq!(held(&world, &sessions).await, 3);
    // Messages from the last day: refused too, whatever the share.
    let out = world.chatsink(&["purge", "--older-than", "1h"]);
    assert!(said(&out).contains("last day"), "{}", said(&out));
    assert_eq!(held(&world, &sessions).await, 3);
    let out = world.chatsink(&["purge", "--older-than", "30d", "--yes"]);
    assert!(
        said(&out).contains("purged 2 sessions: 20 messages"),
        "{}",
        said(&out)
    );
    assert_eq!(held(&world, &sessions).await, 1);
}

/// How many of `sessions` the archive holds.
async fn held(world: &World, sessions: &[String]) -> usize {
    let mut held = 0;
    for s in sessions {
        held += usize::from(world.get(&format!("/v1/sessions/{s}"), READ_TOKEN).await.0 == 200);
    }
    held
}
