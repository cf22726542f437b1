//! The analysts' page in a real browser: headless Chromium driven through WebDriver
//! (chromedriver, fantoccini), against the service on loopback with an archive holding hostile
//! messages. Screenshots of each view are saved under `target/ui-screenshots/`.

use crate::helpers::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Drop for Browser {
    /// Ends chromedriver and every Chromium process it started (its process group: killing
    /// chromedriver alone would leave Chromium running, and writing into the removed profile).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium's processes may take a moment to go after the signal.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && group_alive(self.driver.id()) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether any process of process group `pgid` is still running.
fn group_alive(pgid: u32) -> bool {
    Command::new("pgrep")
        .args(["-g", &pgid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Browser {
    /// Chromium under chromedriver, downloads into `downloads`; None (said visibly, a failure
    /// under CI=true) where they are not installed.
    async fn start(test: &str, downloads: &Path) -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            skip(
                test,
                "Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        }
        let port = crate::site::free_port();
        // Its own process group, so the browser it starts can be ended with it.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1280,900", format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let capabilities = capabilities.as_object().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            // Plain HTTP to chromedriver on loopback: no TLS stack for the test to pull in.
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver never answered: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            client,
            driver,
            _profile: profile,
            shots,
        })
    }

    /// Waits until the page has painted `view` (the page marks `main[data-view]` when done).
    async fn painted(&self, view: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let shown = self
                .client
                .execute(
                    "return document.getElementById('app').dataset.view || null",
                    vec![],
                )
                .await
                .unwrap();
            if shown.as_str() == Some(view) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {view} view never painted (shows {shown}); page: {}",
                self.client.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a screenshot of the view, after checking that no JavaScript value leaked into it
    /// as text (an absent field shown as "null", "undefined" or "NaN").
    async fn shot(&self, name: &str) {
        let leaked = self
            .js(
                "const walk = document.createTreeWalker(document.getElementById('app'), NodeFilter.SHOW_TEXT);
                 const leaked = [];
                 while (walk.nextNode()) {
                   if (/(^|[\\s,(])(null|undefined|NaN|\\[object Object\\])([\\s,.)]|$)/.test(walk.currentNode.textContent))
                     leaked.push(walk.currentNode.textContent.slice(0, 200));
                 }
                 return leaked;",
            )
            .await;
        assert_eq!(
            leaked,
            serde_json::json!([]),
            "{name}: values shown as text"
        );
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Waits (up to 10 s) until `css` matches exactly `n` elements; `what` says what failed.
    async fn until_count(&self, css: &str, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.count(css).await != n {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The browser's console entries at SEVERE level, other than pictures that could not load
    /// (the archive's image links point at hosts this machine cannot reach) and the API answers
    /// the test asked for (`expected`: a part of each such entry).
    async fn console_errors(&self, expected: &[&str]) -> Vec<String> {
        let logs = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver returns the browser log");
        logs.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .filter(|m| !m.contains("Failed to load resource: net::"))
            .filter(|m| !expected.iter().any(|e| m.contains(e)))
            .collect()
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the browser's console.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// A dump for `session` with these (id, user, name, type, payload, pinned) rows, a second apart;
/// the rows named in `edited` were edited.
fn dump_of(
    session: &str,
    rows: &[(&str, &str, &str, &str, &str, bool)],
    edited: &[&str],
) -> Vec<u8> {
    let mut out = format!("{DUMP_HEADER}\r\n");
    for (i, (id, user, name, kind, payload, pinned)) in rows.iter().enumerate() {
        let time = chatsink::domain::Timestamp::from_millis(1_780_480_800_000 + i as i64 * 1000)
            .to_rfc3339();
        out.push_str(&csv_row(&[
            id,
            user,
            session,
            "meeting-ui",
            name,
            if *pinned { "true" } else { "false" },
            if edited.contains(id) { "true" } else { "false" },
            kind,
            payload,
            &time,
        ]));
    }
    out.into_bytes()
}

const HOSTILE_NAME: &str = "<b onmouseover=\"window.__pwned='name'\">Mallory</b>\u{202e}gpj.exe";

/// Sign in (a wrong token first), read sessions, open a transcript full of hostile messages and
/// see them as text with nothing run, search a word and see it highlighted, follow a result to
/// its place, change a filter and see the URL change, export, read users and stats; no console
/// errors throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_reads_searches_and_exports_in_a_real_browser() {
    // In the SQLite suite only: the page reads the /v1 API, the same on either backend.
    let test = "browser::an_analyst_reads_searches_and_exports_in_a_real_browser";
    let downloads = tempfile::tempdir().unwrap();
    let Some(browser) = Browser::start(test, downloads.path()).await else {
        return;
    };
    let app = spawn_app().await;
    let storage = FakeServer::start().await;
    let huge = "x".repeat(10 * 1024 * 1024);
    let file = r#"{"link":"javascript:window.__pwned='file'","name":"<svg onload=window.__pwned='fname'>.pdf","size":2048}"#;
    let rows = [
        (
            "h1",
            "u-mallory",
            HOSTILE_NAME,
            "TEXT_MESSAGE",
            "<script>window.__pwned='script'</script>",
            false,
        ),
        (
            "h2",
            "u-mallory",
            HOSTILE_NAME,
            "TEXT_MESSAGE",
            "<img src=x onerror=\"window.__pwned='img'\">",
            true,
        ),
        (
            "h3",
            "u-mallory",
            HOSTILE_NAME,
            "IMAGE_MESSAGE",
            "javascript:window.__pwned='link'",
            false,
        ),
        ("h4", "u-mallory", HOSTILE_NAME, "FILE_MESSAGE", file, false),
        (
            "h5",
            "u-ann",
            "Ann",
            "TEXT_MESSAGE",
            "first line\nsecond line about the budget",
            false,
        ),
        (
            "h6",
            "u-ann",
            "Ann",
            "IMAGE_MESSAGE",
            "https://pictures.invalid/cat.png",
            false,
        ),
        ("h7", "u-bo", "Bo", "TEXT_MESSAGE", &huge, false),
        (
            "h8",
            "u-bo",
            "Bo",
            "TEXT_MESSAGE",
            "the budget is agreed",
            true,
        ),
    ];
    storage.route(
        "/ui-1.csv",
        vec![Reply::Body(dump_of("ui-1", &rows, &["h8"]))],
    );
    let mut delivery: serde_json::Value =
        serde_json::from_slice(&chat_synced("ui-1", &storage.url("/ui-1.csv"))).unwrap();
    delivery["title"] = "<i>Quarterly</i> planning".into();
    assert_eq!(
        app.post_rtk(&serde_json::to_vec(&delivery).unwrap())
            .await
            .status(),
        200
    );
    // A plain session of 2,000 messages, for the first page's paint time.
    storage.route("/ui-2.csv", vec![Reply::Body(simple_dump("ui-2", 2000))]);
    app.post_rtk(&chat_synced("ui-2", &storage.url("/ui-2.csv")))
        .await;
    // A session whose dump is gone: its ingest status shows with the error.
    storage.route(
        "/gone.csv",
        vec![Reply::Status(403, b"denied".to_vec(), vec![])],
    );
    app.post_rtk(&chat_synced("ui-gone", &storage.url("/gone.csv")))
        .await;
    let jobs = app.wait_for_jobs(Duration::from_secs(30)).await;
    let states: Vec<&str> = jobs.iter().map(|j| j.1.as_str()).collect();
    assert_eq!(states, ["done", "done", "dead"], "{jobs:?}");
    let c = &browser.client;

    // The page's own headers.
    let page = reqwest::get(format!("{}/ui/sessions/ui-1", app.address))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "img-src https: 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");

    // Sign in: a wrong token is said next to the box.
    c.goto(&format!("{}/ui/", app.address)).await.unwrap();
    browser.painted("sign-in").await;
    browser.shot("sign-in").await;
    let field = c
        .find(Locator::Css("input[type=password][name=token]"))
        .await
        .unwrap();
    field.send_keys("not-the-token-0123456789").await.unwrap();
    browser.click("#sign-in button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text_of("#token-error").await.is_empty() {
        assert!(Instant::now() < deadline, "no message for a wrong token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(browser
        .text_of("#token-error")
        .await
        .contains("not accepted"));
    browser.shot("sign-in-wrong-token").await;
    // By keyboard: the box, the token, Enter.
    field.clear().await.unwrap();
    field
        .send_keys(&format!("{READ_TOKEN}{}", fantoccini::key::Key::Enter))
        .await
        .unwrap();
    browser.painted("sessions").await;
    assert!(!c.current_url().await.unwrap().as_str().contains(READ_TOKEN));
    let stored = browser
        .js("return [sessionStorage.length, localStorage.length, document.cookie]")
        .await;
    assert_eq!(
        stored,
        serde_json::json!([1, 0, ""]),
        "kept for the tab only"
    );
    let gone = browser
        .text_of("#sessions tr:has(a[href='/ui/sessions/ui-gone'])")
        .await;
    assert!(gone.contains("dead"), "{gone}");
    assert!(
        browser
            .count("#sessions tr:has(a[href='/ui/sessions/ui-gone']) .last-error")
            .await
            == 1,
        "the last error is shown: {gone}"
    );
    let title = browser
        .text_of("#sessions a[href='/ui/sessions/ui-1']")
        .await;
    assert_eq!(title, "<i>Quarterly</i> planning", "the title as text");
    browser.shot("sessions").await;

    // The transcript: hostile text shown as text, nothing run, only http(s) links.
    browser.click("#sessions a[href='/ui/sessions/ui-1']").await;
    browser.painted("sessions").await; // the view is named by its first path segment
    browser
        .until_count(
            "#messages article",
            8,
            "the transcript never showed 8 messages",
        )
        .await;
    assert!(browser
        .text_of("#m-h1 .text")
        .await
        .contains("<script>window.__pwned='script'</script>"));
    assert!(browser.text_of("#m-h2 .text").await.contains("<img src=x"));
    // The right-to-left override is shown, not obeyed: "gpj.exe" cannot pass for "exe.jpg".
    assert_eq!(
        browser.text_of("#m-h1 .sender").await,
        HOSTILE_NAME.replace('\u{202e}', "⟦U+202E⟧")
    );
    assert_eq!(
        browser.text_of("#m-h5 .text").await,
        "first line\nsecond line about the budget",
        "line breaks kept"
    );
    assert_eq!(browser.count("#m-h1 .badge.pinned").await, 0);
    assert_eq!(browser.count("#m-h2 .badge.pinned").await, 1);
    assert_eq!(
        browser
            .text_of("#m-h8 header")
            .await
            .matches("edited")
            .count(),
        1
    );
    assert_eq!(
        browser.count("#m-h5 header .badge").await,
        0,
        "neither pinned nor edited"
    );
    assert_eq!(
        browser.js("return typeof window.__pwned").await,
        "undefined"
    );
    assert_eq!(
        browser.count("script").await,
        1,
        "only the page's own script"
    );
    assert_eq!(browser.count("#messages img[src^='javascript']").await, 0);
    let hrefs = browser
        .js("return [...document.querySelectorAll('#messages a[href]')].map(a => a.getAttribute('href'))")
        .await;
    for href in hrefs.as_array().unwrap() {
        let href = href.as_str().unwrap();
        assert!(
            href.starts_with("/ui/") || href.starts_with("https://") || href.starts_with("http://"),
            "{href}"
        );
    }
    // An https picture is linked, and shown inline only if it loads (this one cannot).
    assert_eq!(
        browser
            .count("#m-h6 a[href='https://pictures.invalid/cat.png']")
            .await,
        1
    );
    assert_eq!(
        browser.count("#m-h3 a").await,
        1,
        "the javascript: image is no link"
    );
    assert!(browser.text_of("#m-h4 .chip").await.contains("<svg onload"));
    assert!(browser.text_of("#m-h4 .chip").await.contains("2.0 KB"));
    // 10 MB of text is shown in part, saying so, and the page stays responsive.
    let huge_shown = browser
        .js("return document.querySelector('#m-h7 .text').textContent.length")
        .await;
    assert_eq!(huge_shown, serde_json::json!(20_000));
    assert!(browser
        .text_of("#m-h7 .cut")
        .await
        .contains("of 10,485,760 characters"));
    // Hovering the hostile name runs nothing either.
    browser.click("#m-h1 .sender").await;
    assert_eq!(
        browser.js("return typeof window.__pwned").await,
        "undefined"
    );
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    browser.shot("transcript").await;

    // Jump to a time: the transcript starts there (10:00:06 UTC, in the browser's zone).
    c.execute(
        "const d = new Date('2026-06-03T10:00:06.000Z');
         const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
         document.getElementById('jump').value = local;",
        vec![],
    )
    .await
    .unwrap();
    browser.click("#jump-form button[type=submit]").await;
    browser
        .until_count(
            "#messages article",
            2,
            "the jump never showed the last 2 messages",
        )
        .await;
    assert_eq!(
        browser.count("#m-h7").await + browser.count("#m-h8").await,
        2
    );
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("at=2026-06-03T10%3A00%3A06.000Z"));
    c.goto(&format!("{}/ui/sessions/ui-1", app.address))
        .await
        .unwrap();
    browser.painted("sessions").await;

    // Pinned only.
    browser.click("#pinned-only").await;
    browser
        .until_count(
            "#messages article",
            2,
            "pinned-only never showed the 2 pinned",
        )
        .await;
    assert!(c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("pinned=true"));

    // Search a word: highlighted, and the search is in the URL.
    c.goto(&format!("{}/ui/search", app.address)).await.unwrap();
    browser.painted("search").await;
    c.find(Locator::Css("#f-q"))
        .await
        .unwrap()
        .send_keys("budget")
        .await
        .unwrap();
    browser.click("#filters button[type=submit]").await;
    browser
        .until_count(
            "#results article",
            2,
            "the search never showed its 2 results",
        )
        .await;
    assert!(c.current_url().await.unwrap().as_str().contains("q=budget"));
    let marks = browser
        .js("return [...document.querySelectorAll('#results mark')].map(m => m.textContent)")
        .await;
    assert_eq!(marks, serde_json::json!(["budget", "budget"]));
    // Counted in words; the sender's id on hover, not printed beside every name; the since
    // box's hint cannot pass for a date already filled in.
    assert_eq!(browser.text_of("#result-count").await, "2 messages");
    let shown = browser
        .js("return [document.querySelectorAll('#results .uid').length, document.querySelector('#results .sender').title, document.getElementById('f-since').placeholder]")
        .await;
    assert_eq!(shown[0], 0, "{shown}");
    assert!(!shown[1].as_str().unwrap_or_default().is_empty(), "{shown}");
    assert_eq!(shown[2], "YYYY-MM-DD", "{shown}");
    browser.shot("search").await;

    // Export exactly these results.
    browser.click("#export-csv").await;
    let saved = downloads.path().join("chatsink-messages.csv");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !saved.exists() {
        assert!(Instant::now() < deadline, "the CSV export was never saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let csv = std::fs::read_to_string(&saved).unwrap();
    let ids: Vec<String> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.unwrap()[0].to_owned())
        .collect();
    assert_eq!(ids, ["h5", "h8"], "exactly the two results: {csv}");

    browser.click("#export-ndjson").await;
    let saved = downloads.path().join("chatsink-messages.ndjson");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !saved.exists() || std::fs::read_to_string(&saved).unwrap().lines().count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the NDJSON export was never saved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&saved)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = lines.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["h5", "h8"]);

    // Follow a result to its place in the transcript.
    let href = browser
        .js("return document.querySelector('#results article a[href^=\"/ui/sessions/\"]').getAttribute('href')")
        .await;
    assert!(href.as_str().unwrap().contains("#m-h"), "{href}");
    browser
        .click("#results article a[href^='/ui/sessions/']")
        .await;
    browser
        .until_count(
            "#messages article.target",
            1,
            "the result's message was never shown as the target",
        )
        .await;
    let url = c.current_url().await.unwrap();
    assert!(url.path().starts_with("/ui/sessions/ui-1"), "{url}");
    browser.shot("result-in-transcript").await;

    // An invalid q: the API's message next to the box.
    c.goto(&format!("{}/ui/search?q=%22unclosed", app.address))
        .await
        .unwrap();
    browser.painted("search").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while browser.text_of("#q-error").await.is_empty() {
        assert!(Instant::now() < deadline, "no message for an invalid q");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.shot("search-invalid-q").await;

    // Change a filter: the URL follows.
    c.goto(&format!("{}/ui/search?q=budget", app.address))
        .await
        .unwrap();
    browser.painted("search").await;
    browser.click("#f-type option[value=image]").await;
    browser.click("#filters button[type=submit]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("type=image")
    {
        assert!(Instant::now() < deadline, "the URL never took the filter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Users, one user's messages, and stats.
    c.goto(&format!("{}/ui/users", app.address)).await.unwrap();
    browser.painted("users").await;
    assert_eq!(
        browser.count("#users tbody tr").await,
        6,
        "3 in ui-1, 3 in ui-2"
    );
    browser.shot("users").await;
    c.goto(&format!("{}/ui/users/u-ann", app.address))
        .await
        .unwrap();
    browser.painted("users").await;
    assert_eq!(browser.count("#results article").await, 2);
    c.goto(&format!("{}/ui/stats?session=ui-1", app.address))
        .await
        .unwrap();
    browser.painted("stats").await;
    assert!(browser
        .text_of("#stats-total")
        .await
        .starts_with("8 message(s); 2 pinned (25.0%)"));
    let numbers = browser
        .js("return [...document.querySelectorAll('.chart svg text')].map(t => t.textContent)")
        .await;
    assert!(
        numbers.as_array().unwrap().iter().any(|n| n == "8"),
        "{numbers}"
    );
    browser.shot("stats").await;
    // A transcript's first page, loaded afresh: the time from navigation to painted.
    c.goto(&format!("{}/ui/sessions/ui-2", app.address))
        .await
        .unwrap();
    browser.painted("sessions").await;
    let painted = browser
        .js("return performance.getEntriesByName('chatsink:painted')[0].startTime")
        .await;
    assert_eq!(browser.count("#messages article").await, 200);
    let utc = browser
        .js("return document.querySelector('#messages article time').getAttribute('title')")
        .await;
    assert_eq!(utc, "2026-06-03T10:00:00.000Z (UTC)", "UTC on hover");
    // The next page on the API's cursor: the 200 after, none repeated.
    let ids = "return [...document.querySelectorAll('#messages article')].map(a => a.id)";
    let first: Vec<String> = serde_json::from_value(browser.js(ids).await).unwrap();
    c.find(Locator::LinkText("Next page"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let second: Vec<String> = loop {
        let now: Vec<String> = serde_json::from_value(browser.js(ids).await).unwrap();
        if now.len() == 200 && now != first {
            break now;
        }
        assert!(Instant::now() < deadline, "the next page never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(first.last().unwrap(), "m-ui-2-m199");
    assert_eq!(
        second.first().unwrap(),
        "m-ui-2-m200",
        "no row skipped or repeated"
    );
    assert!(c.current_url().await.unwrap().as_str().contains("cursor="));
    eprintln!("browser: a 2,000-message session's first page (200 messages) painted {painted} ms after navigation start");
    browser.shot("transcript-plain").await;
    // A narrow window still reads.
    c.set_window_size(420, 900).await.unwrap();
    c.goto(&format!("{}/ui/sessions/ui-1", app.address))
        .await
        .unwrap();
    browser.painted("sessions").await;
    browser.shot("transcript-narrow").await;

    // Addresses typed by hand: an unknown session, a malformed escape, no such page.
    for (path, says) in [
        ("/ui/sessions/no-such-session", "not found"),
        ("/ui/sessions/%E0%A4%A", "URI"),
        ("/ui/nowhere/at/all", "No page at /ui/nowhere/at/all"),
    ] {
        c.goto(&format!("{}{path}", app.address)).await.unwrap();
        let view = if says.starts_with("No page") {
            "nowhere"
        } else {
            "error"
        };
        browser.painted(view).await;
        let main = browser.text_of("#app").await;
        assert!(main.contains(says), "{path}: {main}");
    }

    // Sign out forgets the token.
    browser.click("#sign-out").await;
    browser.painted("sign-in").await;
    assert_eq!(browser.js("return sessionStorage.length").await, 0);

    let errors = browser
        .console_errors(&[
            // The wrong token, checked at sign-in.
            "/v1/sessions?limit=1 - Failed to load resource: the server responded with a status of 401",
            // The unknown session asked for by hand (its record and its messages).
            "/v1/sessions/no-such-session - Failed to load resource: the server responded with a status of 404",
            "/v1/sessions/no-such-session/messages?limit=200&order=asc - Failed to load resource: the server responded with a status of 404",
            // The invalid q.
            "/v1/messages?q=%22unclosed&limit=50 - Failed to load resource: the server responded with a status of 400",
        ])
        .await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    assert_eq!(
        browser.js("return typeof window.__pwned").await,
        "undefined"
    );
}
