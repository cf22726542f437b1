//! deploy/ is checked with whatever validators this machine has (`.ci/run` installs them):
//! `systemd-analyze verify`, `hadolint`, `yamllint`, `kubernetes-validate`, and at least a YAML
//! parse. A missing tool is a visible skip ([`skip`]), never a pass, and under `CI=true` a
//! failure.

use crate::helpers::skip;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Runs a validator if installed: `None` (and a skip) when it is not.
fn run(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip(
                &format!("deploy check with {tool}"),
                &format!("{tool} is not installed"),
            );
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

fn assert_passed(tool: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{tool} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "chatsink.service",
        "chatsink-reprocess.service",
        "chatsink-reprocess.timer",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(name)).unwrap();
        // The unit points at the installed binary; verify against the one just built.
        let text = text.replace("/usr/local/bin/chatsink", env!("CARGO_BIN_EXE_chatsink"));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path.display().to_string());
    }
    let mut args = vec!["verify", "--man=no"];
    args.extend(units.iter().map(String::as_str));
    if let Some(output) = run("systemd-analyze", &args) {
        assert_passed("systemd-analyze verify", &output);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("Unknown") && !stderr.contains("Invalid"),
            "{stderr}"
        );
    }
}

#[test]
fn the_dockerfile_lints_clean() {
    let dockerfile = deploy_dir().join("Dockerfile");
    if let Some(output) = run("hadolint", &[dockerfile.to_str().unwrap()]) {
        assert_passed("hadolint", &output);
    }
    let text = std::fs::read_to_string(dockerfile).unwrap();
    assert!(text.contains("USER 10001"), "runs as a non-root user");
    assert!(text.contains("VOLUME [\"/data\"]"));
}

#[test]
fn every_yaml_file_parses_and_the_kubernetes_manifests_validate() {
    let mut files: Vec<PathBuf> = vec![deploy_dir().join("docker-compose.yml")];
    let mut manifests = Vec::new();
    for kube in [
        deploy_dir().join("kubernetes"),
        deploy_dir().join("kubernetes/postgres"),
    ] {
        for entry in std::fs::read_dir(&kube).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                if path.file_name().unwrap() != "kustomization.yaml" {
                    manifests.push(path.display().to_string());
                }
                files.push(path);
            }
        }
    }
    assert!(manifests.len() >= 12, "{manifests:?}");
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let script =
        "import sys, yaml\nfor f in sys.argv[1:]:\n    list(yaml.safe_load_all(open(f)))\n";
    let mut args = vec!["-c", script];
    args.extend(names.iter().map(String::as_str));
    if let Some(output) = run("python3", &args) {
        if String::from_utf8_lossy(&output.stderr).contains("No module named 'yaml'") {
            skip("YAML parse of deploy/", "python3 has no yaml module");
        } else {
            assert_passed("YAML parse", &output);
        }
    }
    let mut lint = vec!["-d", "{extends: relaxed, rules: {line-length: {max: 120}}}"];
    lint.extend(names.iter().map(String::as_str));
    if let Some(output) = run("yamllint", &lint) {
        assert_passed("yamllint", &output);
    }
    let manifest_args: Vec<&str> = manifests.iter().map(String::as_str).collect();
    if let Some(output) = run("kubernetes-validate", &manifest_args) {
        assert_passed("kubernetes-validate", &output);
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_rust_version_is_true_and_the_image_builds_with_it() {
    // The newest rust-version any locked crate built here declares must not exceed ours.
    let host = String::from_utf8(
        Command::new("rustc")
            .args(["--print", "host-tuple"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", host.trim()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_passed("cargo metadata", &output);
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let version = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let ours = env!("CARGO_PKG_RUST_VERSION");
    let (newest, by) = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                version(p["rust_version"].as_str()?),
                p["name"].as_str()?.to_owned(),
            ))
        })
        .max()
        .unwrap();
    assert!(
        newest <= version(ours),
        "{by} needs Rust {newest:?}, Cargo.toml says {ours}"
    );
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("FROM rust:{ours}-bookworm AS build")),
        "the Dockerfile's builder is pinned to rust-version {ours}"
    );
}

