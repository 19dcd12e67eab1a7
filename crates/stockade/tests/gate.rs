//! End-to-end tests of the job gate: `stockade gate` on job context fixtures, and
//! `stockade run --pool --context`, which refuses a job its pool refuses and otherwise runs it
//! under the pool's settings (real sandboxes, as root).

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gate");

fn fix(name: &str) -> String {
    format!("{FIX}/{name}")
}

fn stockade(args: &[&str]) -> Output {
    let o = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stockade");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn gate(ctx: &str, pool: Option<&str>) -> Output {
    let (p, c) = (fix("policy.toml"), fix(ctx));
    let mut args = vec!["gate", "--policy", &p, "--context", &c];
    if let Some(pool) = pool {
        args.extend(["--pool", pool]);
    }
    stockade(&args)
}

#[test]
fn an_admitted_job_exits_0_with_every_reason() {
    let o = gate("main-protected.json", Some("prod"));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("job 4242 (gitlab group/app refs/heads/main): admitted to pool prod")
    );
    let rules: Vec<&str> = lines.map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(
        rules,
        [
            "pools.prod.projects:",
            "pools.prod.protected_refs_only:",
            "pools.prod.refs:",
            "pools.prod.sources:",
            "pools.prod.deny_sources:",
            "pools.prod.forks:",
            "pools.prod.images:"
        ]
    );
    assert!(!out.contains("REFUSED"));
}

