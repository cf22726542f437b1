//! Pull as well as push: `chatsink backfill` and reconcile inside `serve`, against the real
//! binary and a loopback server playing RealtimeKit's sessions listing, the Chat Replay API and
//! the storage its links point at. On this suite's backend.

use crate::helpers::*;
use crate::site::{Served, Site};
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "cf-api-token-for-tests";
const API_ROOT: &str = "/client/v4/accounts/acc/realtime/kit/app";

/// What the fake answers for a session's chat.
#[derive(Clone)]
pub(crate) enum Chat {
    Dump(Vec<u8>),
    /// The Chat Replay API has no chat for the session.
    NotFound,
    /// The Chat Replay API fails with this status.
    Fails(u16),
}

#[derive(Clone)]
pub(crate) struct FakeSession {
    pub(crate) id: String,
    pub(crate) status: &'static str,
    pub(crate) meeting: String,
    pub(crate) title: String,
    pub(crate) started_ms: i64,
    pub(crate) ended_ms: Option<i64>,
    pub(crate) chat: Chat,
}

#[derive(Default)]
struct RtkState {
    sessions: Vec<FakeSession>,
    /// Listing pages to answer 429 (with `retry-after: 1`) once each.
    rate_limit_pages: Vec<u32>,
    /// The listing answers this status to every request.
    listing_fails: Option<u16>,
    /// Raw entries the first page carries before the sessions (a hostile or broken listing).
    raw_entries: Vec<serde_json::Value>,
    /// The listing answers with this many bytes of padding around its JSON.
    padding: usize,
    /// The listing answers every page_no with the first page (a server that ignores paging).
    ignores_page_no: bool,
    /// The first page's `page_no`: 1 by default; the API reference allows 0.
    page_base: u32,
    /// The most sessions a page holds, whatever `per_page` asks for.
    per_page_cap: Option<usize>,
    /// No `paging` beside `data` (the SDK's type before 2026-05).
    without_paging: bool,
    /// Added to `total_count`: a listing that counts sessions it never shows.
    overcount: u64,
    /// Each session's participants, as the API's entries.
    participants: HashMap<String, Vec<serde_json::Value>>,
    /// The participants listing answers this status to every request.
    participants_fail: Option<u16>,
    participant_requests: usize,
    listing_delay: Duration,
    dump_delay: Duration,
    /// (page_no, arrived, answered) of each listing request.
    listings: Vec<(u32, Instant, Instant)>,
    /// Each listing request's query, as sent.
    queries: Vec<HashMap<String, String>>,
    chat_requests: HashMap<String, usize>,
    dump_requests: HashMap<String, usize>,
    /// When each request to the API itself (listing or chat, not a dump) arrived.
    api_requests: Vec<Instant>,
}

/// RealtimeKit's API on loopback: `GET {API_ROOT}/sessions` (filters `status`, `start_time`
/// and `end_time` on a session's start, `associated_id`; pages `page_no`/`per_page`, oldest
/// first), `GET {API_ROOT}/sessions/{id}/chat`, and the dumps its links name.
#[derive(Clone)]
pub(crate) struct FakeRtk {
    base: String,
    state: Arc<Mutex<RtkState>>,
}

impl FakeRtk {
    pub(crate) async fn start() -> Self {
        let state = Arc::new(Mutex::new(RtkState {
            page_base: 1,
            ..RtkState::default()
        }));
        let shared = web::Data::from(state.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(shared.clone())
                .route(&format!("{API_ROOT}/sessions"), web::get().to(listing))
                .route(
                    &format!("{API_ROOT}/sessions/{{id}}/chat"),
                    web::get().to(chat),
                )
                .route(
                    &format!("{API_ROOT}/sessions/{{id}}/participants"),
                    web::get().to(participants),
                )
                .route("/dumps/{id}.csv", web::get().to(dump))
        })
        .workers(2)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        tokio::spawn(server.run());
        Self { base, state }
    }

    pub(crate) fn add(&self, session: FakeSession) {
        self.state.lock().unwrap().sessions.push(session);
    }

    /// How the listing pages: the first page's number, the most sessions a page holds, and
    /// whether `paging` is sent beside `data` (the variations RealtimeKit's types allow).
    pub(crate) fn shape(&self, page_base: u32, per_page_cap: Option<usize>, without_paging: bool) {
        self.with(|s| {
            s.page_base = page_base;
            s.per_page_cap = per_page_cap;
            s.without_paging = without_paging;
        });
    }

    /// Adds `session`, or replaces the one of its id (a new chat for it, in its place).
    pub(crate) fn put(&self, session: FakeSession) {
        let mut state = self.state.lock().unwrap();
        match state.sessions.iter_mut().find(|s| s.id == session.id) {
            Some(known) => *known = session,
            None => state.sessions.push(session),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut RtkState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn chat_requests(&self, id: &str) -> usize {
        self.with(|s| s.chat_requests.get(id).copied().unwrap_or(0))
    }

    fn dump_requests(&self, id: &str) -> usize {
        self.with(|s| s.dump_requests.get(id).copied().unwrap_or(0))
    }

    /// The settings that point chatsink at this API.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CHATSINK_RTK_API_BASE", format!("{}/client/v4", self.base)),
            ("CHATSINK_RTK_ACCOUNT_ID", "acc".into()),
            ("CHATSINK_RTK_APP_ID", "app".into()),
            ("CHATSINK_RTK_API_TOKEN", TOKEN.into()),
        ]
    }
}

