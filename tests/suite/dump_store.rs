//! `CHATSINK_DUMP_STORE`: where raw dumps are kept for `reprocess`. A directory of its own, an
//! S3 bucket on a real S3-speaking server (moto, started on loopback), or none (a reprocess
//! downloads again through the Chat Replay API). The real binary, on this suite's backend.

use crate::helpers::*;
use crate::site::Site;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `chatsink reprocess --session S` on the site's database with a data dir and extra settings.
fn reprocess(site: &Site, session: &str, data_dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["reprocess", "--session", session])
        .env("CHATSINK_DATABASE", site.location())
        .env("CHATSINK_DATA_DIR", data_dir)
        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
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

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A directory of its own: the dump goes there (nothing under the data dir's `dumps`), and a
/// reprocess from another data dir that names the same store loads it without the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_store_directory_keeps_the_dumps_and_reprocess_reads_them_there() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let store = root.path().join("shared-dumps");
    let shown = store.display().to_string();
    let served = site
        .start_with("", |c| {
            c.env("CHATSINK_DUMP_STORE", &shown);
        })
        .await;
    let storage = FakeServer::start().await;
    let dump = simple_dump("ds-dir", 9);
    storage.route("/d.csv", vec![Reply::Body(dump.clone())]);
    let response = served
        .post(&chat_synced("ds-dir", &storage.url("/d.csv")), "ds-dir")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    site.wait_until_settled().await;
    site.assert_loaded_once("ds-dir", 9);
    let key = format!("ds-dir/{}.csv", sha256_hex(&dump));
    assert_eq!(files_under(&store), vec![key.clone()]);
    assert_eq!(std::fs::read(store.join(&key)).unwrap(), dump);
    assert_eq!(
        files_under(&site.data_dir().join("dumps")),
        Vec::<String>::new()
    );
    assert_eq!(site.archive().dump("ds-dir").unwrap().key, Some(key));
    served.stop();

    let elsewhere = tempfile::tempdir().unwrap();
    let before = storage.connections();
    let output = reprocess(
        &site,
        "ds-dir",
        elsewhere.path(),
        &[("CHATSINK_DUMP_STORE", &shown)],
    );
    assert!(output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("ds-dir\tok\t9 loaded"),
        "{}",
        said(&output)
    );
    assert_eq!(storage.connections(), before, "the kept dump was used");
}

/// `none`: nothing is kept (no dump file, no working file left, no key recorded), and a
/// reprocess downloads again: the delivery's link, and once that has expired, a fresh one from
/// the Chat Replay API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_dump_store_nothing_is_kept_and_reprocess_downloads_again() {
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let served = site
        .start_with("", |c| {
            c.env("CHATSINK_DUMP_STORE", "none");
        })
        .await;
    let storage = FakeServer::start().await;
    // The delivery's link works once, then has expired (as a pre-signed S3 link does).
    storage.route(
        "/d.csv",
        vec![
            Reply::Body(simple_dump("ds-none", 6)),
            Reply::Status(403, b"expired".to_vec(), vec![]),
        ],
    );
    served
        .post(&chat_synced("ds-none", &storage.url("/d.csv")), "ds-none")
        .await
        .unwrap();
    site.wait_until_settled().await;
    site.assert_loaded_once("ds-none", 6);
    assert_eq!(
        files_under(&site.data_dir()),
        Vec::<String>::new(),
        "nothing kept, nothing left"
    );
    assert_eq!(site.archive().dump("ds-none"), None);
    served.stop();

    let replay = "/client/v4/accounts/acc/realtime/kit/app/sessions/ds-none/chat";
    let answer = serde_json::json!({"success": true, "data": {
        "chat_download_url": storage.url("/again.csv"),
        "chat_download_url_expiry": "2099-01-01T00:00:00Z"}});
    storage.route(
        replay,
        vec![Reply::Body(serde_json::to_vec(&answer).unwrap())],
    );
    storage.route("/again.csv", vec![Reply::Body(simple_dump("ds-none", 6))]);
    let base = storage.url("/client/v4");
    let output = reprocess(
        &site,
        "ds-none",
        &site.data_dir(),
        &[
            ("CHATSINK_DUMP_STORE", "none"),
            ("CHATSINK_RTK_API_BASE", &base),
            ("CHATSINK_RTK_ACCOUNT_ID", "acc"),
            ("CHATSINK_RTK_APP_ID", "app"),
            ("CHATSINK_RTK_API_TOKEN", "tok"),
        ],
    );
    assert!(output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("ds-none\tok\t6 loaded"),
        "{}",
        said(&output)
    );
    assert_eq!(
        (
            storage.requests("/d.csv"),
            storage.requests(replay),
            storage.requests("/again.csv")
        ),
        (2, 1, 1),
        "nothing kept: the link again, then the Chat Replay API"
    );
    assert_eq!(files_under(&site.data_dir()), Vec::<String>::new());
}

