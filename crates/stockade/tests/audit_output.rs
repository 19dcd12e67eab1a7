//! End-to-end tests of what `stockade audit` prints and returns: JSON v1, SARIF 2.1.0 (checked
//! against the schema), GitHub annotations, exit codes, config files, and the generated rules page.

mod audit_support;
use audit_support::*;
use std::path::Path;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("stockade-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn json_v1_shape_and_one_based_positions() {
    let (_, v) = audit_json("k8s");
    assert_eq!(v["version"], 1);
    for f in v["findings"].as_array().unwrap() {
        let keys: Vec<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["column", "file", "line", "message", "remediation", "rule", "severity"]
        );
        assert!(f["line"].as_u64().unwrap() >= 1 && f["column"].as_u64().unwrap() >= 1);
    }
    let d = &v["diagnostics"][0];
    assert_eq!(d["kind"], "parse-error");
    assert!(d["line"].as_u64().unwrap() >= 1);
}

#[test]
fn sarif_is_valid_against_the_schema_and_carries_rule_metadata() {
    let r = run_in(&fixtures("github"), &["audit", "--format", "sarif", "."]);
    assert_eq!(r.code, 1);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let schema_text = std::fs::read_to_string(fixtures("sarif-2.1.0-subset.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema_text).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // An invalid document must fail, or the check above proves nothing.
    let mut bad = doc.clone();
    bad["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = serde_json::json!(0);
    assert!(validator.iter_errors(&bad).next().is_some());

    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| {
        r["id"] == "gha-privileged-container" && r["helpUri"].as_str().unwrap().ends_with("#gha-privileged-container")
    }));
    let res = &run["results"][0];
    let loc = &res["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], ".github/workflows/containers.yml");
    assert_eq!(loc["region"]["startLine"], 8);
    assert_eq!(loc["region"]["startColumn"], 16);
    let idx = res["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[idx]["id"], res["ruleId"]);
}

#[test]
fn github_annotations() {
    let r = run_in(&fixtures("jenkins"), &["audit", "--format", "github", "jenkins.yaml"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout.lines().next().unwrap(),
        "::warning file=jenkins.yaml,line=3,col=3,title=stockade jenkins-casc-controller-executors::medium [jenkins-casc-controller-executors] the controller has 2 executors"
    );
    assert!(r.stdout.lines().all(|l| l.starts_with("::")));
}

#[test]
fn exit_codes_follow_fail_on() {
    let dir = fixtures("jenkins");
    // jenkins.yaml has medium and high findings only.
    assert_eq!(run_in(&dir, &["audit", "jenkins.yaml"]).code, 1);
    assert_eq!(run_in(&dir, &["audit", "--fail-on", "high", "jenkins.yaml"]).code, 1);
    assert_eq!(
        run_in(&dir, &["audit", "--fail-on", "critical", "jenkins.yaml"]).code,
        0
    );
    assert_eq!(run_in(&dir, &["audit", "jenkins-hardened.yaml"]).code, 0);
    let missing = run_in(&dir, &["audit", "no-such-dir"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no-such-dir"), "{}", missing.stderr);
    assert_eq!(missing.stderr.lines().count(), 1);
    assert_eq!(run_in(&dir, &["audit", "--fail-on", "severe", "."]).code, 2);
    assert_eq!(run_in(&dir, &["audit", "--format", "markdown", "."]).code, 2);
}

#[test]
fn config_disables_ignores_and_overrides() {
    let dir = temp_dir("config");
    std::fs::copy(fixtures("jenkins").join("jenkins.yaml"), dir.join("jenkins.yaml")).unwrap();
    std::fs::write(
        dir.join(".stockade.toml"),
        "[audit]\ndisable = [\"jenkins-casc-remoting-disabled\"]\nignore = [\"jenkins.yaml:7\"]\n\
         [audit.severity]\njenkins-casc-controller-executors = \"low\"\n",
    )
    .unwrap();
    let r = run_in(&dir, &["audit", "--format", "json", "."]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let f = v["findings"].as_array().unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["rule"], "jenkins-casc-controller-executors");
    assert_eq!(f[0]["severity"], "low");
    assert_eq!(run_in(&dir, &["audit", "--fail-on", "medium", "."]).code, 0);

    std::fs::write(dir.join("bad.toml"), "[audit]\ndisable = [\"no-such-rule\"]\n").unwrap();
    let r = run_in(&dir, &["audit", "--config", "bad.toml", "."]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no-such-rule") && r.stderr.contains("bad.toml"),
        "{}",
        r.stderr
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gitignored_files_are_not_read() {
    let dir = temp_dir("gitignore");
    std::fs::create_dir_all(dir.join("vendor")).unwrap();
    std::fs::copy(
        fixtures("jenkins").join("jenkins.yaml"),
        dir.join("vendor/jenkins.yaml"),
    )
    .unwrap();
    std::fs::copy(fixtures("jenkins").join("jenkins.yaml"), dir.join("jenkins.yaml")).unwrap();
    std::fs::write(dir.join(".gitignore"), "vendor/\n").unwrap();
    let r = run_in(&dir, &["audit", "--format", "json", "."]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["file"] == "jenkins.yaml")
    );
    assert!(!v["findings"].as_array().unwrap().is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plain_output_ends_with_a_summary_and_nothing_goes_to_stderr_when_piped() {
    let r = run_in(&fixtures("jenkins"), &["audit", "jenkins.yaml"]);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().last().unwrap(),
        "3 findings (2 high, 1 medium) in 1 file"
    );
}

#[test]
fn docs_rules_md_is_generated_from_the_registry() {
    let docs = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/rules.md"));
    let r = run_in(Path::new("."), &["audit", "--list-rules", "--format", "markdown"]);
    assert_eq!(r.code, 0);
    let on_disk = std::fs::read_to_string(docs).unwrap_or_default();
    assert!(
        on_disk == r.stdout,
        "docs/rules.md is stale: regenerate it with\n  cargo run -p stockade -- audit --list-rules --format markdown > docs/rules.md"
    );
    for line in r.stdout.lines().filter(|l| l.starts_with("### ")) {
        let id = &line[4..];
        assert!(r.stdout.contains(&format!("](#{id})")), "{id} is not in the index");
    }
}