fn authorized(request: &HttpRequest) -> bool {
    request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

fn iso(ms: i64) -> String {
    chatsink::domain::Timestamp::from_millis(ms).to_rfc3339()
}

async fn listing(
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<Mutex<RtkState>>,
) -> HttpResponse {
    let arrived = Instant::now();
    if !authorized(&request) {
        return HttpResponse::Unauthorized().finish();
    }
    let page_no: u32 = query
        .get("page_no")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let asked: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20);
    let time = |key: &str| {
        query
            .get(key)
            .map(|t| chatsink::domain::Timestamp::parse(t).unwrap().millis())
    };
    let (delay, fails, limited, page_no) = {
        let mut s = state.lock().unwrap();
        s.queries.push(query.0.clone());
        s.api_requests.push(arrived);
        let page_no = if s.ignores_page_no {
            s.page_base
        } else {
            page_no
        };
        let limited = s.rate_limit_pages.contains(&page_no);
        s.rate_limit_pages.retain(|p| *p != page_no);
        (s.listing_delay, s.listing_fails, limited, page_no)
    };
    tokio::time::sleep(delay).await;
    let answer = if limited {
        HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "1"))
            .finish()
    } else if let Some(status) = fails {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
    } else if page_no < state.lock().unwrap().page_base {
        HttpResponse::BadRequest().json(serde_json::json!({"success": false, "error": {
            "code": 400, "message": "page_no must be at least 1"}}))
    } else {
        let s = state.lock().unwrap();
        let mut picked: Vec<&FakeSession> = s
            .sessions
            .iter()
            .filter(|f| query.get("status").is_none_or(|st| st == f.status))
            .filter(|f| query.get("associated_id").is_none_or(|m| *m == f.meeting))
            .filter(|f| time("start_time").is_none_or(|t| f.started_ms >= t))
            .filter(|f| time("end_time").is_none_or(|t| f.started_ms <= t))
            .collect();
        picked.sort_by_key(|f| (f.started_ms, f.id.clone()));
        // The whole listing, the raw entries first; a page is a slice of it.
        let rows: Vec<serde_json::Value> = s
            .raw_entries
            .iter()
            .cloned()
            .chain(picked.into_iter().map(|f| {
                serde_json::json!({
                    "id": f.id,
                    "associated_id": f.meeting,
                    "meeting_display_name": f.title,
                    "status": f.status,
                    "type": "meeting",
                    "created_at": iso(f.started_ms - 1000),
                    "started_at": iso(f.started_ms),
                    "ended_at": f.ended_ms.map(iso),
                    "updated_at": iso(f.ended_ms.unwrap_or(f.started_ms)),
                    "minutes_consumed": 1.5,
                    "organization_id": "org",
                })
            }))
            .collect();
        let per_page = s.per_page_cap.map_or(asked, |cap| asked.min(cap)).max(1);
        let start = (page_no - s.page_base) as usize * per_page;
        let page: Vec<serde_json::Value> =
            rows.iter().skip(start).take(per_page).cloned().collect();
        let mut answer = serde_json::json!({"success": true, "data": {"sessions": page}});
        if !s.without_paging {
            // As the SDK's type has it: beside `data`, the last offset inclusive.
            answer["paging"] = serde_json::json!({
                "start_offset": start,
                "end_offset": (start + page.len()).saturating_sub(1),
                "total_count": rows.len() as u64 + s.overcount,
            });
        }
        HttpResponse::Ok()
            .content_type("application/json")
            .body(format!("{answer}{}", " ".repeat(s.padding)))
    };
    state
        .lock()
        .unwrap()
        .listings
        .push((page_no, arrived, Instant::now()));
    answer
}

/// `GET .../sessions/{id}/participants`, in the SDK's shape: `data.participants`, no `paging`
/// (the SDK's type has none), pages from the listing's base, capped as the listing is.
async fn participants(
    request: HttpRequest,
    id: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    state: web::Data<Mutex<RtkState>>,
) -> HttpResponse {
    if !authorized(&request) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut s = state.lock().unwrap();
    s.api_requests.push(Instant::now());
    s.participant_requests += 1;
    if let Some(status) = s.participants_fail {
        return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(
            serde_json::json!({"success": false, "error": {"code": status, "message": "failing"}}),
        );
    }
    let page_no: u32 = query
        .get("page_no")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    if page_no < s.page_base {
        return HttpResponse::BadRequest().finish();
    }
    let asked: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20);
    let per_page = s.per_page_cap.map_or(asked, |cap| asked.min(cap)).max(1);
    let start = (page_no - s.page_base) as usize * per_page;
    let all = s.participants.get(id.as_str()).cloned().unwrap_or_default();
    let page: Vec<serde_json::Value> = all.into_iter().skip(start).take(per_page).collect();
    HttpResponse::Ok().json(serde_json::json!({"success": true, "data": {"participants": page}}))
}

/// A participant entry as the SDK's type has it.
pub(crate) fn participant(id: &str, user_id: &str, custom: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "user_id": user_id,
        "custom_participant_id": custom,
        "display_name": format!("Name of {id}"),
        "preset_name": "group_call_participant",
        "joined_at": "2026-11-30T10:00:00.000Z",
        "left_at": "2026-11-30T11:00:00.000Z",
        "duration": 60.0,
        "created_at": "2026-11-30T10:00:00.000Z",
        "updated_at": "2026-11-30T11:00:00.000Z",
    })
}

