//! Query: every filter and combination checked against an independent computation over the
//! same generated rows; pagination, exports, errors, auth and the OpenAPI document.

use crate::helpers::*;
use chatsink::domain::TextQuery;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::BTreeSet;

/// One generated message, as the test knows it independently of chatsink.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    session: String,
    meeting: String,
    user: String,
    name: String,
    kind: &'static str,
    pinned: bool,
    edited: bool,
    payload: String,
    text_words: String,
    ms: i64,
}

const WORDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];
const BASE_MS: i64 = 1_780_480_800_000; // 2026-06-03T10:00:00Z

fn generate(seed: u64, sessions: &[&str], per_session: usize) -> Vec<Row> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows = Vec::new();
    for (s, session) in sessions.iter().enumerate() {
        for i in 0..per_session {
            let user = format!("user-{}", rng.gen_range(0..7));
            let roll = rng.gen_range(0..100);
            let kind = if roll < 80 {
                "text"
            } else if roll < 92 {
                "image"
            } else {
                "file"
            };
            let word = WORDS[rng.gen_range(0..WORDS.len())];
            let payload = match kind {
                "text" => format!("{word} message {i}, from {user}"),
                "image" => format!("https://cdn.example/{session}/{i}.png"),
                _ => format!(
                    r#"{{"link":"https://cdn.example/{i}.pdf","name":"{word}-report-{i}.pdf","size":{}}}"#,
                    100 + i
                ),
            };
            let text_words = match kind {
                "text" => payload.clone(),
                "file" => format!("{word}-report-{i}.pdf"),
                _ => String::new(),
            };
            // Spread over three days; some messages share a millisecond to exercise the tiebreak.
            let ms = BASE_MS
                + (s as i64) * 3_600_000
                + (i as i64 / 2) * 137_000
                + rng.gen_range(0..2) * 86_400_000;
            rows.push(Row {
                id: format!("{session}-{i}"),
                session: session.to_string(),
                meeting: format!("meeting-{}", s % 2),
                name: format!("Name of {user}"),
                user,
                kind,
                pinned: rng.gen_range(0..100) < 10,
                edited: rng.gen_range(0..100) < 15,
                payload,
                text_words,
                ms,
            });
        }
    }
    rows
}

fn to_csv(rows: &[Row]) -> Vec<u8> {
    let mut out = format!("{DUMP_HEADER}\r\n");
    for r in rows {
        let ptype = match r.kind {
            "text" => "TEXT_MESSAGE",
            "image" => "IMAGE_MESSAGE",
            _ => "FILE_MESSAGE",
        };
        let time = chatsink::domain::Timestamp::from_millis(r.ms).to_rfc3339();
        out.push_str(&csv_row(&[
            &r.id,
            &r.user,
            &r.session,
            &r.meeting,
            &r.name,
            &r.pinned.to_string(),
            &r.edited.to_string(),
            ptype,
            &r.payload,
            &time,
        ]));
    }
    out.into_bytes()
}