/// A real S3-speaking server on loopback: moto in server mode (PyPI's `moto[server]`).
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto on a free port, or `None` after a visible skip (a failure under `CI=true`).
async fn moto(test: &str) -> Option<Moto> {
    let port = crate::site::free_port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            skip(
                test,
                &format!("moto_server cannot start ({e}); pip install 'moto[server]'"),
            );
            return None;
        }
    };
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{}/", moto.endpoint))
            .send()
            .await
            .is_ok()
        {
            return Some(moto);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not answer on {}", moto.endpoint);
}

const AWS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing-key-id"),
    ("AWS_SECRET_ACCESS_KEY", "testing-secret-key"),
    ("AWS_REGION", "us-east-1"),
];

/// An S3 bucket: the dump is uploaded under the prefix before the load commits, the data dir
/// keeps no copy, and a reprocess with a data dir of its own (an instance that shares nothing)
/// loads the session from the bucket without touching RealtimeKit's storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_dump_store_keeps_the_dumps_in_the_bucket_for_instances_that_share_nothing() {
    let Some(moto) = moto("dump_store::an_s3_dump_store_keeps_the_dumps_in_the_bucket").await
    else {
        return;
    };
    let client = reqwest::Client::new();
    let made = client
        .put(format!("{}/chat-dumps", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(made.status().is_success(), "{made:?}");
    let root = tempfile::tempdir().unwrap();
    let site = Site::on_this_backend(root.path());
    let endpoint = moto.endpoint.clone();
    let served = site
        .start_with("", |c| {
            c.env("CHATSINK_DUMP_STORE", "s3://chat-dumps/archive/eu")
                .env("AWS_ENDPOINT_URL", &endpoint)
                .envs(AWS);
        })
        .await;
    let storage = FakeServer::start().await;
    let dump = simple_dump("ds-s3", 11);
    storage.route("/d.csv", vec![Reply::Body(dump.clone())]);
    served
        .post(&chat_synced("ds-s3", &storage.url("/d.csv")), "ds-s3")
        .await
        .unwrap();
    site.wait_until_settled().await;
    site.assert_loaded_once("ds-s3", 11);
    let key = format!("ds-s3/{}.csv", sha256_hex(&dump));
    let object = client
        .get(format!("{}/chat-dumps/archive/eu/{key}", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(object.status(), 200);
    assert_eq!(
        object.bytes().await.unwrap(),
        dump,
        "the bucket holds the dump's bytes"
    );
    assert_eq!(
        files_under(&site.data_dir()),
        Vec::<String>::new(),
        "no local copy, no leftovers"
    );
    assert_eq!(site.archive().dump("ds-s3").unwrap().key, Some(key));
    served.stop();

    let elsewhere = tempfile::tempdir().unwrap();
    let before = storage.connections();
    let mut env = vec![
        ("CHATSINK_DUMP_STORE", "s3://chat-dumps/archive/eu"),
        ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
    ];
    env.extend(AWS);
    let output = reprocess(&site, "ds-s3", elsewhere.path(), &env);
    assert!(output.status.success(), "{}", said(&output));
    assert!(
        said(&output).contains("ds-s3\tok\t11 loaded"),
        "{}",
        said(&output)
    );
    assert_eq!(storage.connections(), before, "loaded from the bucket");
    assert_eq!(
        files_under(elsewhere.path()),
        Vec::<String>::new(),
        "the working copy is gone"
    );

    // The bucket unreachable: the delivery is acknowledged, its job waits and retries, and
    // the error names the dump store.
    drop(moto);
    let served = site
        .start_with("", |c| {
            c.env("CHATSINK_DUMP_STORE", "s3://chat-dumps/archive/eu")
                .env("AWS_ENDPOINT_URL", &endpoint)
                .envs(AWS);
        })
        .await;
    storage.route("/d2.csv", vec![Reply::Body(simple_dump("ds-s3-down", 3))]);
    let response = served
        .post(
            &chat_synced("ds-s3-down", &storage.url("/d2.csv")),
            "ds-s3-down",
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let jobs = site.archive().jobs();
        if let Some(job) = jobs
            .into_iter()
            .find(|j| j.session_id == "ds-s3-down" && j.last_error.is_some())
        {
            break job;
        }
        assert!(Instant::now() < deadline, "{}", site.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(job.state, chatsink::domain::JobState::Dead, "{job:?}");
    assert!(
        job.last_error
            .as_deref()
            .unwrap()
            .contains("s3://chat-dumps/archive/eu"),
        "{job:?}"
    );
    assert_eq!(site.archive().messages_of("ds-s3-down").len(), 0);
    served.stop();
}
