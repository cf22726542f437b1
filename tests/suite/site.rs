//! A served site for tests that run the real `chatsink serve` binary as a child process: its
//! settings, start, kill and restart on the same database, and a look into its archive.

#![allow(dead_code)] // each test binary uses a part of it

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One run of the binary on a database that outlives it.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
}

/// Where a served process keeps its state: the database and data dir under `root`; the key,
/// log and failpoint markers in a scratch dir (so a full or read-only `root` does not hide them).
pub(crate) struct Site {
    root: PathBuf,
    scratch: tempfile::TempDir,
    key_file: PathBuf,
    /// A PostgreSQL URL when the site's database is one (then `root` holds only the data dir).
    database: Option<String>,
}

impl Site {
    pub(crate) fn new() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        Self::at(scratch.path().join("state"), scratch)
    }

    /// A site whose database lives under `root` (for example a small tmpfs).
    pub(crate) fn on(root: &Path) -> Self {
        Self::at(root.to_owned(), tempfile::tempdir().unwrap())
    }

    /// An instance on the PostgreSQL database `url`, its data dir under `root` (instances may
    /// share one).
    pub(crate) fn on_postgres(url: &str, root: &Path) -> Self {
        Self {
            database: Some(url.to_owned()),
            ..Self::on(root)
        }
    }

    fn at(root: PathBuf, scratch: tempfile::TempDir) -> Self {
        std::fs::create_dir_all(&root).unwrap();
        let key_file = scratch.path().join("rtk.pem");
        std::fs::write(&key_file, public_pem(&rsa_keys().0)).unwrap();
        std::fs::create_dir_all(scratch.path().join("failpoints")).unwrap();
        Self {
            root,
            scratch,
            key_file,
            database: None,
        }
    }

    /// What `CHATSINK_DATA_DIR` says for this site.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// An instance on this suite's backend: a fresh PostgreSQL database in the PostgreSQL suite
    /// (its data dir under `root`), an SQLite file under `root` otherwise.
    pub(crate) fn on_this_backend(root: &Path) -> Self {
        let server = on_postgres()
            .then(|| {
                crate::pg::postgres(
                    "suite_postgres: a served site on PostgreSQL (run on SQLite instead)",
                )
            })
            .flatten();
        match server {
            Some(server) => Self::on_postgres(&server.fresh_database(), root),
            None => Self::on(root),
        }
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.root.join("chatsink.db")
    }

    /// What `CHATSINK_DATABASE` says for this site.
    pub(crate) fn location(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.db_path().display().to_string())
    }

    fn marker(&self, point: &str) -> PathBuf {
        self.scratch.path().join("failpoints").join(point)
    }

    /// `chatsink serve` with this site's settings, not yet started.
    pub(crate) fn command(&self, port: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatsink"));
        command
            .arg("serve")
            .env("CHATSINK_LISTEN", format!("127.0.0.1:{port}"))
            .env("CHATSINK_DATABASE", self.location())
            .env("CHATSINK_DATA_DIR", self.root.join("data"))
            .env("CHATSINK_RTK_PUBLIC_KEY_FILE", &self.key_file)
            .env("CHATSINK_DYTE_PUBLIC_KEY_FILE", &self.key_file)
            .env("CHATSINK_READ_TOKENS", READ_TOKEN)
            .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
            .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
            .env("CHATSINK_JOB_LEASE_SECS", "2")
            .env("CHATSINK_WORKERS", "1")
            .env("CHATSINK_JOB_BACKOFF_BASE_MS", "50")
            .env(
                "CHATSINK_FAILPOINT_DIR",
                self.scratch.path().join("failpoints"),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(self.scratch.path()));
        command
    }

    /// Starts the binary with one ingest worker (so jobs run in delivery order) and these
    /// failpoints armed (`name=ms,...`), and waits until it serves.
    pub(crate) async fn start(&self, failpoints: &str) -> Served {
        self.start_with(failpoints, |_| {}).await
    }

    /// The binary on chatsink's default job settings (lease, workers, backoff), as a new user
    /// runs it.
    pub(crate) async fn start_on_defaults(&self) -> Served {
        self.start_with("", |command| {
            for name in [
                "CHATSINK_JOB_LEASE_SECS",
                "CHATSINK_WORKERS",
                "CHATSINK_JOB_BACKOFF_BASE_MS",
            ] {
                command.env_remove(name);
            }
        })
        .await
    }

    pub(crate) async fn start_with(
        &self,
        failpoints: &str,
        adjust: impl Fn(&mut Command),
    ) -> Served {
        for _ in 0..5 {
            let port = free_port();
            let mut command = self.command(port);
            adjust(&mut command);
            if !failpoints.is_empty() {
                command.env("CHATSINK_FAILPOINTS", failpoints);
            }
            let mut child = command.spawn().expect("binary starts");
            let address = format!("http://127.0.0.1:{port}");
            let client = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken between free_port and bind: try another
                }
                let health = client.get(format!("{address}/healthz")).send().await;
                if health.is_ok_and(|r| r.status() == 200) {
                    return Served {
                        child,
                        address,
                        client,
                    };
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("chatsink did not start; log:\n{}", self.log());
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("serve.log")).unwrap_or_default()
    }

    pub(crate) async fn wait_for_marker(&self, point: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.marker(point).exists() {
            assert!(
                Instant::now() < deadline,
                "failpoint {point} never reached; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The site's archive through chatsink's store, opened for the call and closed after it: a
    /// test process holding the file open would keep its WAL alive and stop a remount.
    pub(crate) fn archive(&self) -> Archive {
        Archive::at(&self.location())
    }

    /// (state, attempts) of every job, oldest first.
    pub(crate) fn jobs(&self) -> Vec<(String, i64)> {
        self.archive()
            .jobs()
            .into_iter()
            .map(|j| (j.state.as_str().to_owned(), i64::from(j.attempts)))
            .collect()
    }

    pub(crate) async fn wait_until_settled(&self) -> Vec<(String, i64)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let jobs = self.jobs();
            if !jobs.is_empty() && jobs.iter().all(|(s, _)| s == "done" || s == "dead") {
                return jobs;
            }
            assert!(
                Instant::now() < deadline,
                "jobs never settled: {jobs:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asserts that the session holds exactly the dump's message ids, each once, and that an
    /// SQLite file passes its integrity check.
    pub(crate) fn assert_loaded_once(&self, session: &str, rows: usize) {
        let archive = self.archive();
        let stored = archive.messages_of(session);
        let distinct: std::collections::HashSet<&str> =
            stored.iter().map(|m| m.id.as_str()).collect();
        assert_eq!((stored.len(), distinct.len()), (rows, rows), "{session}");
        let record = archive.session(session).unwrap();
        assert_eq!(
            (record.status.as_str(), record.message_count),
            ("loaded", rows as i64)
        );
        if self.database.is_none() {
            let integrity: String = rusqlite::Connection::open(self.db_path())
                .unwrap()
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(integrity, "ok");
        }
    }

    pub(crate) fn leftover_parts(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root.join("data").join("tmp"))
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

/// A test that fails half-way must not leave its server running.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts signed deliveries to a served process; cheap to clone into sender tasks.
#[derive(Clone)]
pub(crate) struct Sender {
    client: reqwest::Client,
    address: String,
}

impl Sender {
    pub(crate) async fn post(&self, body: &[u8], id: &str) -> reqwest::Result<reqwest::Response> {
        self.post_signed_by(&rsa_keys().0, body, id).await
    }

    /// A delivery signed with `key` (RealtimeKit's is `rsa_keys().0`; any other is a forgery).
    pub(crate) async fn post_signed_by(
        &self,
        key: &rsa::RsaPrivateKey,
        body: &[u8],
        id: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}/webhooks/realtimekit", self.address))
            .header("rtk-signature", rtk_sign(key, body))
            .header("rtk-uuid", id)
            .body(body.to_vec())
            .timeout(Duration::from_secs(30))
            .send()
            .await
    }
}

impl Served {
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// GET with the read token.
    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(READ_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// SIGTERM without waiting (see [`Served::stop`]).
    pub(crate) fn terminate(&self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
    }

    pub(crate) fn sender(&self) -> Sender {
        Sender {
            client: self.client.clone(),
            address: self.address.clone(),
        }
    }

    pub(crate) async fn post(&self, body: &[u8], id: &str) -> reqwest::Result<reqwest::Response> {
        self.sender().post(body, id).await
    }

    /// SIGKILL: no shutdown hook, no WAL checkpoint, no lease release.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for the graceful exit.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_file(dir: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .unwrap()
}