async fn load(app: &TestApp, rows: &[Row]) {
    let path = app
        .dir
        .path()
        .join(format!("load-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&path, to_csv(rows)).unwrap();
    chatsink::ingest::ingest_file(app.archive.store(), &path, None, |_, _| {})
        .await
        .unwrap();
}

async fn json(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Walks every page and returns the message ids in order.
async fn all_ids(app: &TestApp, path: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let sep = if path.contains('?') { '&' } else { '?' };
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}cursor={c}"),
            None => path.to_owned(),
        };
        let (status, body) = json(app, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let page = body["messages"].as_array().unwrap();
        ids.extend(page.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match body["next_cursor"].as_str() {
            Some(c) => {
                assert!(
                    !page.is_empty(),
                    "a next_cursor is only given after a non-empty page"
                );
                cursor = Some(c.to_owned());
            }
            None => return ids,
        }
    }
}

fn words_of(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn ids(rows: &[&Row]) -> BTreeSet<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

fn iso(ms: i64) -> String {
    chatsink::domain::Timestamp::from_millis(ms).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_and_combination_matches_an_independent_computation() {
    let app = spawn_app().await;
    let rows = generate(7, &["s-1", "s-2", "s-3"], 300);
    load(&app, &rows).await;
    let since = BASE_MS + 2 * 3_600_000;
    let until = BASE_MS + 86_400_000 + 2 * 3_600_000;
    type Pred = Box<dyn Fn(&Row) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        ("".into(), Box::new(|_| true)),
        ("user=user-3".into(), Box::new(|r| r.user == "user-3")),
        (
            "user=user-1&user=user-5".into(),
            Box::new(|r| r.user == "user-1" || r.user == "user-5"),
        ),
        ("type=image".into(), Box::new(|r| r.kind == "image")),
        (
            "type=image&type=file".into(),
            Box::new(|r| r.kind != "text"),
        ),
        ("pinned=true".into(), Box::new(|r| r.pinned)),
        ("pinned=false".into(), Box::new(|r| !r.pinned)),
        ("edited=true".into(), Box::new(|r| r.edited)),
        ("session=s-2".into(), Box::new(|r| r.session == "s-2")),
        (
            "meeting=meeting-0".into(),
            Box::new(|r| r.meeting == "meeting-0"),
        ),
        (
            format!("since={}", iso(since)),
            Box::new(move |r| r.ms >= since),
        ),
        (
            format!("until={}", iso(until)),
            Box::new(move |r| r.ms < until),
        ),
        (
            format!("since={}&until={}", iso(since), iso(until)),
            Box::new(move |r| r.ms >= since && r.ms < until),
        ),
        (
            "q=bravo".into(),
            Box::new(|r| words_of(&r.text_words).contains("bravo")),
        ),
        (
            "q=delta%20OR%20echo".into(),
            Box::new(|r| {
                let w = words_of(&r.text_words);
                w.contains("delta") || w.contains("echo")
            }),
        ),
        (
            "q=report".into(),
            Box::new(|r| words_of(&r.text_words).contains("report")),
        ),
        (
            "type=text&pinned=true".into(),
            Box::new(|r| r.kind == "text" && r.pinned),
        ),
        (
            "user=user-2&type=text&session=s-1".into(),
            Box::new(|r| r.user == "user-2" && r.kind == "text" && r.session == "s-1"),
        ),
        (
            format!("user=user-4&since={}&q=alpha", iso(since)),
            Box::new(move |r| {
                r.user == "user-4" && r.ms >= since && words_of(&r.text_words).contains("alpha")
            }),
        ),
        (
            "type=file&edited=false&meeting=meeting-1".into(),
            Box::new(|r| r.kind == "file" && !r.edited && r.meeting == "meeting-1"),
        ),
    ];
    for (query, pred) in &cases {
        let want: Vec<&Row> = rows.iter().filter(|r| pred(r)).collect();
        let (status, body) = json(&app, &format!("/v1/messages?limit=1000&{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        let got = body["messages"].as_array().unwrap();
        let got_ids: BTreeSet<String> = got
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got_ids, ids(&want), "{query}");
        let times: Vec<&str> = got.iter().map(|m| m["time"].as_str().unwrap()).collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{query}: ascending by time"
        );
        // Paging 37 at a time gives exactly the unpaged list, in order, both directions.
        let unpaged: Vec<String> = got
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            all_ids(&app, &format!("/v1/messages?limit=37&{query}")).await,
            unpaged,
            "{query}: paged"
        );
        let mut reversed =
            all_ids(&app, &format!("/v1/messages?limit=41&order=desc&{query}")).await;
        reversed.reverse();
        assert_eq!(reversed, unpaged, "{query}: desc is asc reversed");
    }
    // One message checked field by field against the generator.
    let file = rows.iter().find(|r| r.kind == "file").unwrap();
    let (_, body) = json(
        &app,
        &format!("/v1/sessions/{}/messages?limit=1000", file.session),
    )
    .await;
    let m = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == file.id.as_str())
        .unwrap()
        .clone();
    let expected: Value = serde_json::from_str(&file.payload).unwrap();
    assert_eq!(m["type"], "file");
    assert_eq!(
        (m["userId"].as_str(), m["displayName"].as_str()),
        (Some(file.user.as_str()), Some(file.name.as_str()))
    );
    assert_eq!(
        (&m["name"], &m["size"], &m["link"]),
        (&expected["name"], &expected["size"], &expected["link"])
    );
    assert_eq!(
        (m["pinned"].as_bool(), m["isEdited"].as_bool()),
        (Some(file.pinned), Some(file.edited))
    );
    assert_eq!(m["time"].as_str(), Some(iso(file.ms).as_str()));
    assert!(m.get("message").is_none() && m.get("payload").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_a_session_while_others_load_never_skips_or_repeats() {
    let app = spawn_app().await;
    let rows = generate(11, &["s-page"], 500);
    load(&app, &rows).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut round = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/sessions/s-page/messages?limit=50&cursor={c}"),
            None => "/v1/sessions/s-page/messages?limit=50".into(),
        };
        let (_, body) = json(&app, &url).await;
        seen.extend(
            body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_owned()),
        );
        // Another session loads (same times) between pages.
        round += 1;
        load(
            &app,
            &generate(100 + round, &[&format!("s-other-{round}")], 40),
        )
        .await;
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no repeats");
    assert_eq!(
        unique.into_iter().cloned().collect::<BTreeSet<_>>(),
        ids(&rows.iter().collect::<Vec<_>>()),
        "no skips"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_ndjson_exports_equal_the_json_result() {
    let app = spawn_app().await;
    let mut rows = generate(3, &["s-exp"], 1500);
    rows[0].payload = "=HYPERLINK(\"http://evil\",\"click\")".into();
    rows[0].kind = "text";
    rows[1].name = "@SUM(A1)".into();
    rows[2].payload = "-2+3".into();
    rows[2].kind = "text";
    for (i, text) in [
        (3, "+1 for this"),
        (4, "\tindented"),
        (5, " =not a formula (a space first)"),
    ] {
        rows[i].payload = text.into();
        rows[i].kind = "text";
    }
    load(&app, &rows).await;
    let query = "type=text&type=file";
    let json_ids = all_ids(&app, &format!("/v1/messages?limit=1000&{query}")).await;
    let mut json_messages = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, body) = json(&app, &format!("/v1/messages?limit=1000&{query}{cursor}")).await;
        json_messages.extend(body["messages"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(
        json_messages.len() > 1000,
        "the export is bigger than one page"
    );

    let ndjson = app
        .get(&format!("/v1/messages?format=ndjson&{query}"))
        .await;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, json_messages);

    let response = app
        .client
        .get(format!("{}/v1/messages?{query}", app.address))
        .bearer_auth(READ_TOKEN)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        chatsink::api::CSV_COLUMNS.to_vec()
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), json_messages.len());
    assert_eq!(
        records.iter().map(|r| r[0].to_owned()).collect::<Vec<_>>(),
        json_ids
    );
    // Cells equal the JSON values; the hostile rows' cells are written out by hand below.
    let hostile = [
        "s-exp-0", "s-exp-1", "s-exp-2", "s-exp-3", "s-exp-4", "s-exp-5",
    ];
    for (record, message) in records.iter().zip(&json_messages) {
        if hostile.contains(&&record[0]) {
            continue;
        }
        let field = |name: &str| {
            message
                .get(name)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        for (i, column) in chatsink::api::CSV_COLUMNS.iter().enumerate() {
            assert_eq!(record[i], field(column), "{column} of {}", &record[0]);
        }
    }
    let cell =
        |id: &str, column: usize| records.iter().find(|r| &r[0] == id).unwrap()[column].to_owned();
    assert_eq!(cell("s-exp-0", 9), "'=HYPERLINK(\"http://evil\",\"click\")");
    assert_eq!(cell("s-exp-1", 4), "'@SUM(A1)");
    assert_eq!(cell("s-exp-2", 9), "'-2+3");
    assert_eq!(cell("s-exp-3", 9), "'+1 for this");
    assert_eq!(cell("s-exp-4", 9), "'\tindented");
    assert_eq!(cell("s-exp-5", 9), " =not a formula (a space first)");
    // With an explicit limit the export stops there.
    let limited = app
        .get("/v1/messages?format=ndjson&limit=7")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(limited.lines().count(), 7);
}

#[tokio::test]
async fn sessions_users_and_stats_match_the_rows() {
    let app = spawn_app().await;
    let rows = generate(5, &["s-a", "s-b", "s-c", "s-d", "s-e"], 60);
    load(&app, &rows).await;
    // Sessions, newest first, two per page.
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = json(&app, &format!("/v1/sessions?limit=2{cursor}")).await;
        assert_eq!(status, 200);
        listed.extend(body["sessions"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let ids_listed: Vec<&str> = listed
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    let mut expected: Vec<(&str, i64)> = ["s-a", "s-b", "s-c", "s-d", "s-e"]
        .iter()
        .map(|s| {
            (
                *s,
                rows.iter()
                    .filter(|r| r.session == *s)
                    .map(|r| r.ms)
                    .min()
                    .unwrap(),
            )
        })
        .collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(a.0)));
    assert_eq!(ids_listed, expected.iter().map(|e| e.0).collect::<Vec<_>>());
    for s in &listed {
        let id = s["sessionId"].as_str().unwrap();
        let mine: Vec<&Row> = rows.iter().filter(|r| r.session == id).collect();
        assert_eq!(s["messageCounts"]["total"], mine.len() as i64);
        assert_eq!(
            s["messageCounts"]["image"],
            mine.iter().filter(|r| r.kind == "image").count() as i64
        );
        assert_eq!(
            s["pinnedCount"],
            mine.iter().filter(|r| r.pinned).count() as i64
        );
        assert_eq!(s["status"], "loaded");
    }
    let (status, one) = json(&app, "/v1/sessions/s-c").await;
    assert_eq!((status, one["sessionId"].as_str()), (200, Some("s-c")));
    assert_eq!(json(&app, "/v1/sessions/nope").await.0, 404);
    assert_eq!(json(&app, "/v1/sessions/nope/messages").await.0, 404);

    // Users.
    let (_, body) = json(&app, "/v1/users?limit=3").await;
    let mut users: Vec<Value> = body["users"].as_array().unwrap().clone();
    let (_, rest) = json(
        &app,
        &format!(
            "/v1/users?limit=100&cursor={}",
            body["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    users.extend(rest["users"].as_array().unwrap().iter().cloned());
    let user_ids: BTreeSet<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(
        users
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect::<BTreeSet<_>>(),
        user_ids
    );
    for u in &users {
        let id = u["id"].as_str().unwrap();
        let mine: Vec<&Row> = rows.iter().filter(|r| r.user == id).collect();
        assert_eq!(u["messageCount"], mine.len() as i64);
        assert_eq!(
            u["sessionCount"],
            mine.iter()
                .map(|r| &r.session)
                .collect::<BTreeSet<_>>()
                .len() as i64
        );
        assert_eq!(u["displayName"], format!("Name of {id}"));
    }

    // Stats, with a filter.
    let (status, stats) = json(&app, "/v1/stats?session=s-b&session_unused=1").await;
    assert_eq!(status, 400, "unknown parameters are refused on /stats too");
    let _ = stats;
    let (_, stats) = json(&app, "/v1/stats?meeting=meeting-0").await;
    let mine: Vec<&Row> = rows.iter().filter(|r| r.meeting == "meeting-0").collect();
    assert_eq!(stats["total"], mine.len() as i64);
    for kind in ["text", "image", "file"] {
        assert_eq!(
            stats["byType"][kind].as_i64().unwrap_or(0),
            mine.iter().filter(|r| r.kind == kind).count() as i64,
            "{kind}"
        );
    }
    assert_eq!(
        stats["byPinned"]["true"],
        mine.iter().filter(|r| r.pinned).count() as i64
    );
    let days: i64 = stats["byDay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["count"].as_i64().unwrap())
        .sum();
    assert_eq!(days, mine.len() as i64);
    let top = &stats["topUsers"][0];
    let top_count = user_ids
        .iter()
        .map(|u| mine.iter().filter(|r| r.user == *u).count())
        .max()
        .unwrap();
    assert_eq!(top["count"], top_count as i64);
}

#[tokio::test]
async fn every_bad_parameter_is_a_400_naming_it() {
    let app = spawn_app().await;
    load(&app, &generate(1, &["s-x"], 20)).await;
    // A real cursor of another query (a page of 2 of user-1's rows, which has more).
    let (_, first) = json(&app, "/v1/messages?limit=2&user=user-1").await;
    let foreign = first["next_cursor"]
        .as_str()
        .expect("user-1 has more than two rows, so the page has a cursor")
        .to_owned();
    let (status, _) = json(
        &app,
        &format!("/v1/messages?limit=2&user=user-1&cursor={foreign}"),
    )
    .await;
    assert_eq!(status, 200, "the cursor is valid for its own query");
    let cases: Vec<(String, &str)> = vec![
        ("/v1/messages?color=red".into(), "color"),
        ("/v1/messages?type=".into(), "type"),
        ("/v1/messages?pinned=yes".into(), "pinned"),
        ("/v1/messages?edited=1".into(), "edited"),
        ("/v1/messages?limit=0".into(), "limit"),
        ("/v1/messages?limit=1001".into(), "limit"),
        ("/v1/messages?limit=ten".into(), "limit"),
        ("/v1/messages?since=yesterday".into(), "since"),
        (
            "/v1/messages?since=2026-06-04T00:00:00Z&until=2026-06-03T00:00:00Z".into(),
            "since",
        ),
        ("/v1/messages?order=sideways".into(), "order"),
        ("/v1/messages?format=xml".into(), "format"),
        ("/v1/messages?session=a&session=b".into(), "session"),
        ("/v1/messages?cursor=garbage".into(), "cursor"),
        ("/v1/messages?cursor=".into(), "cursor"),
        (
            format!("/v1/messages?limit=5&user=user-2&cursor={foreign}"),
            "cursor",
        ),
        ("/v1/messages?q=%22unterminated".into(), "q"),
        ("/v1/messages?q=AND".into(), "q"),
        ("/v1/messages?q=nosuchcolumn:word".into(), "q"),
        ("/v1/messages?q=%22unterminated&format=csv".into(), "q"),
        ("/v1/sessions/s-x/messages?session=s-x".into(), "session"),
        ("/v1/users/user-1/messages?user=user-2".into(), "user"),
        ("/v1/sessions?limit=-1".into(), "limit"),
        ("/v1/sessions?cursor=xyz".into(), "cursor"),
        ("/v1/users?cursor=xyz".into(), "cursor"),
        ("/v1/stats?pinned=maybe".into(), "pinned"),
        ("/v1/stats?q=%28".into(), "q"),
    ];
    for (path, parameter) in cases {
        let (status, body) = json(&app, &path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    // Hostile but valid strings never cause a 500.
    for q in [
        "%27%3B%20DROP%20TABLE%20messages%3B--",
        "%00",
        "%E2%80%AE",
        "*",
        "%22%22",
        "NEAR(a%20b)",
    ] {
        let (status, body) = json(&app, &format!("/v1/messages?q={q}")).await;
        assert!(status == 200 || status == 400, "q={q}: {status} {body}");
    }
}

#[tokio::test]
async fn every_v1_route_needs_a_valid_bearer_token() {
    let app = spawn_app().await;
    load(&app, &generate(1, &["s-auth"], 5)).await;
    for path in [
        "/v1/messages",
        "/v1/sessions",
        "/v1/sessions/s-auth",
        "/v1/sessions/s-auth/messages",
        "/v1/users",
        "/v1/users/user-1/messages",
        "/v1/stats",
        "/v1/nonexistent",
    ] {
        let url = format!("{}{path}", app.address);
        let none = app.client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        for header in [
            "Bearer wrong-token-0123456789abcdef",
            "Basic dXNlcjpwYXNz",
            "Bearer ",
            READ_TOKEN,
        ] {
            let response = app
                .client
                .get(&url)
                .header("Authorization", header)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{path} with {header}");
        }
        let ok = app.get(path).await;
        assert_ne!(ok.status(), 401, "{path}");
    }
    assert_eq!(
        app.client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "/healthz stays open"
    );
}

/// That the served document is complete: every route and the parameters its handler declares.
/// It compares the document with the table the handlers validate against, so it cannot show the
/// document disagreeing with what the server does; tests/suite/openapi.rs (schemathesis) does.
#[tokio::test]
async fn the_openapi_document_lists_every_route_and_parameter() {
    const ADMIN: &str = "openapi-admin-token-0123456789abcdef";
    let app = spawn_app_with(AppOptions::default().arg("--admin-tokens", ADMIN)).await;
    // The admin routes answer an admin token; the others the read token.
    let get = |path: String| {
        let token = if path.starts_with("/v1/audit") {
            ADMIN
        } else {
            READ_TOKEN
        };
        let request = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    load(&app, &generate(1, &["s-doc"], 3)).await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), chatsink::api::ROUTE_PARAMS.len());
    for (path, specs) in chatsink::api::ROUTE_PARAMS {
        if paths[*path]["get"].is_null() {
            // Erasure only: documented, and served for DELETE alone.
            let delete = &paths[*path]["delete"];
            assert!(delete["responses"]["200"].is_object(), "{path}");
            assert!(specs.is_empty(), "{path}");
            let concrete = path.replace("{id}", "nobody");
            assert_eq!(get(concrete.clone()).await, 405, "{concrete}");
            continue;
        }
        let operation = &paths[*path]["get"];
        let documented: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let accepted: BTreeSet<&str> = specs.iter().map(|s| s.name).collect();
        assert_eq!(documented, accepted, "{path}");
        assert!(operation["responses"]["200"].is_object(), "{path}");
        // The route is really served.
        let concrete = path.replace(
            "{id}",
            if path.starts_with("/v1/users") {
                "user-1"
            } else {
                "s-doc"
            },
        );
        assert_eq!(get(concrete.clone()).await, 200, "{concrete}");
        // And an undocumented parameter is refused there.
        assert_eq!(
            get(format!("{concrete}?undocumented=1")).await,
            400,
            "{concrete}"
        );
    }
    assert!(doc["components"]["schemas"]["MessageView"]["properties"]["isEdited"].is_object());
    // The fields and parameters of a dump's extra columns, private messages and participants.
    for field in ["private", "targetUserIds", "extra", "customParticipantId"] {
        assert!(
            doc["components"]["schemas"]["MessageView"]["properties"][field].is_object(),
            "MessageView.{field}"
        );
    }
    assert!(
        doc["components"]["schemas"]["UserView"]["properties"]["customParticipantId"].is_object()
    );
    let messages = doc["paths"]["/v1/messages"]["get"]["parameters"]
        .as_array()
        .unwrap();
    for name in ["private", "custom_participant"] {
        assert!(
            messages.iter().any(|p| p["name"] == name),
            "/v1/messages {name}"
        );
    }
}

#[test]
fn every_documented_filter_is_served_from_an_index() {
    use chatsink::domain::{After, MessageFilter, Order};
    use chatsink::store::sqlite as messages;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.db");
    drop(chatsink::store::Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let s = |v: &str| Some(v.to_owned());
    let filters = vec![
        MessageFilter::default(),
        MessageFilter {
            users: vec!["u".into()],
            ..Default::default()
        },
        MessageFilter {
            users: vec!["u".into(), "v".into()],
            ..Default::default()
        },
        // `type=text` is most rows: beside a user or session, theirs is the index to walk.
        MessageFilter {
            users: vec!["u".into()],
            kinds: vec!["text".into()],
            ..Default::default()
        },
        MessageFilter {
            session: s("s"),
            kinds: vec!["text".into(), "image".into()],
            pinned: Some(true),
            ..Default::default()
        },
        MessageFilter {
            meeting: s("m"),
            kinds: vec!["file".into()],
            edited: Some(true),
            ..Default::default()
        },
        MessageFilter {
            kinds: vec!["image".into()],
            ..Default::default()
        },
        MessageFilter {
            kinds: vec!["image".into()],
            pinned: Some(true),
            ..Default::default()
        },
        // Most messages are text: the time index is walked and the type checked.
        MessageFilter {
            kinds: vec!["text".into()],
            ..Default::default()
        },
        MessageFilter {
            kinds: vec!["image".into(), "file".into()],
            ..Default::default()
        },
        MessageFilter {
            kinds: vec!["text".into()],
            pinned: Some(true),
            ..Default::default()
        },
        MessageFilter {
            pinned: Some(true),
            ..Default::default()
        },
        MessageFilter {
            edited: Some(true),
            ..Default::default()
        },
        MessageFilter {
            session: s("s"),
            ..Default::default()
        },
        MessageFilter {
            meeting: s("m"),
            ..Default::default()
        },
        MessageFilter {
            since_ms: Some(1),
            until_ms: Some(2),
            ..Default::default()
        },
        MessageFilter {
            text_query: TextQuery::parse("word").ok(),
            ..Default::default()
        },
        MessageFilter {
            users: vec!["u".into()],
            kinds: vec!["text".into()],
            session: s("s"),
            text_query: TextQuery::parse("w").ok(),
            ..Default::default()
        },
    ];
    for filter in filters {
        for after in [
            None,
            Some(After {
                created_ms: 5,
                seq: 9,
            }),
        ] {
            // With `Probe` the SQL walks the other filters' index and `q` is checked in chunks.
            for (order, text_plan) in [
                (Order::Asc, messages::TextPlan::Collect),
                (Order::Desc, messages::TextPlan::Collect),
                (Order::Asc, messages::TextPlan::Probe),
                (Order::Desc, messages::TextPlan::Probe),
            ] {
                let (sql, params) =
                    messages::message_page_sql(&filter, order, after, 100, text_plan);
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let plan: Vec<String> = stmt
                    .query_map(rusqlite::params_from_iter(params), |r| {
                        r.get::<_, String>(3)
                    })
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                // The partial indexes hold only pinned / edited rows: walking one is the search.
                let partial = |step: &String| {
                    step.contains("USING INDEX messages_pinned_time")
                        || step.contains("USING INDEX messages_edited_time")
                };
                for step in &plan {
                    // A bare SCAN of the table (not the FTS index, not the time index walked in order).
                    let full_scan = (step == "SCAN messages" || step.starts_with("SCAN messages "))
                        && !step.contains("USING INDEX messages_time")
                        && !partial(step);
                    assert!(!full_scan, "{filter:?}: {plan:?}");
                }
                // Probing walks the time order and checks the FTS index per row, by design.
                let only_text = MessageFilter {
                    text_query: None,
                    ..filter.clone()
                } == MessageFilter::default();
                let only_text_type = MessageFilter {
                    kinds: vec!["text".into()],
                    ..Default::default()
                };
                let unfiltered = filter == MessageFilter::default()
                    || filter == only_text_type
                    || (text_plan == messages::TextPlan::Probe && only_text)
                    || filter.since_ms.is_some()
                    || filter.pinned == Some(false)
                    || filter.edited == Some(false);
                // The steps over `messages` itself (the others look up ids' keys).
                let walked: Vec<&String> = plan
                    .iter()
                    .filter(|p| p.starts_with("SEARCH messages ") || p.starts_with("SCAN messages"))
                    .collect();
                if !unfiltered {
                    assert!(
                        walked
                            .iter()
                            .any(|p| p.starts_with("SEARCH messages ") || partial(p)),
                        "{filter:?}: {plan:?}"
                    );
                }
                // A user, session or meeting filter walks its own index, unless the full-text
                // matches are collected first (then they are the search).
                let keyed = [
                    (!filter.users.is_empty(), "INDEX messages_user_time "),
                    (filter.session.is_some(), "INDEX messages_session_time "),
                    (filter.meeting.is_some(), "INDEX messages_meeting_time "),
                ];
                let collected =
                    filter.text_query.is_some() && text_plan == messages::TextPlan::Collect;
                if keyed.iter().any(|(on, _)| *on) && !collected {
                    assert!(
                        walked
                            .iter()
                            .any(|p| keyed.iter().any(|(on, index)| *on && p.contains(index))),
                        "{filter:?}: {plan:?}"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frequent_word_is_probed_and_a_rare_one_collected_with_the_same_answers() {
    // Writes below the store (or reads its query plans): SQLite's own storage.
    if sqlite_only("a_frequent_word_is_probed_and_a_rare_one_collected_with_the_same_answers") {
        return;
    }
    let app = spawn_app().await;
    // 4,500 messages contain "comma" (over the probing threshold); one contains "4321". Times
    // run backwards against load order, so seq order and time order disagree.
    let mut dump = format!("{DUMP_HEADER}\r\n");
    for i in 0..4500 {
        let time = chatsink::domain::Timestamp::from_millis(1_780_480_800_000 - i as i64 * 1000)
            .to_rfc3339();
        dump.push_str(&csv_row(&[
            &format!("fts-m{i}"),
            &format!("user-{}", i % 3),
            "fts-many",
            "meeting-1",
            "Ann",
            if i % 10 == 0 { "true" } else { "false" },
            "false",
            "TEXT_MESSAGE",
            &format!("message {i}, with a comma"),
            &time,
        ]));
    }
    let path = app.dir.path().join("fts.csv");
    std::fs::write(&path, dump).unwrap();
    let db = chatsink::store::Store::open(&app.db_path).unwrap();
    chatsink::ingest::ingest_file(&db, &path, None, |_, _| {})
        .await
        .unwrap();
    let conn = app.sqlite().unwrap();
    let plan = |q: &str| chatsink::store::sqlite::text_plan(&conn, q).unwrap();
    assert_eq!(plan("comma"), chatsink::store::sqlite::TextPlan::Probe);
    assert_eq!(plan("4321"), chatsink::store::sqlite::TextPlan::Collect);

    let expected = |filter: &dyn Fn(usize) -> bool, desc: bool| -> Vec<String> {
        // Message i is sent at -i seconds: ascending time is descending i.
        let mut ids: Vec<usize> = (0..4500).filter(|i| filter(*i)).collect();
        if !desc {
            ids.reverse();
        }
        ids.into_iter().map(|i| format!("fts-m{i}")).collect()
    };
    assert_eq!(
        all_ids(&app, "/v1/messages?q=comma&limit=700").await,
        expected(&|_| true, false)
    );
    assert_eq!(
        all_ids(&app, "/v1/messages?q=comma&order=desc&limit=1000").await,
        expected(&|_| true, true)
    );
    assert_eq!(
        all_ids(
            &app,
            "/v1/messages?q=comma&pinned=true&user=user-1&limit=37"
        )
        .await,
        expected(&|i| i % 10 == 0 && i % 3 == 1, false)
    );
    assert_eq!(
        all_ids(&app, "/v1/messages?q=4321").await,
        vec!["fts-m4321".to_owned()]
    );

    // A second session loaded later, its times interleaved with the first: chunks in time order
    // now hold seqs far apart. The answer must equal collect-and-sort, computed in SQL here.
    let mut other = format!("{DUMP_HEADER}\r\n");
    for i in 0..600 {
        let time =
            chatsink::domain::Timestamp::from_millis(1_780_480_800_000 - i as i64 * 7_000 - 500)
                .to_rfc3339();
        let text = if i % 4 == 0 {
            "no match here"
        } else {
            "another comma"
        };
        other.push_str(&csv_row(&[
            &format!("other-m{i}"),
            "user-9",
            "fts-other",
            "meeting-2",
            "Bo",
            "false",
            "false",
            "TEXT_MESSAGE",
            text,
            &time,
        ]));
    }
    std::fs::write(&path, other).unwrap();
    chatsink::ingest::ingest_file(&db, &path, None, |_, _| {})
        .await
        .unwrap();
    for (order, dir) in [("asc", "ASC"), ("desc", "DESC")] {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id FROM messages WHERE seq IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'comma')
                 ORDER BY created_ms {dir}, seq {dir}"
            ))
            .unwrap();
        let oracle: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(oracle.len(), 4500 + 450);
        assert_eq!(
            all_ids(
                &app,
                &format!("/v1/messages?q=comma&order={order}&limit=333")
            )
            .await,
            oracle,
            "{order}"
        );
    }
}

#[tokio::test]
async fn type_filters_on_every_type_the_archive_holds_and_unknown_ids_are_404() {
    let header = "id,participantId,sessionId,meetingId,displayName,pinned,isEdited,payloadType,payload,createdAt";
    let dump = format!(
        "{header}\nm1,u1,s-kinds,mt,Ann,false,false,TEXT_MESSAGE,hi,1780480800000\n\
         m2,u1,s-kinds,mt,Ann,false,false,CUSTOM_MESSAGE,{{}},1780480801000\n\
         m3,u2,s-kinds,mt,Bob,false,false,IMAGE_MESSAGE,https://x/y.png,1780480802000\n"
    );
    let storage = FakeServer::start().await;
    storage.route("/d.csv", vec![Reply::Body(dump.into_bytes())]);
    let app = spawn_app().await;
    app.post_rtk(&chat_synced("s-kinds", &storage.url("/d.csv")))
        .await;
    app.wait_for_jobs(std::time::Duration::from_secs(20)).await;
    let ids = |body: &Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, custom) = json(&app, "/v1/messages?type=CUSTOM_MESSAGE").await;
    assert_eq!(status, 200, "{custom}");
    assert_eq!(ids(&custom), ["m2"]);
    assert_eq!(custom["messages"][0]["type"], "CUSTOM_MESSAGE");
    let (_, both) = json(&app, "/v1/messages?type=TEXT_MESSAGE&type=image").await;
    assert_eq!(ids(&both), ["m1", "m3"]);
    let (_, none) = json(&app, "/v1/messages?type=video").await;
    assert_eq!(ids(&none), Vec::<String>::new());
    for path in ["/v1/users/nope/messages", "/v1/sessions/nope/messages"] {
        let (status, body) = json(&app, path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "not_found", "{path}: {body}");
    }
    let (status, _) = json(&app, "/v1/users/u1/messages").await;
    assert_eq!(status, 200);
}