async fn chat(
    request: HttpRequest,
    id: web::Path<String>,
    state: web::Data<Mutex<RtkState>>,
) -> HttpResponse {
    if !authorized(&request) {
        return HttpResponse::Unauthorized().finish();
    }
    let mut s = state.lock().unwrap();
    s.api_requests.push(Instant::now());
    *s.chat_requests.entry(id.clone()).or_default() += 1;
    let Some(session) = s.sessions.iter().find(|f| f.id == *id) else {
        return HttpResponse::NotFound().finish();
    };
    match session.chat {
        Chat::NotFound => HttpResponse::NotFound().finish(),
        Chat::Fails(status) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
        }
        Chat::Dump(_) => {
            let host = request.connection_info().host().to_owned();
            HttpResponse::Ok().json(serde_json::json!({"success": true, "data": {
                "chat_download_url": format!("http://{host}/dumps/{id}.csv"),
                "chat_download_url_expiry": "2099-01-01T00:00:00.000Z",
            }}))
        }
    }
}

async fn dump(id: web::Path<String>, state: web::Data<Mutex<RtkState>>) -> HttpResponse {
    let (delay, body) = {
        let mut s = state.lock().unwrap();
        *s.dump_requests.entry(id.clone()).or_default() += 1;
        let body = s
            .sessions
            .iter()
            .find(|f| f.id == *id)
            .map(|f| f.chat.clone());
        (s.dump_delay, body)
    };
    tokio::time::sleep(delay).await;
    match body {
        Some(Chat::Dump(bytes)) => HttpResponse::Ok().body(bytes),
        _ => HttpResponse::NotFound().finish(),
    }
}

/// An ended session, `ended_ago` before now, with a dump of `messages` rows.
pub(crate) fn ended(id: &str, ended_ago: Duration, messages: usize) -> FakeSession {
    let ended_ms = now_ms() - ended_ago.as_millis() as i64;
    FakeSession {
        id: id.into(),
        status: "ENDED",
        meeting: format!("meeting-of-{id}"),
        title: format!("Stand-up {id}"),
        started_ms: ended_ms - 30 * 60 * 1000,
        ended_ms: Some(ended_ms),
        chat: Chat::Dump(simple_dump(id, messages)),
    }
}

fn now_ms() -> i64 {
    chatsink::domain::Timestamp::now().millis()
}

/// `chatsink backfill ARGS` on the site's database, pointed at the fake API.
fn backfill_command(site: &Site, api: &FakeRtk, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatsink"));
    command
        .arg("backfill")
        .args(args)
        .env("CHATSINK_DATABASE", site.location())
        .env("CHATSINK_DATA_DIR", site.data_dir())
        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
        .env("RUST_LOG", "warn")
        .envs(api.env());
    command
}

