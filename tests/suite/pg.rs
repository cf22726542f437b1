//! A PostgreSQL server for the tests: the one `CHATSINK_TEST_POSTGRES_URL` names, or a throwaway
//! cluster this test binary starts from PostgreSQL's server binaries (`initdb`, `pg_ctl`) in a
//! temp dir and stops at exit. The server refuses to run as root, so as root the cluster is run
//! as the `postgres` user. Each test gets a database of its own.
//!
//! Without either, a PostgreSQL test says so with [`skip`] (and under `CI=true` fails).

#![allow(dead_code)]

use crate::helpers::skip;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the server binaries are looked for when no URL is given.
const SERVER_BINARIES: &[&str] = &[
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
];

pub struct PgServer {
    /// `postgres://user@host:port` without a database.
    base: String,
    /// The throwaway cluster's data dir, when this binary started one.
    cluster: Option<Cluster>,
}

struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// `pg_ctl -o` options and log file, to start it again after a stop.
    options: String,
    log: PathBuf,
    /// Stopped and removed when dropped (a private cluster; the shared one is stopped at exit).
    private: bool,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();

/// The server, or `None` after a visible skip of `test`.
pub fn postgres(test: &str) -> Option<&'static PgServer> {
    match SERVER.get_or_init(start) {
        Ok(server) => Some(server),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

impl PgServer {
    /// A new, empty database on the server, as a URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("chatsink_test_{}", uuid::Uuid::new_v4().simple());
        let admin = format!("{}/postgres", self.base);
        let output = Command::new(self.psql())
            .arg(&admin)
            .args(["-v", "ON_ERROR_STOP=1", "-qc"])
            .arg(format!("CREATE DATABASE {name}"))
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        format!("{}/{name}", self.base)
    }

    /// The throwaway cluster's data directory (none for a server named by URL).
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.cluster.as_ref().map(|c| c.data.clone())
    }

    fn psql(&self) -> PathBuf {
        match &self.cluster {
            Some(c) => c.bin.join("psql"),
            None => PathBuf::from("psql"),
        }
    }

    /// Copies the database at `from` into a new one, as a backup restored with `pg_dump` and
    /// `pg_restore` would be, and returns the new one's URL.
    pub fn dump_and_restore(&self, from: &str) -> String {
        let bin = |name: &str| match &self.cluster {
            Some(c) => c.bin.join(name),
            None => PathBuf::from(name),
        };
        let to = self.fresh_database();
        let dump = Command::new(bin("pg_dump"))
            .args(["--format=custom", from])
            .output()
            .expect("pg_dump runs");
        assert!(
            dump.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        let mut restore = Command::new(bin("pg_restore"))
            .args(["--no-owner", "--exit-on-error", "-d", &to])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("pg_restore runs");
        use std::io::Write;
        restore
            .stdin
            .take()
            .unwrap()
            .write_all(&dump.stdout)
            .unwrap();
        let restored = restore.wait_with_output().unwrap();
        assert!(
            restored.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&restored.stderr)
        );
        to
    }

    /// Runs SQL on `url` with psql and returns what it printed (unaligned, tuples only).
    pub fn sql(&self, url: &str, sql: &str) -> String {
        let output = Command::new(self.psql())
            .arg(url)
            .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

fn start() -> Result<PgServer, String> {
    if let Ok(url) = std::env::var("CHATSINK_TEST_POSTGRES_URL") {
        let base = url.trim_end_matches('/').to_owned();
        // A URL may name a database; the tests make their own beside it.
        let base = match base.rsplit_once('/') {
            Some((head, _)) if head.contains("://") && head.len() > "postgres://".len() => {
                head.to_owned()
            }
            _ => base,
        };
        return Ok(PgServer {
            base,
            cluster: None,
        });
    }
    let server = start_cluster("shared", false)?;
    // SAFETY: registers a plain function with no captured state to run at process exit.
    unsafe {
        libc::atexit(stop_cluster);
    }
    Ok(server)
}

/// A cluster of this test's own, to stop and start again (an outage) without disturbing the
/// others; `None` after a visible skip when no server binaries are installed.
pub fn private_cluster(test: &str) -> Option<PgServer> {
    match start_cluster(&uuid::Uuid::new_v4().simple().to_string(), true) {
        Ok(server) => Some(server),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

fn start_cluster(tag: &str, private: bool) -> Result<PgServer, String> {
    let Some(bin) = SERVER_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|b| b.join("initdb").is_file())
    else {
        return Err(format!(
            "no PostgreSQL: set CHATSINK_TEST_POSTGRES_URL, or install the server (apt-get install \
             postgresql) so its binaries are in one of {SERVER_BINARIES:?}"
        ));
    };
    let as_postgres = unsafe { libc::geteuid() } == 0;
    let dir = std::env::temp_dir().join(format!("chatsink-pg-{}-{tag}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if as_postgres {
        chown_postgres(&dir)?;
    }
    let port = crate::site::free_port();
    let run = |program: &str, args: &[&str]| -> Result<(), String> {
        let mut command = if as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin.join(program));
            c
        } else {
            Command::new(bin.join(program))
        };
        let output = command
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let data_arg = data.to_str().unwrap();
    run(
        "initdb",
        &[
            "-D",
            data_arg,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
        dir.display()
    );
    run(
        "pg_ctl",
        &[
            "-D",
            data_arg,
            "-o",
            &options,
            "-l",
            dir.join("server.log").to_str().unwrap(),
            "-w",
            "start",
        ],
    )?;
    Ok(PgServer {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
        cluster: Some(Cluster {
            bin: bin.clone(),
            data: data.clone(),
            as_postgres,
            options,
            log: dir.join("server.log"),
            private,
        }),
    })
}

impl Cluster {
    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(pg_ctl);
            c
        } else {
            Command::new(pg_ctl)
        };
        command
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("pg_ctl runs")
    }
}

impl PgServer {
    /// `pg_ctl -m immediate stop`: the server goes away as in a crash.
    pub fn crash(&self) {
        let cluster = self.cluster.as_ref().expect("a cluster of the tests' own");
        let out = cluster.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a stopped cluster again on the same port.
    pub fn restart(&self) {
        let cluster = self.cluster.as_ref().expect("a cluster of the tests' own");
        let log = cluster.log.to_str().unwrap().to_owned();
        let out = cluster.pg_ctl(&["-o", &cluster.options, "-l", &log, "-w", "start"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.as_ref().filter(|c| c.private) {
            let _ = cluster.pg_ctl(&["-m", "immediate", "stop"]);
            if let Some(dir) = cluster.data.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

fn chown_postgres(dir: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()
        .map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("cannot chown {} to postgres", dir.display()))
}

/// Stops the throwaway cluster (immediate: its data is thrown away) and removes it.
extern "C" fn stop_cluster() {
    let Some(Ok(PgServer {
        cluster: Some(cluster),
        ..
    })) = SERVER.get()
    else {
        return;
    };
    let pg_ctl = cluster.bin.join("pg_ctl");
    let data = cluster.data.to_str().unwrap_or_default();
    let mut command = if cluster.as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl);
        c
    } else {
        Command::new(pg_ctl)
    };
    let _ = command
        .args(["-D", data, "-m", "immediate", "stop"])
        .output();
    if let Some(dir) = cluster.data.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_throwaway_postgres_cluster_starts_and_gives_each_test_its_own_database() {
    let Some(server) = postgres("pg::a_throwaway_postgres_cluster_starts") else {
        return;
    };
    let (one, two) = (server.fresh_database(), server.fresh_database());
    assert_ne!(one, two);
    server.sql(&one, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(server.sql(&one, "SELECT count(*) FROM t"), "1");
    assert_eq!(
        server.sql(&two, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0"
    );
}
