//! The store seam holds: outside `src/store/`, no file names the SQLite driver, its pool, a
//! connection, a transaction or SQL, and none reaches past the seam into a backend. The service
//! (api, ingest, webhook, cli, startup) talks to its database through `store::Store` alone, so
//! a second backend is a second implementation below the seam, not a second copy of the service.

use regex::Regex;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every line of `src/` outside `src/store/` that breaks one of the rules, with the rule.
fn breaches(src: &Path) -> Vec<String> {
    let rules = [
        (r"\b(rusqlite|r2d2)\b", "names the SQLite driver or its pool"),
        (r"\b(Connection|Transaction|PooledConnection)\b", "names a connection or transaction"),
        (r"store::sqlite\b", "reaches past the seam into a backend"),
        (
            r#""[^"]*\b(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|PRAGMA\s|CREATE\s+(TABLE|INDEX|VIEW)|BEGIN\s+IMMEDIATE)"#,
            "holds an SQL string",
        ),
    ]
    .map(|(pattern, why)| (Regex::new(pattern).unwrap(), why));
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let store = src.join("store");
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(&store)) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (rule, why) in &rules {
                if rule.is_match(line) {
                    found.push(format!(
                        "{}:{}: {why}: {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

#[test]
fn nothing_outside_the_store_knows_which_database_it_is() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = breaches(&src);
    assert!(
        found.is_empty(),
        "the store seam is breached:\n{}",
        found.join("\n")
    );
}

/// The check itself catches each kind of breach (a check that cannot fail proves nothing).
#[test]
fn the_seam_check_finds_each_kind_of_breach() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("api")).unwrap();
    std::fs::create_dir_all(src.join("store")).unwrap();
    std::fs::write(
        src.join("api/bad.rs"),
        "use rusqlite::Connection;\nfn f(tx: &Transaction) {}\nuse crate::store::sqlite::x;\nconst Q: &str = \"SELECT id FROM messages\";\nconst U: &str = \"update jobs\"; // prose is fine\n",
    )
    .unwrap();
    std::fs::write(src.join("store/fine.rs"), "use rusqlite::Connection;\n").unwrap();
    let found = breaches(&src);
    assert_eq!(found.len(), 5, "{found:#?}");
    for why in [
        "driver",
        "connection or transaction",
        "past the seam",
        "SQL string",
    ] {
        assert!(found.iter().any(|f| f.contains(why)), "{why}: {found:#?}");
    }
    assert!(found.iter().all(|f| f.contains("bad.rs")), "{found:#?}");
}

/// The PostgreSQL binary (`tests/suite_postgres.rs`) runs the suite's files again: every module
/// of `suite/main.rs` is either in it or named there as left out on purpose.
#[test]
fn the_postgresql_suite_runs_every_backend_dependent_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let modules = |text: &str| -> Vec<String> {
        Regex::new(r"(?m)^mod (\w+);")
            .unwrap()
            .captures_iter(text)
            .map(|c| c[1].to_owned())
            .collect()
    };
    let sqlite = modules(&std::fs::read_to_string(root.join("suite/main.rs")).unwrap());
    let postgres = modules(&std::fs::read_to_string(root.join("suite_postgres.rs")).unwrap());
    // `browser`: the page reads only the /v1 API, whatever the database; it runs once.
    let left_out = [
        "browser", "bulk", "crash", "deploy", "faults", "fuzz", "postgres", "readme", "seam",
    ];
    for module in &sqlite {
        assert!(
            postgres.contains(module) || left_out.contains(&module.as_str()),
            "suite module {module} is neither in suite_postgres.rs nor left out on purpose"
        );
    }
    for module in &postgres {
        assert!(sqlite.contains(module), "{module} is not a suite module");
    }
}
