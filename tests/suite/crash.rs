//! Crash safety: the real `chatsink serve` binary as a child process, SIGKILLed at a named
//! failpoint (debug builds only; see `src/failpoint.rs`), then restarted on the same database.
//! Every acknowledged delivery must end `done` with its session's rows exactly once.

use crate::helpers::*;
use crate::site::*;
use std::time::{Duration, Instant};

/// Three sessions: a large one (`big` rows) and two small ones, all served from loopback.
async fn dumps(big: usize) -> (FakeServer, Vec<(String, usize, Vec<u8>)>) {
    let server = FakeServer::start().await;
    let sessions = vec![("crash-big", big), ("crash-s1", 7), ("crash-s2", 12)];
    let mut deliveries = Vec::new();
    for (session, rows) in sessions {
        let path = format!("/{session}.csv");
        server.route(&path, vec![Reply::Body(simple_dump(session, rows))]);
        deliveries.push((
            session.to_owned(),
            rows,
            chat_synced(session, &server.url(&path)),
        ));
    }
    (server, deliveries)
}

/// Kills the service at `point` while it works on acknowledged deliveries, restarts it clean and
/// checks the end state. Returns the jobs' attempts.
async fn crash_at(point: &str, big: usize, slow_big: bool) -> Vec<(String, i64)> {
    let site = Site::new();
    let (server, deliveries) = dumps(big).await;
    if slow_big {
        // Several chunks with pauses, so the download is in flight when the kill lands.
        server.route(
            "/crash-big.csv",
            vec![Reply::Slow {
                body: simple_dump("crash-big", big),
                chunk: 16 * 1024,
                pause: Duration::from_millis(20),
            }],
        );
    }
    // The worker waits half a second before each claim, so all three are acknowledged before
    // the first job starts; then it stops for a minute at `point` and is killed there.
    let armed = if point == "worker.before_claim" {
        format!("{point}=60000")
    } else {
        format!("worker.before_claim=500,{point}=60000")
    };
    let served = site.start(&armed).await;
    for (i, (_, _, body)) in deliveries.iter().enumerate() {
        let response = served
            .post(body, &format!("crash-delivery-{i}"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "delivery {i} acknowledged");
    }
    site.wait_for_marker(point).await;
    served.kill();

    let served = site.start("").await;
    let jobs = site.wait_until_settled().await;
    assert_eq!(
        jobs.len(),
        deliveries.len(),
        "one job per delivery: {jobs:?}"
    );
    assert!(
        jobs.iter().all(|(state, _)| state == "done"),
        "{jobs:?}\n{}",
        site.log()
    );
    for (session, rows, _) in &deliveries {
        site.assert_loaded_once(session, *rows);
    }
    // A delivery re-sent after the crash is still a duplicate.
    let again = served
        .post(&deliveries[0].2, "crash-delivery-0")
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["status"], "duplicate");
    assert!(
        site.leftover_parts().is_empty(),
        "partial downloads left behind: {:?}",
        site.leftover_parts()
    );
    served.stop();
    jobs
}

