//! The operator's commands, run as the real binary: `ingest`, `reprocess`, `jobs`, `--help`.

use crate::helpers::*;
use chatsink::domain::JobState;
use std::process::{Command, Output};
use std::time::Duration;

fn chatsink(args: &[&str], db: &std::path::Path, data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(args)
        .env("CHATSINK_DATABASE", db)
        .env("CHATSINK_DATA_DIR", data_dir)
        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_documents_every_command_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    let top = stdout(&chatsink(&["--help"], &dir.path().join("x.db"), dir.path()));
    for command in ["serve", "ingest", "reprocess", "jobs"] {
        assert!(top.contains(command), "{top}");
    }
    let serve = stdout(&chatsink(
        &["serve", "--help"],
        &dir.path().join("x.db"),
        dir.path(),
    ));
    // Every variable serve reads, from the command definitions, is in its help.
    let mut every = Vec::new();
    for arg in <chatsink::config::Cli as clap::CommandFactory>::command()
        .find_subcommand("serve")
        .unwrap()
        .get_arguments()
    {
        if let Some(env) = arg.get_env() {
            every.push(env.to_string_lossy().into_owned());
        }
    }
    assert!(every.len() >= 30, "{every:?}");
    for var in &every {
        assert!(serve.contains(var.as_str()), "serve --help lacks {var}");
    }
    for var in [
        "CHATSINK_LISTEN",
        "CHATSINK_DATABASE",
        "CHATSINK_DATA_DIR",
        "CHATSINK_RTK_PUBLIC_KEY",
        "CHATSINK_RTK_PUBLIC_KEY_FILE",
        "CHATSINK_RTK_PUBLIC_KEY_URL",
        "CHATSINK_HMAC_SECRETS",
        "CHATSINK_READ_TOKENS",
        "CHATSINK_MAX_BODY_BYTES",
        "CHATSINK_DOWNLOAD_ALLOW_HOSTS",
        "CHATSINK_DOWNLOAD_ALLOW_HTTP",
        "CHATSINK_RTK_API_BASE",
        "CHATSINK_RTK_ACCOUNT_ID",
        "CHATSINK_RTK_APP_ID",
        "CHATSINK_RTK_API_TOKEN",
        "CHATSINK_WORKERS",
        "CHATSINK_LOG_FORMAT",
        "insecure-skip-verify",
    ] {
        assert!(serve.contains(var), "serve --help lacks {var}");
    }
}

#[test]
fn serve_refuses_invalid_settings_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    // Each is named by the flag that was given (the variable names it when it came from there).
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--rtk-public-key-file", "/nonexistent/key.pem"],
            "invalid setting --rtk-public-key-file",
        ),
        (
            vec!["serve", "--rtk-public-key", "not a pem"],
            "--rtk-public-key",
        ),
        (
            vec!["serve", "--hmac-secrets", "plainsecret"],
            "invalid setting --hmac-secrets",
        ),
        (
            vec!["serve", "--hmac-secrets", "whsec_!!!"],
            "invalid setting --hmac-secrets",
        ),
        (
            vec!["serve", "--download-allow-hosts", "a*.com"],
            "invalid setting --download-allow-hosts",
        ),
        (
            vec!["serve", "--read-tokens", "short"],
            "invalid setting --read-tokens",
        ),
        (
            vec!["serve", "--rtk-account-id", "only-one"],
            "invalid setting --rtk-account-id",
        ),
        (vec!["serve", "--listen", "nowhere"], "--listen"),
    ];
    for (args, expected) in cases {
        let output = chatsink(&args, &db, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(
        !db.exists(),
        "nothing was created for a refused configuration"
    );
}

#[test]
fn ingest_loads_a_multi_session_file_each_session_as_a_unit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let file = dir.path().join("backfill.csv");
    // Two sessions, the first one split in two runs, and a rejected row.
    let a = String::from_utf8(simple_dump("s-a", 6)).unwrap();
    let b = String::from_utf8(simple_dump("s-b", 4)).unwrap();
    let a_rows: Vec<&str> = a.split_inclusive("\r\n").skip(1).collect();
    let b_rows: Vec<&str> = b.split_inclusive("\r\n").skip(1).collect();
    let mut content = format!("{DUMP_HEADER}\r\n");
    content.push_str(&a_rows[..3].concat());
    content.push_str(&b_rows.concat());
    content.push_str("bad,u,s-b,m,A,0,0,TEXT_MESSAGE,x,never\r\n");
    content.push_str(&a_rows[3..].concat());
    std::fs::write(&file, &content).unwrap();

    for _ in 0..2 {
        let output = chatsink(&["ingest", file.to_str().unwrap()], &db, dir.path());
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout(&output).contains("10 row(s) loaded, 1 rejected"),
            "{}",
            stdout(&output)
        );
    }
    let archive = Archive::open(&db);
    assert_eq!(
        archive.messages_of("s-a").len(),
        6,
        "both runs of s-a are kept"
    );
    assert_eq!(archive.messages_of("s-b").len(), 4);
    assert_eq!(archive.session("s-a").unwrap().message_count, 6);
    assert_eq!(archive.session("s-b").unwrap().rejected_count, 1);
    assert_eq!(
        archive.rejected("s-a").len() + archive.rejected("s-b").len(),
        1,
        "running twice does not double rejected rows"
    );
}

