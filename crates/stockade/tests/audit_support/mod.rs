//! Shared helpers of the `audit_*` end-to-end tests: run the real binary on fixture trees.
//! Each test file uses a few of them, hence the dead-code allowance.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn fixtures(family: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/audit")).join(family)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `stockade ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_stockade"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("run stockade");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `stockade audit --format json .` in a fixture family, parsed.
pub fn audit_json(family: &str) -> (i32, serde_json::Value) {
    let r = run_in(&fixtures(family), &["audit", "--format", "json", "."]);
    assert!(r.stderr.is_empty(), "stderr: {}", r.stderr);
    let v = serde_json::from_str(&r.stdout).expect("JSON output");
    (r.code, v)
}

/// (rule, file, line) of every finding.
pub fn hits(v: &serde_json::Value) -> BTreeSet<(String, String, u64)> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["file"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every rule whose id starts with `prefix` fires at least once on the family's fixtures.
pub fn assert_every_rule_fires(v: &serde_json::Value, prefixes: &[&str]) {
    let fired: BTreeSet<String> = hits(v).into_iter().map(|h| h.0).collect();
    let listed = run_in(Path::new("."), &["audit", "--list-rules", "--format", "json"]);
    let rules: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    for r in rules.as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        if prefixes.iter().any(|p| id.starts_with(p)) {
            assert!(fired.contains(id), "rule {id} never fires on its fixtures: {fired:?}");
        }
    }
}

/// No finding of any rule in `file`.
pub fn assert_silent(v: &serde_json::Value, file: &str) {
    let noisy: Vec<_> = hits(v).into_iter().filter(|h| h.1 == file).collect();
    assert!(noisy.is_empty(), "{file} should have no finding: {noisy:?}");
}