#[test]
fn a_refused_job_exits_123_naming_each_failed_rule() {
    let o = gate("feature-unprotected.json", Some("prod"));
    assert_eq!(o.status.code(), Some(123), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("job 4243 (gitlab group/app refs/heads/feature): refused by pools.prod.protected_refs_only: ref refs/heads/feature is not protected\n"),
        "{out}"
    );
    assert!(
        out.contains("  REFUSED  pools.prod.protected_refs_only: ref refs/heads/feature is not protected\n"),
        "{out}"
    );
    assert!(
        out.contains("  REFUSED  pools.prod.refs: ref refs/heads/feature matches none of refs"),
        "{out}"
    );
    assert!(
        out.contains("  ok       pools.prod.projects: project group/app matches \"group/app\""),
        "{out}"
    );

    // Without --pool the policy's default_pool decides: a fork's merge request is refused.
    let o = gate("fork-mr.json", None);
    assert_eq!(o.status.code(), Some(123));
    assert!(
        stdout(&o).contains("refused by pools.ci.forks: the code comes from a fork"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn json_output_carries_the_context_and_the_decision() {
    let (p, c) = (fix("policy.toml"), fix("fork-mr.json"));
    let o = stockade(&["gate", "--policy", &p, "--context", &c, "--pool", "prod", "--json"]);
    assert_eq!(o.status.code(), Some(123));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["context"]["project"], json!("other/app"));
    assert_eq!(v["gate"]["pool"], json!("prod"));
    assert_eq!(v["gate"]["allowed"], json!(false));
    let refused: Vec<&str> = v["gate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == json!(false))
        .map(|c| c["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        refused,
        [
            "pools.prod.projects",
            "pools.prod.protected_refs_only",
            "pools.prod.refs",
            "pools.prod.deny_sources",
            "pools.prod.forks"
        ]
    );
}

#[test]
fn bad_input_is_one_line_naming_the_field_and_exits_125() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--context", "bad-type.json"],
            "bad-type.json: ref_protected: expected true or false, got a string",
        ),
        (
            &["--context", "bad-field.json"],
            "bad-field.json: protected: unknown field",
        ),
        (&["--context", "missing.json"], "reading job context"),
        (
            &["--context", "main-protected.json", "--pool", "nope"],
            "pool \"nope\" is not defined in the policy (defined: ci, prod)",
        ),
        (
            &["--context", "main-protected.json", "--policy", "policy-bad.toml"],
            "policy-bad.toml:4: pools.ci.refs: invalid type: string \"main\", expected a sequence",
        ),
    ];
    for (extra, want) in cases {
        let mut args: Vec<String> = vec!["gate".into()];
        if !extra.contains(&"--policy") {
            args.extend(["--policy".into(), fix("policy.toml")]);
        }
        let mut it = extra.iter();
        while let Some(a) = it.next() {
            args.push(a.to_string());
            if *a == "--context" || *a == "--policy" {
                args.push(fix(it.next().unwrap()));
            } else if *a == "--pool" {
                args.push(it.next().unwrap().to_string());
            }
        }
        let o = stockade(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(125), "{extra:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{extra:?}: want {want:?} in {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(stdout(&o).is_empty());
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d = PathBuf::from(format!("/var/lib/stockade-tests/gate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, p: &str) -> String {
        self.0.join(p).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn run(dir: &Dir, ctx: Option<&str>, pool: Option<&str>, script: &str) -> (Output, Option<Value>) {
    let (p, state, rep) = (fix("policy.toml"), dir.path("state"), dir.path("report.json"));
    let _ = std::fs::remove_file(&rep);
    let c = ctx.map(fix);
    let mut args = vec!["run", "--state-dir", &state, "--policy", &p, "--report", &rep];
    if let Some(c) = &c {
        args.extend(["--context", c]);
    }
    if let Some(pool) = pool {
        args.extend(["--pool", pool]);
    }
    args.extend(["--", "sh", "-c", script]);
    let o = stockade(&args);
    let report = std::fs::read(&rep)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("report is JSON"));
    (o, report)
}

#[test]
fn run_refuses_a_job_its_pool_refuses_before_anything_starts() {
    need_root!();
    let dir = Dir::new("refuse");
    let marker = dir.path("ran");
    let (o, report) = run(
        &dir,
        Some("feature-unprotected.json"),
        Some("prod"),
        &format!("echo ran > {marker}; echo job-ran"),
    );
    assert_eq!(o.status.code(), Some(123), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "stockade: job refused by pools.prod.protected_refs_only: ref refs/heads/feature is not protected\n"
    );
    assert!(!stdout(&o).contains("job-ran"));
    assert!(!Path::new(&marker).exists());
    let r = report.expect("a refused job has a report");
    assert_eq!(r["outcome"]["exit_code"], json!(123));
    assert_eq!(r["context"]["gate"]["allowed"], json!(false));
    assert_eq!(r["context"]["gate"]["pool"], json!("prod"));
    assert_eq!(r["context"]["context"]["job_id"], json!("4243"));
    assert_eq!(
        r["command"],
        json!(["sh", "-c", format!("echo ran > {marker}; echo job-ran")])
    );
}

#[test]
fn run_admits_a_job_under_its_pools_settings() {
    need_root!();
    let dir = Dir::new("admit");
    let (o, report) = run(
        &dir,
        Some("main-protected.json"),
        Some("prod"),
        "echo \"pool=$STOCKADE_POOL_SAYS\"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "pool=prod-settings\n");
    let r = report.unwrap();
    assert_eq!(r["context"]["gate"]["allowed"], json!(true));
    assert_eq!(r["context"]["gate"]["pool"], json!("prod"));
    assert_eq!(r["context"]["context"]["project"], json!("group/app"));
    assert!(r["enforced"].to_string().contains("pids 77"), "{}", r["enforced"]);

    // The default pool has neither the variable nor the limit.
    let (o, report) = run(
        &dir,
        Some("main-protected.json"),
        None,
        "echo \"pool=$STOCKADE_POOL_SAYS\"",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "pool=\n");
    let r = report.unwrap();
    assert_eq!(r["context"]["gate"]["pool"], json!("ci"));
    assert!(!r["enforced"].to_string().contains("pids 77"));

    // Without --context there is no gate: the top-level policy, no context in the report.
    let (o, report) = run(&dir, None, None, "echo plain");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(report.unwrap()["context"], Value::Null);
}

#[test]
fn run_pool_without_context_is_a_setup_error() {
    need_root!();
    let dir = Dir::new("nocontext");
    let (o, _) = run(&dir, None, Some("prod"), "echo never");
    assert_eq!(o.status.code(), Some(125));
    assert_eq!(
        stderr(&o),
        "stockade: error: --pool needs --context FILE: the gate decides from the job's context\n"
    );
    let (o, _) = run(&dir, Some("bad-type.json"), None, "echo never");
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("bad-type.json: ref_protected: expected true or false"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("never"));
}
