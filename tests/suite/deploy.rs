//! deploy/ is checked with whatever validators this machine has (`.ci/run` installs them):
//! `systemd-analyze verify`, `hadolint`, `yamllint`, `kubernetes-validate`, and at least a YAML
//! parse. A missing tool is reported as skipped, never as passed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Runs a validator if installed: `None` when it is not.
fn run(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: {tool} is not installed");
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
    let kube = deploy_dir().join("kubernetes");
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&kube).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if path.file_name().unwrap() != "kustomization.yaml" {
                manifests.push(path.display().to_string());
            }
            files.push(path);
        }
    }
    assert!(manifests.len() >= 6, "{manifests:?}");
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let script =
        "import sys, yaml\nfor f in sys.argv[1:]:\n    list(yaml.safe_load_all(open(f)))\n";
    let mut args = vec!["-c", script];
    args.extend(names.iter().map(String::as_str));
    if let Some(output) = run("python3", &args) {
        if String::from_utf8_lossy(&output.stderr).contains("No module named 'yaml'") {
            eprintln!("SKIPPED: python3 has no yaml module");
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
