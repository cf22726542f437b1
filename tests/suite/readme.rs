//! The documents' command blocks (README.md and docs/), run verbatim (with the port swapped for a free one), so the
//! newcomer's path cannot rot.

use crate::helpers::*;
use crate::site::free_port;
use std::path::Path;
use std::process::Command;

/// The README and every document under `docs/`, as one text.
fn documents() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for doc in docs {
        text.push('\n');
        text.push_str(&std::fs::read_to_string(doc).unwrap());
    }
    text
}

/// The first ```sh block after `marker` in the README or `docs/`.
fn block(marker: &str) -> String {
    let readme = documents();
    let after = &readme[readme.find(marker).expect("marker in the documents") + marker.len()..];
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = after[start..].find("```").unwrap() + start;
    after[start..end].to_owned()
}

fn bash(script: &str, dir: &Path, envs: &[(&str, String)]) -> std::process::Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_chatsink")).parent().unwrap();
    // A hung step fails the test instead of hanging the suite.
    let mut command = Command::new("timeout");
    command
        .args(["120", "bash", "-c"])
        .arg(format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .current_dir(dir)
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("CHATSINK_") {
            command.env_remove(k);
        }
    }
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn the_walkthrough_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script =
        block("<!-- walkthrough -->").replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    // `serve` listens on its default 127.0.0.1:8080 in the README; here on a free port.
    // Its scratch directory goes under this test's own (TMPDIR), so nothing outlives it.
    let scratch = dir.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let output = bash(
        &script,
        dir.path(),
        &[
            ("CHATSINK_LISTEN", format!("127.0.0.1:{port}")),
            ("TMPDIR", scratch.display().to_string()),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("session readme-1 is loaded and queryable (200 messages)"),
        "{stdout}"
    );
    assert!(stdout.contains("\"type\":\"text\""), "{stdout}");
    assert!(stdout.contains("readme-1\tok\t200 loaded"), "{stdout}");
    assert!(stdout.contains("\nid,"), "the export's header: {stdout}");
    assert!(stdout.contains("readme-backup.db"), "the backup: {stdout}");
    // Pasted, it leaves nothing behind: not in the directory it ran from, not in its scratch.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&scratch).unwrap())
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "tmp")
        .collect();
    assert!(left.is_empty(), "the walkthrough left {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_and_openssl_recipe_signs_a_delivery_the_service_accepts() {
    let app = spawn_app().await;
    let script = block("<!-- recipe -->").replace("http://127.0.0.1:8080", &app.address);
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        bash(
            &script,
            dir.path(),
            &[("CHATSINK_HMAC_SECRETS", whsec(HMAC_KEY))],
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"status\":\"accepted\""), "{stdout}");
    assert_eq!(app.deliveries_where(|d| d.scheme == "hmac"), 1);
}

/// The error codes the source can send: the `"error": "..."` bodies of the query API, the
/// webhook's code names, and the transport refusals of src/head_limit.rs.
fn error_codes_in_source() -> std::collections::BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut codes = std::collections::BTreeSet::new();
    let mut grab = |file: &str, before: &str| {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for (at, _) in text.match_indices(before) {
            let rest = &text[at + before.len()..];
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix('"') else {
                continue;
            };
            let code: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !code.is_empty() && rest[code.len()..].starts_with('"') {
                codes.insert(code);
            }
        }
    };
    grab("api/error.rs", "\"error\":");
    grab("webhook/error.rs", "=>");
    grab("head_limit.rs", "Large\",");
    grab("head_limit.rs", "Long\",");
    codes
}

#[test]
fn every_error_code_the_service_sends_is_documented() {
    let codes = error_codes_in_source();
    assert!(codes.len() >= 15, "the scan finds the codes: {codes:?}");
    let readme = documents();
    let table = &readme[readme.find("<!-- error-codes -->").unwrap()..];
    let documented: std::collections::BTreeSet<String> = table
        .lines()
        .skip(3)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect();
    assert_eq!(
        codes, documented,
        "README's error table and the code disagree"
    );
}