#[test]
fn the_image_and_the_compose_file_are_safe_by_default() {
    let ignore = read(".dockerignore");
    for entry in ["target/", "*.db", "chatsink-data/", "read-token"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains("HEALTHCHECK"),
        "the image checks its own readiness"
    );
    assert!(
        dockerfile.contains("WORKDIR /data"),
        "a writable working directory"
    );
    let compose: serde_json::Value = {
        let output = Command::new("python3")
            .args([
                "-c",
                "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
                deploy_dir().join("docker-compose.yml").to_str().unwrap(),
            ])
            .output()
            .unwrap();
        if !output.status.success() {
            skip(
                "compose file checks",
                "python3 cannot load YAML (pip install pyyaml)",
            );
            return;
        }
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let ports = compose["services"]["chatsink"]["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .all(|p| p.as_str().unwrap().starts_with("127.0.0.1:")),
        "published on loopback only: {ports:?}"
    );
    let reprocess = &compose["services"]["reprocess"];
    for variable in [
        "CHATSINK_RTK_ACCOUNT_ID",
        "CHATSINK_RTK_APP_ID",
        "CHATSINK_RTK_API_TOKEN",
    ] {
        assert!(
            reprocess["environment"].get(variable).is_some(),
            "the nightly run gets {variable}"
        );
    }
    let script = reprocess["entrypoint"].to_string();
    assert!(script.contains("tomorrow"), "runs at a set time: {script}");
}

#[test]
fn both_systemd_units_run_as_one_user() {
    let user_of = |unit: &str| -> (Option<String>, bool) {
        let text = read(&format!("deploy/systemd/{unit}"));
        let user = text
            .lines()
            .find_map(|l| l.strip_prefix("User="))
            .map(str::to_owned);
        (user, text.lines().any(|l| l.trim() == "DynamicUser=yes"))
    };
    let service = user_of("chatsink.service");
    let nightly = user_of("chatsink-reprocess.service");
    assert_eq!(service, (Some("chatsink".into()), false));
    assert_eq!(nightly, service, "the nightly run is the service's user");
    assert!(read("deploy/systemd/chatsink.sysusers").contains("u chatsink"));
}

/// A YAML file of deploy/ as JSON, or `None` after a visible skip when python3 has no PyYAML.
fn yaml(path: &str) -> Option<serde_json::Value> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            deploy_dir().join(path).to_str().unwrap(),
        ])
        .output()
        .unwrap();
    if !output.status.success() {
        skip(
            &format!("deploy/{path} checks"),
            "python3 cannot load YAML (pip install pyyaml)",
        );
        return None;
    }
    let mut documents: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(documents.len(), 1, "{path}: one document");
    documents.pop()
}

/// The several-instances variants: the compose profile runs PostgreSQL and two chatsink
/// instances on it sharing one dump store, behind a balancer, with nothing of the SQLite profile
/// started beside them; the Kubernetes variant runs more than one replica reading the database
/// URL from the Secret, with no volume claim (the dumps go to a bucket), and its kustomization
/// names only files of its own folder (kustomize refuses files outside it).
#[test]
fn the_postgres_variants_run_several_instances_on_one_database() {
    let Some(compose) = yaml("docker-compose.yml") else {
        return;
    };
    let services = compose["services"].as_object().unwrap();
    let in_profile = |profile: &str| -> Vec<&String> {
        services
            .iter()
            .filter(|(_, s)| {
                s["profiles"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|v| v == profile))
            })
            .map(|(name, _)| name)
            .collect()
    };
    assert!(
        services.values().all(|s| s["profiles"].is_array()),
        "every service is in a profile, so one profile never starts the other's"
    );
    let postgres = in_profile("postgres");
    let instances: Vec<&serde_json::Value> = postgres
        .iter()
        .map(|name| &services[name.as_str()])
        .filter(|s| s["environment"]["CHATSINK_DATABASE"].is_string())
        .collect();
    assert_eq!(instances.len(), 2, "{postgres:?}");
    for instance in &instances {
        let env = &instance["environment"];
        assert!(env["CHATSINK_DATABASE"]
            .as_str()
            .unwrap()
            .starts_with("postgres://"));
        assert_eq!(env["CHATSINK_DUMP_STORE"], "/dumps");
        assert!(instance["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "chatsink-dumps:/dumps"));
        assert!(
            instance["ports"].is_null(),
            "reached through the balancer only"
        );
    }
    assert!(postgres.iter().any(|n| n.as_str() == "postgres"));
    for service in services.values() {
        for port in service["ports"].as_array().into_iter().flatten() {
            assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{port}");
        }
    }

    let Some(deployment) = yaml("kubernetes/postgres/deployment.yaml") else {
        return;
    };
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() > 1);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let database = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CHATSINK_DATABASE")
        .expect("the database URL is set");
    assert_eq!(
        database["valueFrom"]["secretKeyRef"]["key"], "CHATSINK_DATABASE",
        "read from the Secret"
    );
    let volumes = deployment["spec"]["template"]["spec"]["volumes"].to_string();
    assert!(!volumes.contains("persistentVolumeClaim"), "{volumes}");
    let secret = yaml("kubernetes/postgres/secret.yaml").unwrap();
    assert!(secret["stringData"]["CHATSINK_DATABASE"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    let kustomization = yaml("kubernetes/postgres/kustomization.yaml").unwrap();
    for resource in kustomization["resources"].as_array().unwrap() {
        let name = resource.as_str().unwrap();
        assert!(
            !name.contains('/'),
            "{name}: kustomize loads files of its own folder only"
        );
        assert!(
            deploy_dir()
                .join("kubernetes/postgres")
                .join(name)
                .is_file(),
            "{name}"
        );
    }
}

/// The operators' kit: the alert rules pass `promtool check rules`, the dashboard is Grafana
/// JSON with a query per panel. (That each metric they name is exported: `ops.rs`.)
#[test]
fn the_alert_rules_check_and_the_dashboard_parses() {
    let rules = deploy_dir().join("monitoring/alerts.yml");
    if let Some(output) = run("promtool", &["check", "rules", rules.to_str().unwrap()]) {
        assert_passed("promtool", &output);
    }
    if let Some(output) = run(
        "yamllint",
        &[
            "-d",
            "{extends: relaxed, rules: {line-length: {max: 120}}}",
            rules.to_str().unwrap(),
        ],
    ) {
        assert_passed("yamllint", &output);
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{panels:?}");
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "{panel}"
        );
    }
}
