//! 7: the analysts' page on the bench's archive (1M messages at full scale): a transcript's
//! first page, from navigation to painted, in headless Chromium driven through chromedriver.

use super::{serve, test_pem, Figure, TOKEN};
use fantoccini::{ClientBuilder, Locator};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const RUNS: usize = 11;

pub async fn transcript_paint(work: &Path, ingest_db: &Path) -> Option<Figure> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!("bench: page: Chromium and chromedriver are not installed (apt-get install chromium chromium-driver); figure 7 skipped");
        return None;
    }
    let db = work.join("page.db");
    std::fs::copy(ingest_db, &db).unwrap();
    let (session, messages, total): (String, i64, i64) = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT session_id, message_count, (SELECT count(*) FROM messages) FROM sessions
             ORDER BY message_count DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let served = serve(work, &db, &[], &test_pem()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({"goog:chromeOptions": {"binary": CHROMIUM, "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,900",
        format!("--user-data-dir={}", profile.path().display()),
    ]}});
    let capabilities = capabilities.as_object().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chromedriver never answered: {e}"),
        }
    };
    client.goto(&format!("{}/ui/", served.base)).await.unwrap();
    client
        .execute(
            "sessionStorage.setItem('chatsink.read-token', arguments[0])",
            vec![serde_json::json!(TOKEN)],
        )
        .await
        .unwrap();
    let mut times = Vec::new();
    for run in 0..RUNS {
        client
            .goto(&format!("{}/ui/sessions/{session}?run={run}", served.base))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let painted = loop {
            let mark = client
                .execute(
                    "const m = performance.getEntriesByName('chatsink:painted');
                     return m.length && document.querySelectorAll('#messages article').length ? m[0].startTime : null",
                    vec![],
                )
                .await
                .unwrap();
            if let Some(ms) = mark.as_f64() {
                break ms;
            }
            assert!(Instant::now() < deadline, "the transcript never painted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(client.find(Locator::Css("#messages article")).await.is_ok());
        // The first load warms the browser's and the database's caches.
        if run > 0 {
            times.push(painted);
        }
    }
    let _ = client.close().await;
    let _ = driver.kill();
    let _ = driver.wait();
    drop(served);
    let median = super::median(&mut times);
    eprintln!("bench: page: transcript of {session} ({messages} messages, archive of {total}): first page painted {times:.0?} ms after navigation");
    Some(Figure {
        name: format!(
            "7. /ui/ transcript's first page painted (median of {}; {total}-message archive)",
            RUNS - 1
        ),
        chatsink: format!("{median:.0} ms"),
        reference: "-".into(),
        ratio: None,
        target: "<= 1000 ms".into(),
        met: Some(median <= 1000.0),
    })
}