pub(crate) fn backfill(site: &Site, api: &FakeRtk, args: &[&str]) -> Output {
    backfill_command(site, api, args)
        .output()
        .expect("binary runs")
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The window every backfill here asks for: the last two days.
pub(crate) fn since() -> String {
    iso(now_ms() - 48 * 3600 * 1000)
}

/// The archive made before any backfill: `migrate` on the site's database.
fn migrate(site: &Site) {
    let output = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .arg("migrate")
        .env("CHATSINK_DATABASE", site.location())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", said(&output));
}

/// A backfill over three listing pages (the second answered 429 first) loads every ended
/// session once with the listing's metadata, skips live ones and one a webhook brought, and
/// records a session with no chat (404, or an empty dump) as such, not as a failure. Run again,
/// it downloads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_loads_each_ended_session_over_several_pages_and_skips_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let api = FakeRtk::start().await;
    // 205 ended sessions: two full pages of 100 and one of 5.
    let ids: Vec<String> = (0..205).map(|n| format!("past-{n:03}")).collect();
    for (n, id) in ids.iter().enumerate() {
        let mut session = ended(id, Duration::from_secs(3600 + n as u64), 2);
        if id == "past-007" {
            session.chat = Chat::NotFound;
        }
        if id == "past-008" {
            session.chat = Chat::Dump(format!("{DUMP_HEADER}\r\n").into_bytes());
        }
        api.add(session);
    }
    for n in 0..3 {
        let mut live = ended(&format!("live-{n}"), Duration::from_secs(600), 2);
        live.status = "LIVE";
        live.ended_ms = None;
        api.add(live);
    }
    api.with(|s| s.rate_limit_pages = vec![2]);
    // One session came by webhook before the backfill: it is not pulled.
    let served = site.start("").await;
    let storage = FakeServer::start().await;
    storage.route("/hooked.csv", vec![Reply::Body(simple_dump("past-100", 2))]);
    served
        .post(
            &chat_synced("past-100", &storage.url("/hooked.csv")),
            "d-100",
        )
        .await
        .unwrap();
    site.wait_until_settled().await;
    drop(served);

    let started = Instant::now();
    let output = backfill(&site, &api, &["--since", &since()]);
    let took = started.elapsed();
    assert!(output.status.success(), "{}", said(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(
            "backfill: 205 listed, 202 loaded, 2 with no chat, 1 skipped, 0 live, 0 failed"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("past-007\tno-chat"), "{stdout}");
    assert!(
        stdout.contains("past-100\tskipped\talready archived"),
        "{stdout}"
    );
    // The 429 was waited out as told, and page 2 asked again.
    let pages: Vec<u32> = api.with(|s| s.listings.iter().map(|l| l.0).collect());
    assert_eq!(pages, [1, 2, 2, 3]);
    assert!(took >= Duration::from_secs(1), "{took:?}");
    let query = api.with(|s| s.queries[0].clone());
    assert_eq!(query.get("status").map(String::as_str), Some("ENDED"));
    assert_eq!(query.get("per_page").map(String::as_str), Some("100"));
    assert_within_the_api_rate(&api.with(|s| s.api_requests.clone()));

    let archive = site.archive();
    for id in &ids {
        let expected = match id.as_str() {
            "past-007" | "past-008" => 0,
            _ => 2,
        };
        assert_eq!(archive.messages_of(id).len(), expected, "{id}");
        let wanted_chats = usize::from(id != "past-100");
        assert_eq!(api.chat_requests(id), wanted_chats, "{id}");
    }
    for n in 0..3 {
        let live = format!("live-{n}");
        assert_eq!(api.chat_requests(&live), 0);
        assert!(archive.session(&live).is_none());
    }
    // Metadata from the listing where no webhook brought it; the webhook's own where it did.
    let record = archive.session("past-042").unwrap();
    assert_eq!(record.title.as_deref(), Some("Stand-up past-042"));
    assert_eq!(record.meeting_id.as_deref(), Some("meeting-of-past-042"));
    assert_eq!(record.status, "loaded");
    let fake = api.with(|s| {
        s.sessions
            .iter()
            .find(|f| f.id == "past-042")
            .cloned()
            .unwrap()
    });
    assert_eq!(
        record.started_at.as_deref(),
        Some(iso(fake.started_ms).as_str())
    );
    assert_eq!(record.ended_at, fake.ended_ms.map(iso));
    assert_eq!(
        archive.session("past-100").unwrap().title.as_deref(),
        Some("Weekly sync")
    );
    // No chat is a state of its own, visible through the API and in the jobs listing.
    let served = site.start("").await;
    for id in ["past-007", "past-008"] {
        let body: serde_json::Value = served
            .get(&format!("/v1/sessions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "no_chat", "{id}: {body}");
    }
    drop(served);
    let jobs = archive.jobs();
    let pulls: Vec<_> = jobs
        .iter()
        .filter(|j| j.kind == chatsink::domain::JobKind::Pull)
        .collect();
    assert_eq!(pulls.len(), 204);
    assert!(pulls
        .iter()
        .all(|j| j.state == chatsink::domain::JobState::Done));
    let no_chat: Vec<&str> = pulls
        .iter()
        .filter(|j| j.outcome == Some(chatsink::domain::JobOutcome::NoChat))
        .map(|j| j.session_id.as_str())
        .collect();
    assert_eq!(no_chat.len(), 2, "{no_chat:?}");
    let listing = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["jobs", "--limit", "300"])
        .env("CHATSINK_DATABASE", site.location())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = listing.lines().find(|l| l.contains("past-007")).unwrap();
    assert!(line.contains("pull") && line.contains("no_chat"), "{line}");

    // Run again: everything is archived, so nothing is downloaded or asked for.
    let downloads: usize = api.with(|s| s.dump_requests.values().sum());
    let output = backfill(&site, &api, &["--since", &since()]);
    assert!(output.status.success(), "{}", said(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("backfill: 205 listed, 0 loaded, 0 with no chat, 205 skipped"),
        "{}",
        said(&output)
    );
    assert_eq!(
        api.with(|s| s.dump_requests.values().sum::<usize>()),
        downloads
    );
    assert_eq!(
        api.chat_requests("past-007"),
        1,
        "no chat is not asked for again"
    );
}

/// RealtimeKit allows 250 requests in 10 s. chatsink's limiter lets a burst of 20 through and
/// then one request per 45 ms, so no second holds more than 20 + 23 of them (and a few more for
/// requests that queued in the kernel and arrived together).
fn assert_within_the_api_rate(arrivals: &[Instant]) {
    let mut arrivals = arrivals.to_vec();
    arrivals.sort();
    assert!(arrivals.len() > 200, "{} requests", arrivals.len());
    for (window, most) in [(Duration::from_secs(1), 48), (Duration::from_secs(10), 250)] {
        let busiest = (0..arrivals.len())
            .map(|i| {
                arrivals[i..]
                    .iter()
                    .take_while(|t| **t - arrivals[i] < window)
                    .count()
            })
            .max()
            .unwrap();
        assert!(
            busiest <= most,
            "{busiest} API requests within {window:?} (at most {most})"
        );
    }
}

/// `--meeting` and `--until` reach the listing as its filters; a session that cannot be loaded
/// makes the run exit non-zero naming it, and the others still load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_filters_by_meeting_and_window_and_names_what_failed() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    migrate(&site);
    let api = FakeRtk::start().await;
    for id in ["m-a1", "m-a2", "m-a3"] {
        let mut session = ended(id, Duration::from_secs(7200), 3);
        session.meeting = "meeting-a".into();
        if id == "m-a2" {
            session.chat = Chat::Fails(500);
        }
        api.add(session);
    }
    api.add(ended("m-b1", Duration::from_secs(7200), 3));
    let until = iso(now_ms());
    let output = backfill(
        &site,
        &api,
        &[
            "--since",
            &since(),
            "--until",
            &until,
            "--meeting",
            "meeting-a",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 session(s) could not be loaded"),
        "{stderr}"
    );
    assert!(stderr.contains("m-a2: "), "{stderr}");
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    let query = api.with(|s| s.queries[0].clone());
    assert_eq!(
        query.get("associated_id").map(String::as_str),
        Some("meeting-a")
    );
    assert_eq!(query.get("end_time"), Some(&until));
    let archive = site.archive();
    assert_eq!(archive.messages_of("m-a1").len(), 3);
    assert_eq!(archive.messages_of("m-a3").len(), 3);
    assert!(
        archive.session("m-b1").is_none(),
        "another meeting's session"
    );
    let failed = archive
        .jobs()
        .into_iter()
        .find(|j| j.session_id == "m-a2")
        .unwrap();
    assert_eq!(failed.state, chatsink::domain::JobState::Failed);
    assert_eq!(archive.session("m-a2").unwrap().status, "failed");
}

/// Without API credentials (or with a bad window) backfill says what is wrong and exits non-zero.
#[test]
fn backfill_without_credentials_or_with_a_bad_window_says_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on(root.path());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .arg("backfill")
            .args(args)
            .env("CHATSINK_DATABASE", site.location())
            .env("CHATSINK_DATA_DIR", site.data_dir())
            .env_remove("CHATSINK_RTK_ACCOUNT_ID")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    let output = run(&["--since", "2026-01-01T00:00:00Z"], &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "CHATSINK_RTK_ACCOUNT_ID",
        "CHATSINK_RTK_APP_ID",
        "CHATSINK_RTK_API_TOKEN",
    ] {
        assert!(stderr.contains(setting), "{stderr}");
    }
    let creds = [
        ("CHATSINK_RTK_ACCOUNT_ID", "acc"),
        ("CHATSINK_RTK_APP_ID", "app"),
        ("CHATSINK_RTK_API_TOKEN", "t"),
    ];
    let output = run(&["--since", "last tuesday"], &creds);
    assert_eq!(output.status.code(), Some(2), "clap refuses the value");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--since"));
    let output = run(
        &[
            "--since",
            "2026-02-01T00:00:00Z",
            "--until",
            "2026-01-01T00:00:00Z",
        ],
        &creds,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--until is before --since"));
    let output = run(&[], &creds);
    assert_eq!(output.status.code(), Some(2), "--since is required");
}

/// A backfill killed half-way and run again downloads none of what it had loaded; two run at
/// once share the work, and each session is downloaded and loaded once; all while `serve` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_and_two_at_once_share_the_work() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    migrate(&site);
    let api = FakeRtk::start().await;
    let ids: Vec<String> = (0..12).map(|n| format!("slow-{n:02}")).collect();
    for (n, id) in ids.iter().enumerate() {
        api.add(ended(id, Duration::from_secs(3600 + n as u64), 4));
    }
    api.with(|s| s.dump_delay = Duration::from_millis(200));
    // `serve` runs throughout, without API credentials: it must leave the pull jobs alone (it
    // could only bury them) while the backfills run them.
    let served = site.start("").await;
    let mut child = backfill_command(&site, &api, &["--since", &since(), "--concurrency", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let loaded_before_kill = loop {
        let archive = site.archive();
        let loaded: Vec<String> = ids
            .iter()
            .filter(|id| archive.session(id).is_some_and(|s| s.status == "loaded"))
            .cloned()
            .collect();
        drop(archive);
        if loaded.len() >= 4 {
            break loaded;
        }
        assert!(Instant::now() < deadline, "backfill made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(loaded_before_kill.len() < ids.len(), "killed half-way");

    // Two runs at once finish what is left.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| backfill(&site, &api, &["--since", &since()]));
        let b = scope.spawn(|| backfill(&site, &api, &["--since", &since()]));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", said(&a));
    assert!(b.status.success(), "{}", said(&b));
    let archive = site.archive();
    for id in &ids {
        assert_eq!(archive.messages_of(id).len(), 4, "{id}");
        let expected = if loaded_before_kill.contains(id) {
            1
        } else {
            // The one in flight when the run was killed may have been fetched twice.
            api.dump_requests(id).min(2)
        };
        assert_eq!(api.dump_requests(id), expected, "{id}");
    }
    let twice: Vec<&String> = ids.iter().filter(|id| api.dump_requests(id) > 1).collect();
    assert!(
        twice.len() <= 1,
        "only the interrupted one again: {twice:?}"
    );
    let done = archive
        .jobs()
        .into_iter()
        .filter(|j| j.state == chatsink::domain::JobState::Done)
        .count();
    assert_eq!(done, ids.len(), "one pull job per session");
    assert_eq!(served.get("/readyz").await.status(), 200);
}

/// `serve` with reconcile every second and a grace of 3 s, on `site`.
async fn serve_reconciling(site: &Site, api: &FakeRtk, grace_secs: &str) -> Served {
    let env = api.env();
    site.start_with("", |command| {
        command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CHATSINK_RECONCILE_INTERVAL_SECS", "1")
            .env("CHATSINK_RECONCILE_GRACE_SECS", grace_secs)
            .env("RUST_LOG", "info");
    })
    .await
}

async fn metric(served: &Served, name: &str) -> f64 {
    let text = served.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reconcile pulls a session whose webhook never came, but only after the grace period; leaves
/// one a webhook brought alone; pulls a live session once it has ended; a webhook arriving after
/// reconcile loaded its session is recorded and loads nothing twice. An API that is down shows
/// in a metric and the log, never in `/readyz`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_pulls_sessions_whose_webhook_never_came_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let api = FakeRtk::start().await;
    api.add(ended("rc-lost", Duration::from_secs(60), 3));
    // Ended a moment ago: its webhook comes within the grace period.
    api.add(ended("rc-hooked", Duration::from_secs(1), 3));
    let mut live = ended("rc-live", Duration::ZERO, 2);
    live.status = "LIVE";
    live.ended_ms = None;
    api.add(live);
    let storage = FakeServer::start().await;
    storage.route(
        "/hooked.csv",
        vec![Reply::Body(simple_dump("rc-hooked", 3))],
    );
    storage.route("/lost.csv", vec![Reply::Body(simple_dump("rc-lost", 3))]);

    let served = serve_reconciling(&site, &api, "3").await;
    served
        .post(
            &chat_synced("rc-hooked", &storage.url("/hooked.csv")),
            "d-hooked",
        )
        .await
        .unwrap();
    // Within one interval (plus a load), the lost session is in the archive.
    let started = Instant::now();
    wait_until("rc-lost pulled", Duration::from_secs(15), || {
        site.archive()
            .session("rc-lost")
            .is_some_and(|s| s.status == "loaded")
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    site.assert_loaded_once("rc-lost", 3);
    // The webhook's own job loads rc-hooked (one worker: it may come after the pull).
    wait_until(
        "rc-hooked loaded by its webhook",
        Duration::from_secs(15),
        || site.archive().messages_of("rc-hooked").len() == 3,
    )
    .await;
    assert_eq!(api.chat_requests("rc-live"), 0, "live sessions wait");

    // The live session ends now: not pulled within the grace period, pulled after it.
    api.with(|s| {
        let live = s.sessions.iter_mut().find(|f| f.id == "rc-live").unwrap();
        live.status = "ENDED";
        live.ended_ms = Some(now_ms());
    });
    let ended_at = Instant::now();
    wait_until("rc-live pulled", Duration::from_secs(20), || {
        site.archive()
            .session("rc-live")
            .is_some_and(|s| s.status == "loaded")
    })
    .await;
    assert!(
        ended_at.elapsed() >= Duration::from_millis(2500),
        "pulled {:?} after it ended, within the grace period",
        ended_at.elapsed()
    );
    assert_eq!(api.chat_requests("rc-live"), 1);
    assert_eq!(api.chat_requests("rc-hooked"), 0, "its webhook brought it");
    // A pass counts what it found when it ends, which can be after its job has loaded.
    let deadline = Instant::now() + Duration::from_secs(10);
    for name in [
        "chatsink_reconcile_sessions_missing_total",
        "chatsink_reconcile_sessions_enqueued_total",
    ] {
        while metric(&served, name).await < 2.0 {
            assert!(
                Instant::now() < deadline,
                "{name} below 2: {}; log:\n{}",
                served
                    .get("/metrics")
                    .await
                    .text()
                    .await
                    .unwrap()
                    .lines()
                    .filter(|l| l.contains("reconcile"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                site.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let last = metric(&served, "chatsink_reconcile_last_success_timestamp_seconds").await;
    assert!((last - now_ms() as f64 / 1000.0).abs() < 30.0, "{last}");

    // The late webhook for rc-lost: accepted and recorded, loads nothing twice.
    let before: Vec<(i64, String)> = site
        .archive()
        .messages_of("rc-lost")
        .into_iter()
        .map(|m| (m.seq, m.id))
        .collect();
    let late = chat_synced("rc-lost", &storage.url("/lost.csv"));
    let answer = served.post(&late, "d-late").await.unwrap();
    assert_eq!(answer.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    let job = loop {
        let job =
            site.archive().jobs().into_iter().find(|j| {
                j.session_id == "rc-lost" && j.kind == chatsink::domain::JobKind::Delivery
            });
        if let Some(job) = job.filter(|j| j.state == chatsink::domain::JobState::Done) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the late delivery's job never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job.outcome, Some(chatsink::domain::JobOutcome::Unchanged));
    assert_eq!(job.rows_loaded, Some(0));
    let after: Vec<(i64, String)> = site
        .archive()
        .messages_of("rc-lost")
        .into_iter()
        .map(|m| (m.seq, m.id))
        .collect();
    assert_eq!(after, before);
    assert_eq!(site.archive().session("rc-lost").unwrap().status, "loaded");
    assert!(site
        .archive()
        .deliveries()
        .iter()
        .any(|d| d.session_id.as_deref() == Some("rc-lost")));

    // The API goes down: passes fail visibly, readiness does not.
    api.with(|s| s.listing_fails = Some(503));
    let failed = Instant::now();
    while metric(&served, "chatsink_reconcile_last_pass_failed").await < 1.0 {
        assert!(
            failed.elapsed() < Duration::from_secs(15),
            "no failed pass shows"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.get("/readyz").await.status(), 200);
    assert!(
        site.log().contains("reconcile pass failed"),
        "{}",
        site.log()
    );
    // And back: the next pass succeeds.
    api.with(|s| s.listing_fails = None);
    while metric(&served, "chatsink_reconcile_last_pass_failed").await > 0.0 {
        assert!(
            failed.elapsed() < Duration::from_secs(30),
            "passes never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two instances on one database, each reconciling every second: only one runs a pass at a
/// time (the listing's requests never overlap, though each takes 300 ms), and the missing
/// session is loaded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_one_reconcile_pass_at_a_time() {
    let root = tempfile::tempdir().unwrap();
    let first = Site::on_this_backend(root.path());
    let second = match on_postgres() {
        true => Site::on_postgres(&first.location(), root.path()),
        false => Site::on(root.path()),
    };
    assert_eq!(first.location(), second.location());
    let api = FakeRtk::start().await;
    api.add(ended("two-lost", Duration::from_secs(120), 5));
    api.with(|s| s.listing_delay = Duration::from_millis(300));
    let a = serve_reconciling(&first, &api, "0").await;
    let b = serve_reconciling(&second, &api, "0").await;
    wait_until("two passes from each side", Duration::from_secs(30), || {
        api.with(|s| s.listings.len() >= 6)
    })
    .await;
    // Each instance tried: its passes ran, or found the other's lease held ("busy").
    let tried = |served: &Served| {
        let served = served.address().to_owned();
        async move {
            let text = reqwest::get(format!("{served}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .filter(|l| l.starts_with("chatsink_reconcile_passes_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let (tried_a, tried_b) = (tried(&a).await, tried(&b).await);
    assert!(
        tried_a >= 1.0 && tried_b >= 1.0,
        "passes tried: {tried_a} and {tried_b}"
    );
    drop((a, b));
    let listings = api.with(|s| s.listings.clone());
    for pair in listings.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "a listing request began while another pass's was running: {listings:?}"
        );
    }
    first.assert_loaded_once("two-lost", 5);
    assert_eq!(api.chat_requests("two-lost"), 1);
    assert!(first.log().contains("reconcile") || second.log().contains("reconcile"));
}

/// A listing written by someone hostile (or broken): entries without an id or with one chatsink
/// refuses are reported and passed over; hostile text is kept exactly as text; an answer too
/// large to be a listing is refused without being read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_listing_is_used_as_far_as_it_is_sound() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    migrate(&site);
    let api = FakeRtk::start().await;
    let hostile_title = "<script>alert(1)</script>\u{202e}gpj.exe\u{0}";
    let mut session = ended("odd-1", Duration::from_secs(7200), 2);
    session.title = hostile_title.into();
    api.add(session);
    api.with(|s| {
        s.raw_entries = vec![
            serde_json::json!({"status": "ENDED", "meeting_display_name": "no id"}),
            serde_json::json!({"id": "../../etc/passwd", "status": "ENDED"}),
            serde_json::json!({"id": 42, "status": "ENDED"}),
        ]
    });
    let output = backfill(&site, &api, &["--since", &since()]);
    assert!(output.status.success(), "{}", said(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.matches("a listing entry was not used").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("../../etc/passwd"), "{stderr}");
    let archive = site.archive();
    let record = archive.session("odd-1").unwrap();
    assert_eq!(record.title.as_deref(), Some(hostile_title));
    assert_eq!(archive.messages_of("odd-1").len(), 2);
    assert_eq!(api.chat_requests("../../etc/passwd"), 0);

    api.with(|s| {
        s.raw_entries.clear();
        s.padding = 5 * 1024 * 1024;
    });
    let output = backfill(&site, &api, &["--since", &since()]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(said(&output).contains("over 4 MiB"), "{}", said(&output));

    // A listing that answers every page with the first: one walk through it, then an error,
    // not a loop for ever.
    api.with(|s| {
        s.padding = 0;
        s.ignores_page_no = true;
        s.listings.clear();
    });
    for n in 0..100 {
        api.add(ended(&format!("loop-{n:03}"), Duration::from_secs(7000), 1));
    }
    let output = backfill(&site, &api, &["--since", &since()]);
    assert_eq!(output.status.code(), Some(1), "{}", said(&output));
    assert!(
        said(&output).contains("answered page 2 with page 1's sessions again"),
        "{}",
        said(&output)
    );
    assert_eq!(api.with(|s| s.listings.len()), 2);
}

/// Reconcile is off, saying why in one info line, when its interval is 0 or no API credentials
/// are configured; `serve` runs on either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_is_off_with_an_info_line_without_credentials_or_interval() {
    let api = FakeRtk::start().await;
    let root = tempfile::tempdir().unwrap();
    let without = Site::on(&root.path().join("without"));
    let served = without
        .start_with("", |command| {
            command.env("RUST_LOG", "info");
        })
        .await;
    assert_eq!(served.get("/readyz").await.status(), 200);
    drop(served);
    assert!(
        without
            .log()
            .contains("reconcile is off: no RealtimeKit API credentials"),
        "{}",
        without.log()
    );
    let zero = Site::on(&root.path().join("zero"));
    let env = api.env();
    let served = zero
        .start_with("", |command| {
            command
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env("CHATSINK_RECONCILE_INTERVAL_SECS", "0")
                .env("RUST_LOG", "info");
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(served);
    assert!(
        zero.log()
            .contains("reconcile is off (CHATSINK_RECONCILE_INTERVAL_SECS=0)"),
        "{}",
        zero.log()
    );
    assert!(api.with(|s| s.listings.is_empty()), "no pass ran");
}

/// Whatever way the listing pages (pages from 0 or 1, a cap on `per_page` below what chatsink
/// asks for, `paging` beside `data` or none), backfill and reconcile visit every session the
/// listing holds, each once, and load each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_is_visited_once_however_the_listing_pages() {
    // (page base, per-page cap, with paging)
    let shapes = [
        (1, Some(7), true),
        (0, Some(7), true),
        (0, None, true),
        (0, Some(7), false),
        (1, Some(7), false),
    ];
    for (base, cap, paging) in shapes {
        let shape = format!("base {base}, cap {cap:?}, paging {paging}");
        let root = tempfile::tempdir().unwrap();
        let site = Site::on_this_backend(root.path());
        migrate(&site);
        let api = FakeRtk::start().await;
        let ids: Vec<String> = (0..30).map(|n| format!("paged-{n:02}")).collect();
        for (n, id) in ids.iter().enumerate() {
            api.add(ended(id, Duration::from_secs(7200 + n as u64 * 10), 1));
        }
        api.with(|s| {
            s.page_base = base;
            s.per_page_cap = cap;
            s.without_paging = !paging;
        });
        let output = backfill(&site, &api, &["--since", &since()]);
        assert!(output.status.success(), "{shape}: {}", said(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("backfill: 30 listed, 30 loaded"),
            "{shape}: {}",
            said(&output)
        );
        for id in &ids {
            assert_eq!(api.dump_requests(id), 1, "{shape}: {id}");
        }
        assert_eq!(site.archive().sessions().len(), 30, "{shape}");

        // Reconcile over the same listing, with 10 more sessions whose webhook never came.
        let late: Vec<String> = (0..10).map(|n| format!("late-{n:02}")).collect();
        for (n, id) in late.iter().enumerate() {
            api.add(ended(id, Duration::from_secs(600 + n as u64 * 10), 1));
        }
        let served = serve_reconciling(&site, &api, "60").await;
        wait_until(
            &format!("{shape}: reconcile loads the late sessions"),
            Duration::from_secs(60),
            || site.archive().sessions().len() == 40,
        )
        .await;
        site.wait_until_settled().await;
        for id in ids.iter().chain(&late) {
            assert_eq!(api.dump_requests(id), 1, "{shape}: {id}");
        }
        served.stop();
    }
}

/// A listing whose pages hold fewer sessions than its `total_count` says: backfill loads what
/// it found and exits non-zero naming the shortfall; reconcile says so in its log and metric,
/// and keeps its watermark so the next pass lists the window again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_ends_short_of_its_count_is_reported_never_a_silent_success() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    migrate(&site);
    let api = FakeRtk::start().await;
    for n in 0..12 {
        api.add(ended(
            &format!("short-{n:02}"),
            Duration::from_secs(7200 + n * 10),
            1,
        ));
    }
    api.with(|s| {
        s.per_page_cap = Some(5);
        s.overcount = 3;
    });
    let output = backfill(&site, &api, &["--since", &since()]);
    assert!(!output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("counted 15 sessions but its pages held 12 (3 missing"),
        "{}",
        said(&output)
    );
    assert_eq!(site.archive().sessions().len(), 12);

    let served = serve_reconciling(&site, &api, "60").await;
    wait_until("the shortfall metric", Duration::from_secs(30), || {
        site.log()
            .contains("reconcile: the sessions listing counted 15")
    })
    .await;
    assert!(metric(&served, "chatsink_reconcile_listing_shortfall_total").await >= 3.0);
    served.stop();
}

/// Each loaded session's participants are fetched (paged however the server pages) and kept:
/// a message whose sender is a participant's peer id or user id carries the app's own id,
/// `custom_participant=` finds a person's messages across sessions, `/v1/users` names it; a
/// sender nobody matches keeps its id alone. A failing participants endpoint leaves the session
/// loaded, and reconcile fetches them later. Erasing a user removes their participant record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_name_each_sender_in_the_apps_terms() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    migrate(&site);
    let api = FakeRtk::start().await;
    for (n, id) in ["people-a", "people-b"].iter().enumerate() {
        api.add(ended(id, Duration::from_secs(3600 + n as u64), 6));
    }
    api.with(|s| {
        s.page_base = 0;
        s.per_page_cap = Some(2);
        s.participants.insert(
            "people-a".into(),
            vec![
                participant("user-0", "rtk-u0", Some("app-alice")),
                participant("peer-1", "user-1", Some("app-bob")),
                participant("peer-x", "rtk-x", Some("app-nobody")),
            ],
        );
        s.participants.insert(
            "people-b".into(),
            vec![participant("user-0", "rtk-u0", Some("app-alice"))],
        );
    });
    let output = backfill(&site, &api, &["--since", &since()]);
    assert!(output.status.success(), "{}", said(&output));

    let served = site.start("").await;
    let get = |path: String| {
        let served = &served;
        async move {
            let answer = served
                .client
                .get(format!("{}{path}", served.address()))
                .bearer_auth(READ_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{path}");
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };
    let page = get("/v1/messages?session=people-a&limit=100".into()).await;
    for m in page["messages"].as_array().unwrap() {
        let expected = match m["userId"].as_str().unwrap() {
            "user-0" => Some("app-alice"),
            "user-1" => Some("app-bob"),
            _ => None,
        };
        assert_eq!(m["customParticipantId"].as_str(), expected, "{m}");
    }
    let alice = get("/v1/messages?custom_participant=app-alice&limit=100".into()).await;
    let alice: Vec<&serde_json::Value> = alice["messages"].as_array().unwrap().iter().collect();
    assert_eq!(alice.len(), 4, "user-0's two messages in each session");
    assert!(alice.iter().all(|m| m["userId"] == "user-0"));
    let nobody = get("/v1/messages?custom_participant=app-nobody".into()).await;
    assert_eq!(nobody["messages"].as_array().unwrap().len(), 0);
    let users = get("/v1/users".into()).await;
    let named: BTreeMap<String, Option<String>> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap().to_owned(),
                u["customParticipantId"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(named["user-0"].as_deref(), Some("app-alice"));
    assert_eq!(named["user-1"].as_deref(), Some("app-bob"));
    assert_eq!(named["user-2"], None);
    served.stop();

    // The participants endpoint fails for a new session: it loads all the same, and reconcile
    // fetches its participants once the endpoint answers.
    api.add(ended("people-c", Duration::from_secs(300), 3));
    api.with(|s| {
        s.participants_fail = Some(500);
        s.participants.insert(
            "people-c".into(),
            vec![participant("user-2", "rtk-u2", Some("app-carol"))],
        );
    });
    let output = backfill(&site, &api, &["--since", &since()]);
    assert!(output.status.success(), "{}", said(&output));
    site.assert_loaded_once("people-c", 3);
    api.with(|s| s.participants_fail = None);
    let served = serve_reconciling(&site, &api, "60").await;
    wait_until(
        "reconcile fetches the participants",
        Duration::from_secs(30),
        || {
            crate::governance::query_sql(
            &site,
            "SELECT count(*) FROM session_participants WHERE custom_participant_id = 'app-carol'",
        ) == "1"
        },
    )
    .await;
    served.stop();

    // Erasing a user removes their participant records.
    let erase = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["erase", "--user", "user-1"])
        .env("CHATSINK_DATABASE", site.location())
        .env("CHATSINK_DATA_DIR", site.data_dir())
        .output()
        .unwrap();
    assert!(erase.status.success(), "{}", said(&erase));
    assert_eq!(
        crate::governance::query_sql(
            &site,
            "SELECT count(*) FROM session_participants WHERE participant_id = 'user-1' OR rtk_user_id = 'user-1'"
        ),
        "0"
    );
    assert_eq!(
        crate::governance::query_sql(&site, "SELECT count(*) FROM session_participants"),
        "4"
    );
}
