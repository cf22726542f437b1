//! Broken dumps, table-driven: each ends in a documented, deterministic outcome, and the service
//! stays healthy. (The outcomes are listed in docs/faults.md under "What happens to a broken dump".)

use crate::helpers::*;
use std::time::{Duration, Instant};

const HEADER: &str = "id,participantId,sessionId,meetingId,displayName,pinned,isEdited,payloadType,payload,createdAt";

fn tiny_row(session: &str, n: usize, eol: &str) -> String {
    format!(
        "m{n},u{},{session},mt,Ann,false,false,TEXT_MESSAGE,hello {n},1780480800000{eol}",
        n % 7
    )
}

enum Outcome {
    /// The job is `done` with these counts of loaded and rejected rows.
    Done { loaded: i64, rejected: i64 },
    /// The job is `dead` (never retried) with this in its error.
    Dead(&'static str),
}

struct Case {
    name: &'static str,
    dump: Vec<u8>,
    outcome: Outcome,
    /// Reasons the rejected rows carry, with their 1-based line, in order.
    rejections: Vec<(i64, &'static str)>,
}

fn cases() -> Vec<Case> {
    let s = |name: &str| format!("bad-{name}");
    let mut cases = Vec::new();

    cases.push(Case {
        name: "empty",
        dump: Vec::new(),
        outcome: Outcome::Dead("the dump is empty"),
        rejections: vec![],
    });
    cases.push(Case {
        name: "header-only",
        dump: format!("{HEADER}\r\n").into_bytes(),
        outcome: Outcome::Done {
            loaded: 0,
            rejected: 0,
        },
        rejections: vec![],
    });
    cases.push(Case {
        name: "missing-columns",
        dump: format!("id,participantId,sessionId,createdAt\nm1,u1,{},1780480800000\n", s("missing-columns"))
            .into_bytes(),
        outcome: Outcome::Dead(
            "lacks required column(s): meetingId, displayName, pinned, isEdited, payloadType, payload",
        ),
        rejections: vec![],
    });
    let session = s("ragged");
    cases.push(Case {
        name: "ragged",
        dump: format!(
            "{HEADER}\n{}m2,u1,{session},mt,Ann,false\nm3,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,x,1780480800000,extra,extra\n{}",
            tiny_row(&session, 1, "\n"),
            tiny_row(&session, 4, "\n"),
        )
        .into_bytes(),
        outcome: Outcome::Done {
            loaded: 2,
            rejected: 2,
        },
        rejections: vec![
            (3, "expected 10 fields, found 6"),
            (4, "expected 10 fields, found 12"),
        ],
    });
    let session = s("unterminated-quote");
    cases.push(Case {
        name: "unterminated-quote",
        // The open quote swallows everything to the end of the file into one field: that
        // record has 9 fields and is rejected; the rows before it load.
        dump: format!(
            "{HEADER}\n{}m2,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,\"never closed,1780480800000\n{}",
            tiny_row(&session, 1, "\n"),
            tiny_row(&session, 3, "\n"),
        )
        .into_bytes(),
        outcome: Outcome::Done {
            loaded: 1,
            rejected: 1,
        },
        rejections: vec![(3, "expected 10 fields, found 9")],
    });
    let session = s("nul-bytes");
    cases.push(Case {
        name: "nul-bytes",
        // NUL is valid UTF-8 and kept byte for byte.
        dump: format!(
            "{HEADER}\nm1,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,a\0b,1780480800000\n"
        )
        .into_bytes(),
        outcome: Outcome::Done {
            loaded: 1,
            rejected: 0,
        },
        rejections: vec![],
    });
    let session = s("invalid-utf8");
    let mut dump = format!("{HEADER}\n{}", tiny_row(&session, 1, "\n")).into_bytes();
    dump.extend_from_slice(
        format!("m2,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,caf").as_bytes(),
    );
    dump.extend_from_slice(b"\xe9 \xff\xfe,1780480800000\n");
    dump.extend_from_slice(tiny_row(&session, 3, "\n").as_bytes());
    cases.push(Case {
        name: "invalid-utf8",
        dump,
        outcome: Outcome::Done {
            loaded: 2,
            rejected: 1,
        },
        rejections: vec![(3, "invalid UTF-8 in column payload")],
    });
    let session = s("ten-megabyte-field");
    cases.push(Case {
        name: "ten-megabyte-field",
        dump: format!(
            "{HEADER}\nm1,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,\"{}\",1780480800000\n",
            "x\"\"y,\n".repeat(10 * 1024 * 1024 / 5)
        )
        .into_bytes(),
        outcome: Outcome::Done {
            loaded: 1,
            rejected: 0,
        },
        rejections: vec![],
    });
    let session = s("mixed-newlines");
    let mut mixed = format!("{HEADER}\r\n");
    for n in 0..20 {
        mixed.push_str(&tiny_row(
            &session,
            n,
            if n % 3 == 0 { "\r\n" } else { "\n" },
        ));
    }
    mixed.push_str(
        "m20,u1,not a valid session!,mt,Ann,false,false,TEXT_MESSAGE,x,1780480800000\r\n",
    );
    mixed.push_str(&tiny_row(&session, 21, "\n"));
    cases.push(Case {
        name: "mixed-newlines",
        dump: mixed.into_bytes(),
        outcome: Outcome::Done {
            loaded: 21,
            rejected: 1,
        },
        rejections: vec![(22, "row belongs to session not a valid session!")],
    });
    let session = s("million-tiny-rows");
    let mut million = format!("{HEADER}\n");
    for n in 0..1_000_000 {
        million.push_str(&tiny_row(&session, n, "\n"));
    }
    cases.push(Case {
        name: "million-tiny-rows",
        dump: million.into_bytes(),
        outcome: Outcome::Done {
            loaded: 1_000_000,
            rejected: 0,
        },
        rejections: vec![],
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_dump_ends_in_its_documented_outcome_and_the_service_stays_healthy() {
    let app = spawn_app_with(AppOptions::default().arg("--workers", "2")).await;
    let server = FakeServer::start().await;
    let cases = cases();
    let started = Instant::now();
    for case in &cases {
        let session = format!("bad-{}", case.name);
        let path = format!("/{}.csv", case.name);
        server.route(&path, vec![Reply::Body(case.dump.clone())]);
        let response = app
            .post_rtk(&chat_synced(&session, &server.url(&path)))
            .await;
        assert_eq!(response.status(), 200, "{}", case.name);
    }
    let jobs = app.wait_for_jobs(Duration::from_secs(300)).await;
    eprintln!(
        "broken dumps (incl. 1M rows) settled in {:?} (debug build)",
        started.elapsed()
    );
    assert_eq!(jobs.len(), cases.len());

    let all_jobs = app.archive.jobs();
    for case in &cases {
        let session = format!("bad-{}", case.name);
        let job = all_jobs
            .iter()
            .find(|j| j.session_id == session)
            .unwrap()
            .clone();
        let (state, error, loaded, rejected) = (
            job.state.as_str(),
            job.last_error.clone(),
            job.rows_loaded,
            job.rows_rejected,
        );
        match &case.outcome {
            Outcome::Done {
                loaded: want_loaded,
                rejected: want_rejected,
            } => {
                assert_eq!(
                    (state, loaded, rejected),
                    ("done", Some(*want_loaded), Some(*want_rejected)),
                    "{}: {error:?}",
                    case.name
                );
                assert_eq!(app.messages_in(&session), *want_loaded, "{}", case.name);
            }
            Outcome::Dead(message) => {
                assert_eq!(state, "dead", "{}", case.name);
                let error = error.unwrap_or_default();
                assert!(error.contains(message), "{}: {error}", case.name);
                assert_eq!(
                    job.attempts, 1,
                    "{}: a broken file is not retried",
                    case.name
                );
            }
        }
        let rejections: Vec<(i64, String)> = app
            .archive
            .rejected(&session)
            .into_iter()
            .map(|r| (r.line, r.reason))
            .collect();
        assert_eq!(
            rejections.len(),
            case.rejections.len(),
            "{}: {rejections:?}",
            case.name
        );
        for ((line, reason), (want_line, want_reason)) in rejections.iter().zip(&case.rejections) {
            assert_eq!(line, want_line, "{}: {reason}", case.name);
            assert!(reason.contains(want_reason), "{}: {reason}", case.name);
        }
    }

    // Content survives byte for byte.
    let text_of = |session: &str| app.archive.messages_of(session)[0].text.clone().unwrap();
    assert_eq!(text_of("bad-nul-bytes"), "a\0b");
    assert_eq!(
        text_of("bad-ten-megabyte-field").len(),
        10 * 1024 * 1024 / 5 * 5
    );

    // And the service is fine: healthy, and the next ordinary delivery loads.
    assert_eq!(app.get("/readyz").await.status(), 200);
    server.route(
        "/after.csv",
        vec![Reply::Body(simple_dump("after-bad", 10))],
    );
    assert_eq!(
        app.post_rtk(&chat_synced("after-bad", &server.url("/after.csv")))
            .await
            .status(),
        200
    );
    let jobs = app.wait_for_jobs(Duration::from_secs(30)).await;
    assert_eq!(jobs.last().unwrap().1, "done");
    let page: serde_json::Value = app
        .get("/v1/messages?session=after-bad")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn times_outside_rfc_3339s_years_are_rejected_and_no_stored_time_breaks_a_route() {
    // Writes below the store (or reads its query plans): SQLite's own storage.
    if sqlite_only("times_outside_rfc_3339s_years_are_rejected_and_no_stored_time_breaks_a_route") {
        return;
    }
    let session = "s-far-future";
    let row = |id: &str, created: &str| {
        format!("{id},u1,{session},mt,Ann,false,false,TEXT_MESSAGE,hello,{created}\n")
    };
    // Line 2: year 10000 (epoch ms); line 3: before year 0000; lines 4-6 load, one of them
    // before 1970 (-1000: epoch seconds) and one on the last millisecond RFC 3339 can write.
    let dump = format!(
        "{HEADER}\n{}{}{}{}{}",
        row("far", "253402300800000"),
        row("early", "-62167219200001"),
        row("old", "-1000"),
        row("now", "2026-06-03T10:00:00Z"),
        row("last", "9999-12-31T23:59:59.999Z"),
    );
    let server = FakeServer::start().await;
    server.route("/d.csv", vec![Reply::Body(dump.into_bytes())]);
    let app = spawn_app().await;
    app.post_rtk(&chat_synced(session, &server.url("/d.csv")))
        .await;
    let jobs = app.wait_for_jobs(Duration::from_secs(30)).await;
    assert_eq!(jobs[0].1, "done", "{jobs:?}");
    let rejected = app.rejected_rows();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0].0, 2);
    assert!(
        rejected[0].1.contains("outside the years 0000-9999"),
        "{rejected:?}"
    );
    assert_eq!(rejected[1].0, 3);

    // A time stored by an older version, outside the range, is still served as RFC 3339
    // (written below the store, as that version's SQLite file holds it).
    app.sqlite()
        .unwrap()
        .execute(
            "UPDATE messages SET created_ms = 253402300800000 WHERE id = 'now'",
            [],
        )
        .unwrap();
    let stats = app.get(&format!("/v1/stats?session={session}")).await;
    assert_eq!(stats.status(), 200);
    let stats: serde_json::Value = stats.json().await.unwrap();
    let days: Vec<&str> = stats["byDay"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["1969-12-31", "9999-12-31"], "{stats}");
    assert_eq!(stats["byDay"][1]["count"], 2, "{stats}");
    let page: serde_json::Value = app
        .get(&format!("/v1/messages?session={session}"))
        .await
        .json()
        .await
        .unwrap();
    let times: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "1969-12-31T23:43:20.000Z",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z"
        ]
    );
}

#[tokio::test]
async fn rejected_rows_keep_their_exact_bytes_and_are_served_paged() {
    let session = "s-rejected";
    let formula = format!(
        "\"m2\",u1,{session},mt,Ann,maybe,false,TEXT_MESSAGE,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\",1780480800000"
    );
    let mut dump = format!("{HEADER}\r\nm1,u1,{session},mt,Ann,false,false,TEXT_MESSAGE,ok,1780480800000\r\n{formula}\r\n").into_bytes();
    // Line 4: not UTF-8; line 5: a backslash; then 3 more bad rows to page over.
    dump.extend_from_slice(b"m3,u1,");
    dump.extend_from_slice(session.as_bytes());
    dump.extend_from_slice(b",mt,\xff\xfe,false,false,TEXT_MESSAGE,x,1\r\n");
    dump.extend_from_slice(
        format!("m4,u1,{session},mt,A\\B,no,false,TEXT_MESSAGE,x,1\r\n").as_bytes(),
    );
    for i in 5..8 {
        dump.extend_from_slice(
            format!("m{i},u1,{session},mt,A,false,false,TEXT_MESSAGE,x,never\r\n").as_bytes(),
        );
    }
    let server = FakeServer::start().await;
    server.route("/d.csv", vec![Reply::Body(dump)]);
    let app = spawn_app().await;
    app.post_rtk(&chat_synced(session, &server.url("/d.csv")))
        .await;
    app.wait_for_jobs(Duration::from_secs(30)).await;

    let mut rows = Vec::new();
    let mut path = format!("/v1/sessions/{session}/rejected?limit=2");
    loop {
        let page: serde_json::Value = app.get(&path).await.json().await.unwrap();
        let got = page["rejected"].as_array().unwrap().clone();
        assert!(got.len() <= 2, "{page}");
        rows.extend(got);
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!("/v1/sessions/{session}/rejected?limit=2&cursor={cursor}")
            }
            None => break,
        }
    }
    let lines: Vec<i64> = rows.iter().map(|r| r["line"].as_i64().unwrap()).collect();
    assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
    assert_eq!(
        rows[0]["raw"],
        formula.as_str(),
        "the exact bytes, quoting as written"
    );
    assert_eq!(rows[0]["reason"], "bad boolean in pinned: 'maybe'");
    assert_eq!(
        rows[1]["raw"],
        format!("m3,u1,{session},mt,\\xff\\xfe,false,false,TEXT_MESSAGE,x,1")
    );
    assert_eq!(
        rows[2]["raw"],
        format!("m4,u1,{session},mt,A\\\\B,no,false,TEXT_MESSAGE,x,1")
    );
    let unknown = app.get("/v1/sessions/nope/rejected").await;
    assert_eq!(unknown.status(), 404);

    // The same from the CLI.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["rejected", "--session", session])
        .env("CHATSINK_DATABASE", &app.db_path)
        .env("CHATSINK_DATA_DIR", &app.data_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains(&formula), "{stdout}");
    assert!(stdout.contains("\\xff\\xfe"), "{stdout}");
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
}