#[test]
fn ingest_with_session_rejects_rows_of_other_sessions_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.db");
    let file = dir.path().join("one.csv");
    let mut content = simple_dump("s-one", 3);
    content.extend_from_slice(&simple_dump("s-other", 1)[DUMP_HEADER.len() + 2..]);
    std::fs::write(&file, &content).unwrap();
    let output = chatsink(
        &["ingest", file.to_str().unwrap(), "--session", "s-one"],
        &db,
        dir.path(),
    );
    assert!(output.status.success());
    assert!(
        stdout(&output).contains("3 row(s) loaded, 1 rejected"),
        "{}",
        stdout(&output)
    );

    let missing = chatsink(&["ingest", "/nonexistent.csv"], &db, dir.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open /nonexistent.csv"));

    let headerless = dir.path().join("bad.csv");
    std::fs::write(&headerless, "id,sessionId\nx,y\n").unwrap();
    let bad = chatsink(&["ingest", headerless.to_str().unwrap()], &db, dir.path());
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("lacks required column(s): participantId, meetingId"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_reloads_from_the_stored_dump_without_network() {
    // Writes below the store (or reads its query plans): SQLite's own storage.
    if sqlite_only("reprocess_reloads_from_the_stored_dump_without_network") {
        return;
    }
    let storage = FakeServer::start().await;
    let app = spawn_app().await;
    storage.route("/d.csv", vec![Reply::Body(simple_dump("s-re", 12))]);
    app.post_rtk(&chat_synced("s-re", &storage.url("/d.csv")))
        .await;
    app.wait_for_jobs(Duration::from_secs(20)).await;
    assert_eq!(storage.requests("/d.csv"), 1);
    // What an older parser might have left behind: a wrong text and a lost row.
    app.sqlite().unwrap()
        .execute_batch("UPDATE messages SET payload = 'garbled' WHERE id = 's-re-m3'; DELETE FROM messages WHERE id = 's-re-m4';")
        .unwrap();
    let before = storage.connections();

    let output = chatsink(
        &["reprocess", "--session", "s-re"],
        &app.db_path,
        &app.data_dir,
    );
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout(&output).contains("s-re\tok\t12 loaded"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        storage.connections(),
        before,
        "no network: the stored dump was used"
    );
    assert_eq!(app.messages_in("s-re"), 12);
    assert_eq!(
        app.archive
            .all_messages()
            .iter()
            .filter(|m| m.payload == "garbled")
            .count() as i64,
        0
    );

    // --all runs while serve runs, twice at once: no double load. Rows sit under a UNIQUE key,
    // so their count cannot show a second load; the jobs can: each new job was claimed once.
    let jobs_before = app.jobs_where(|_| true);
    let (db, data) = (app.db_path.clone(), app.data_dir.clone());
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (db, data) = (db.clone(), data.clone());
            std::thread::spawn(move || chatsink(&["reprocess", "--all"], &db, &data))
        })
        .collect();
    for run in runs {
        let output = run.join().unwrap();
        assert!(output.status.success(), "{}", stdout(&output));
    }
    assert_eq!(app.message_count(), 12);
    assert_eq!(app.jobs_where(|j| j.state != JobState::Done), 0);
    let new_jobs = app.jobs_where(|_| true) - jobs_before;
    assert!(
        (1..=2).contains(&new_jobs),
        "{new_jobs} jobs for one session"
    );
    assert_eq!(
        app.archive
            .jobs()
            .iter()
            .rev()
            .take(new_jobs as usize)
            .map(|j| i64::from(j.attempts))
            .sum::<i64>(),
        new_jobs,
        "every reprocess job was claimed and loaded exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_dead_fetches_a_fresh_url_and_jobs_lists_errors() {
    let server = FakeServer::start().await;
    let app = spawn_app().await;
    server.route(
        "/gone.csv",
        vec![Reply::Status(403, b"expired".to_vec(), vec![])],
    );
    app.post_rtk(&chat_synced("s-dead", &server.url("/gone.csv")))
        .await;
    let jobs = app.wait_for_jobs(Duration::from_secs(20)).await;
    assert_eq!(jobs[0].1, "dead");

    let listing = chatsink(&["jobs", "--state", "dead"], &app.db_path, &app.data_dir);
    assert!(listing.status.success());
    let text = stdout(&listing);
    assert!(
        text.contains("s-dead") && text.contains("dead") && text.contains("403"),
        "{text}"
    );
    let bad_state = chatsink(
        &["jobs", "--state", "sleeping"],
        &app.db_path,
        &app.data_dir,
    );
    assert!(!bad_state.status.success());

    // Without credentials reprocess fails and says so, with a non-zero exit.
    let failed = chatsink(&["reprocess", "--dead"], &app.db_path, &app.data_dir);
    assert!(!failed.status.success());
    assert!(
        stdout(&failed).contains("CHATSINK_RTK_API_TOKEN"),
        "{}",
        stdout(&failed)
    );

    // With credentials, the Chat Replay API hands out a fresh link.
    let replay = "/client/v4/accounts/acc/realtime/kit/app/sessions/s-dead/chat";
    let answer = serde_json::json!({"success": true, "data": {"chat_download_url": server.url("/fresh.csv"), "chat_download_url_expiry": "2099-01-01T00:00:00Z"}});
    server.route(
        replay,
        vec![Reply::Body(serde_json::to_vec(&answer).unwrap())],
    );
    server.route("/fresh.csv", vec![Reply::Body(simple_dump("s-dead", 5))]);
    let output = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["reprocess", "--dead"])
        .env("CHATSINK_DATABASE", &app.db_path)
        .env("CHATSINK_DATA_DIR", &app.data_dir)
        .env("CHATSINK_DOWNLOAD_ALLOW_HOSTS", "127.0.0.1")
        .env("CHATSINK_DOWNLOAD_ALLOW_HTTP", "true")
        .env("CHATSINK_RTK_API_BASE", server.url("/client/v4"))
        .env("CHATSINK_RTK_ACCOUNT_ID", "acc")
        .env("CHATSINK_RTK_APP_ID", "app")
        .env("CHATSINK_RTK_API_TOKEN", "tok")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    assert_eq!(app.messages_in("s-dead"), 5);
    assert_eq!(
        app.jobs_where(|j| j.state == JobState::Dead),
        0,
        "the dead job is superseded"
    );
    let again = chatsink(&["reprocess", "--dead"], &app.db_path, &app.data_dir);
    assert!(
        stdout(&again).contains("reprocessed 0 session(s)"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn reprocess_needs_a_selection() {
    let dir = tempfile::tempdir().unwrap();
    let output = chatsink(&["reprocess"], &dir.path().join("x.db"), dir.path());
    assert!(!output.status.success());
    let bad_time = chatsink(
        &["reprocess", "--since", "last tuesday"],
        &dir.path().join("x.db"),
        dir.path(),
    );
    assert!(!bad_time.status.success());
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("--since"));
}

#[test]
fn commands_other_than_serve_and_ingest_never_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo.db");
    for args in [
        &["jobs"][..],
        &["reprocess", "--all"],
        &["reprocess", "--dead"],
        &["reprocess", "--session", "s-1"],
    ] {
        let output = chatsink(args, &missing, dir.path());
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("no database at {}", missing.display())),
            "{args:?}: {stderr}"
        );
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[test]
fn reprocess_of_a_session_never_seen_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chatsink.db");
    chatsink::store::Store::open(&db).unwrap();
    let output = chatsink(&["reprocess", "--session", "nope"], &db, dir.path());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown session(s): nope"), "{stderr}");
    assert!(Archive::open(&db).jobs().is_empty(), "no job was created");
    let dead = chatsink(&["reprocess", "--dead"], &db, dir.path());
    assert!(dead.status.success());
    assert!(
        stdout(&dead).contains("reprocessed 0 session(s)"),
        "{}",
        stdout(&dead)
    );
}