/// A new user's crash: a delivery acknowledged, the service killed within milliseconds while its
/// job runs, started again. The dead process's job lease (a minute) must not hold the session
/// back: its successor sees the process is gone and takes the job at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_acknowledged_just_before_a_kill_loads_within_ten_seconds_of_the_restart() {
    let site = Site::new();
    let server = FakeServer::start().await;
    let rows = 2000;
    // Slow enough that the download is in flight when the kill lands.
    server.route(
        "/killed.csv",
        vec![Reply::Slow {
            body: simple_dump("s-killed", rows),
            chunk: 4 * 1024,
            pause: Duration::from_millis(50),
        }],
    );
    let served = site.start_on_defaults().await;
    let archive = site.archive();
    let body = chat_synced("s-killed", &server.url("/killed.csv"));
    let response = served.post(&body, "killed-delivery").await.unwrap();
    assert_eq!(response.status(), 200);
    let acknowledged = Instant::now();
    // Kill as soon as the job is claimed (a few milliseconds), so its lease is left behind.
    while archive
        .jobs()
        .first()
        .is_none_or(|j| j.state != chatsink::domain::JobState::Running)
    {
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "{:?}",
            site.jobs()
        );
    }
    let killed_after = acknowledged.elapsed();
    served.kill();
    // Well inside the download (about 1.2 s of slow chunks): the lease is held, nothing loaded.
    // A busy machine may take the test some milliseconds to see the claim; that is no fault.
    assert!(
        killed_after < Duration::from_millis(250),
        "killed {killed_after:?} after the ack"
    );
    assert_eq!(
        site.jobs(),
        [("running".to_owned(), 1)],
        "the dead process's lease is left"
    );

    let restarted = Instant::now();
    let served = site.start_on_defaults().await;
    loop {
        let jobs = site.jobs();
        if jobs.first().is_some_and(|(state, _)| state == "done") {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "not loaded 10 s after the restart: {jobs:?}\n{}",
            site.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let loaded_after = restarted.elapsed();
    site.assert_loaded_once("s-killed", rows);
    assert_eq!(site.jobs(), [("done".to_owned(), 2)]);
    println!("killed {killed_after:?} after the ack; loaded {loaded_after:?} after the restart");
    served.stop();
}

fn attempts(jobs: &[(String, i64)]) -> Vec<i64> {
    jobs.iter().map(|(_, attempts)| *attempts).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_ack_before_any_job_ran() {
    let jobs = crash_at("worker.before_claim", 50, false).await;
    assert_eq!(attempts(&jobs), [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_while_the_dump_downloads() {
    let jobs = crash_at("download.mid", 5000, true).await;
    // The killed attempt counts; the job is not stuck behind it once its lease runs out.
    assert_eq!(attempts(&jobs), [2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_the_middle_of_loading_thousands_of_rows() {
    let jobs = crash_at("load.mid", 5000, false).await;
    assert_eq!(attempts(&jobs), [2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_just_before_the_load_commits() {
    let jobs = crash_at("load.before_commit", 3000, false).await;
    assert_eq!(attempts(&jobs), [2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_right_after_the_load_commits() {
    // The rows and the job's `done` share one transaction: once committed, nothing re-runs.
    let jobs = crash_at("load.after_commit", 3000, false).await;
    assert_eq!(attempts(&jobs), [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_the_intake_commit_but_before_the_answer() {
    let site = Site::new();
    let (_server, deliveries) = dumps(20).await;
    let served = site.start("intake.after_commit=60000").await;
    let (session, rows, body) = deliveries[0].clone();
    let pending = {
        let body = body.clone();
        let client = served.client.clone();
        let url = format!("{}/webhooks/realtimekit", served.address);
        tokio::spawn(async move {
            client
                .post(url)
                .header("rtk-signature", rtk_sign(&rsa_keys().0, &body))
                .header("rtk-uuid", "intake-crash")
                .body(body)
                .send()
                .await
        })
    };
    site.wait_for_marker("intake.after_commit").await;
    served.kill();
    assert!(
        pending.await.unwrap().is_err(),
        "the sender saw no answer, so it retries"
    );

    let served = site.start("").await;
    let retry = served.post(&body, "intake-crash").await.unwrap();
    assert_eq!(retry.status(), 200);
    let answer: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(
        answer["status"], "duplicate",
        "the stored delivery is kept and not doubled"
    );
    let jobs = site.wait_until_settled().await;
    assert_eq!(jobs, vec![("done".to_owned(), 1)]);
    site.assert_loaded_once(&session, rows);
    served.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kills_during_a_stream_of_deliveries_lose_nothing() {
    // Four senders keep posting while the process is SIGKILLed at a random moment, three times:
    // kills land while posts are in flight and while jobs run. Only answers of 200 count as
    // acknowledged, and every one of them must end loaded exactly once.
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let site = Site::new();
    let server = FakeServer::start().await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let acknowledged_events = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261201);
    let (mut cut_posts, mut jobs_cut) = (0, 0);
    for _ in 0..3 {
        let served = site.start("").await;
        let stop = Arc::new(AtomicBool::new(false));
        let failed_posts = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..4)
            .map(|_| {
                let (sender, server) = (served.sender(), server.clone());
                let (stop, next, acked, failed) = (
                    stop.clone(),
                    next.clone(),
                    acknowledged.clone(),
                    failed_posts.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let (session, rows) = (format!("stream-{n}"), 200 + n * 37 % 400);
                        let path = format!("/{session}.csv");
                        // Slow downloads, so jobs are running when a kill lands.
                        server.route(
                            &path,
                            vec![Reply::Slow {
                                body: simple_dump(&session, rows),
                                chunk: 4096,
                                pause: Duration::from_millis(5),
                            }],
                        );
                        let body = chat_synced(&session, &server.url(&path));
                        match sender.post(&body, &format!("stream-{n}")).await {
                            Ok(r) if r.status() == 200 => {
                                acked.lock().unwrap().push((session, rows))
                            }
                            Ok(_) => {}
                            Err(_) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            })
            .collect();
        // Two more senders post other events back to back (they make no jobs), so posts are in
        // flight whenever the kill lands.
        let events: Vec<_> = (0..2)
            .map(|_| {
                let (sender, stop, next) = (served.sender(), stop.clone(), next.clone());
                let (acked, failed) = (acknowledged_events.clone(), failed_posts.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("event-{}", next.fetch_add(1, Ordering::SeqCst));
                        let body = format!(
                            r#"{{"event":"meeting.started","meeting":{{"id":"m","sessionId":"{id}"}}}}"#
                        );
                        match sender.post(body.as_bytes(), &id).await {
                            Ok(r) if r.status() == 200 => acked.lock().unwrap().push(id),
                            Ok(_) => {}
                            Err(_) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..900))).await;
        served.kill();
        // What the dead process left: jobs it was running hold a lease no one renews.
        jobs_cut += site
            .jobs()
            .iter()
            .filter(|(state, _)| state == "running")
            .count();
        stop.store(true, Ordering::SeqCst);
        for sender in senders.into_iter().chain(events) {
            sender.await.unwrap();
        }
        cut_posts += failed_posts.load(Ordering::SeqCst);
    }
    assert!(
        cut_posts > 0,
        "some kills landed while posts were in flight"
    );
    assert!(jobs_cut > 0, "some kills landed while a job ran");
    let served = site.start("").await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let jobs = site.wait_until_settled().await;
    assert!(acknowledged.len() >= 10, "{}", acknowledged.len());
    // A post cut after its commit and before its answer is stored without being acknowledged
    // (its sender would retry and get `duplicate`): at most one such job per cut post.
    assert!(
        jobs.len() >= acknowledged.len() && jobs.len() <= acknowledged.len() + cut_posts,
        "{} jobs for {} acknowledged deliveries and {cut_posts} cut posts",
        jobs.len(),
        acknowledged.len()
    );
    assert!(jobs.iter().all(|(s, _)| s == "done"), "{jobs:?}");
    for (session, rows) in &acknowledged {
        site.assert_loaded_once(session, *rows);
    }
    let stored: std::collections::HashSet<String> = site
        .archive()
        .deliveries()
        .into_iter()
        .filter_map(|d| d.delivery_id)
        .collect();
    let events = acknowledged_events.lock().unwrap().clone();
    assert!(events.len() > 20, "{}", events.len());
    for id in &events {
        assert!(stored.contains(id), "acknowledged {id} was lost");
    }
    served.stop();
}