#[test]
fn a_regenerated_read_token_file_is_0600_whatever_its_mode_was() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let token_file = data.join("read-token");
    std::fs::write(&token_file, "short\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatsink"))
        .args(["serve", "--listen", "127.0.0.1:0", "--insecure-skip-verify"])
        .env("CHATSINK_DATABASE", dir.path().join("chatsink.db"))
        .env("CHATSINK_DATA_DIR", &data)
        .env_remove("CHATSINK_READ_TOKENS")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let token = loop {
        let text = std::fs::read_to_string(&token_file).unwrap_or_default();
        if text.trim().len() >= 16 {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no token written");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(token.trim().len(), 64);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");
}

#[test]
fn backup_into_a_missing_folder_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chatsink.db");
    chatsink::store::Store::open(&db).unwrap();
    let target = dir.path().join("no-such-folder").join("b.db");
    let output = chatsink(
        &[
            "backup",
            target.to_str().unwrap(),
            "--database",
            db.to_str().unwrap(),
        ],
        &db,
        dir.path(),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("no-such-folder").count(), 2, "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}

/// A database setting is what it looks like: a typo in a directory is an error, not a new
/// empty archive (unless `--create-dirs`), and a mistyped URL is refused without its password
/// being printed or a file being made after it.
#[test]
fn a_mistyped_database_makes_nothing_and_prints_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("chatsink.db");
    let out = chatsink(&["migrate"], &missing, dir.path());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("does not exist") && said.contains("--create-dirs"),
        "{said}"
    );
    assert!(!missing.parent().unwrap().exists(), "no directory was made");
    let out = chatsink(&["migrate", "--create-dirs"], &missing, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(missing.exists());

    for url in [
        "postgresql//chatsink:pw-0xdeadbeef@127.0.0.1:55432/chatsink",
        "postgres://chatsink:pw-0xdeadbeef@/chatsink",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_chatsink"))
            .arg("migrate")
            .env("CHATSINK_DATABASE", url)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("CHATSINK_DATABASE"), "{said}");
        assert!(
            !said.contains("pw-0xdeadbeef"),
            "the password was printed: {said}"
        );
        assert!(
            !dir.path().join("postgresql").exists(),
            "a file named after the URL"
        );
    }
}
