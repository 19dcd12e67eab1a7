//! End-to-end tests of `stockade github job-started`, the GitHub Actions runner's job-started
//! hook: the real binary with the environment the runner gives a hook and event payload fixtures
//! (fork pull requests, pull_request_target, issue_comment, pushes to protected branches).

use serde_json::{Value, json};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/github");

/// The variables the runner sets for a job, as the hook sees them.
struct Job<'a> {
    event: &'a str,
    payload: &'a str,
    git_ref: &'a str,
    protected: &'a str,
    repo: &'a str,
}

fn job<'a>(event: &'a str, payload: &'a str, git_ref: &'a str) -> Job<'a> {
    Job {
        event,
        payload,
        git_ref,
        protected: "false",
        repo: "acme/app",
    }
}

fn hook(j: &Job, pool: Option<&str>, extra: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.args(["github", "job-started", "--policy", &format!("{FIX}/policy.toml")]);
    if let Some(p) = pool {
        c.args(["--pool", p]);
    }
    c.args(extra);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", j.repo)
        .env("GITHUB_REF", j.git_ref)
        .env("GITHUB_REF_PROTECTED", j.protected)
        .env("GITHUB_EVENT_NAME", j.event)
        .env("GITHUB_EVENT_PATH", format!("{FIX}/events/{}", j.payload))
        .env("GITHUB_RUN_ID", "1234")
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", "build")
        .env("GITHUB_ACTOR", "alice");
    let o = c.stdin(Stdio::null()).output().expect("run stockade");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));
    o
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn assert_refused(o: &Output, rule: &str) {
    assert_eq!(o.status.code(), Some(123), "{}", out(o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "stockade: this runner does not run this job: refused by {rule}: "
        )),
        "want {rule} in {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_push_to_protected_main_runs_on_the_deploy_pool() {
    let mut j = job("push", "push-main.json", "refs/heads/main");
    j.protected = "true";
    let o = hook(&j, Some("prod"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .starts_with("job 1234.1/build (github acme/app refs/heads/main): admitted to pool prod\n"),
        "{}",
        out(&o)
    );
}

#[test]
fn an_unprotected_branch_never_reaches_the_deploy_pool() {
    let o = hook(&job("push", "push-main.json", "refs/heads/feature"), Some("prod"), &[]);
    assert_refused(&o, "pools.prod.protected_refs_only");
    // GITHUB_REF_PROTECTED unset (an older runner) counts as unprotected.
    let mut c = Command::new(BIN);
    let o = c
        .args([
            "github",
            "job-started",
            "--policy",
            &format!("{FIX}/policy.toml"),
            "--pool",
            "prod",
        ])
        .env_clear()
        .env("GITHUB_REPOSITORY", "acme/app")
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", format!("{FIX}/events/push-main.json"))
        .output()
        .unwrap();
    assert_refused(&o, "pools.prod.protected_refs_only");
}

#[test]
fn a_pull_request_from_a_fork_is_refused_where_forks_are() {
    let j = job("pull_request", "pull-request-fork.json", "refs/pull/7/merge");
    assert_refused(&hook(&j, None, &[]), "pools.ci.forks");
    // The pool for outside contributions takes it.
    let o = hook(&j, Some("public"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("ok       pools.public.forks: the code comes from a fork, and forks = true"));
    // A pull request from a branch of the repository itself is no fork.
    let o = hook(
        &job("pull_request", "pull-request-same-repo.json", "refs/pull/8/merge"),
        None,
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    // A fork that was deleted since still is one.
    let j = job("pull_request", "pull-request-deleted-fork.json", "refs/pull/9/merge");
    assert_refused(&hook(&j, None, &[]), "pools.ci.forks");
}

#[test]
fn untrusted_triggers_are_refused_by_deny_sources() {
    let j = job("pull_request_target", "pull-request-fork.json", "refs/heads/main");
    let o = hook(&j, None, &[]);
    assert_refused(&o, "pools.ci.deny_sources");
    // Every failed rule is listed, not only the first.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("REFUSED  pools.ci.forks"),
        "{}",
        out(&o)
    );
    assert_refused(
        &hook(
            &job("pull_request_target", "pull-request-fork.json", "refs/heads/main"),
            Some("public"),
            &[],
        ),
        "pools.public.deny_sources",
    );
    assert_refused(
        &hook(
            &job("issue_comment", "issue-comment.json", "refs/heads/main"),
            None,
            &[],
        ),
        "pools.ci.deny_sources",
    );
    let mut j = job("workflow_run", "workflow-run-fork.json", "refs/heads/main");
    j.protected = "true";
    assert_refused(&hook(&j, Some("prod"), &[]), "pools.prod.deny_sources");
    assert_refused(&hook(&j, None, &[]), "pools.ci.forks");
}

#[test]
fn another_repository_is_refused_by_projects() {
    let mut j = job("push", "push-main.json", "refs/heads/main");
    j.repo = "other/app";
    let payload = std::fs::read_to_string(format!("{FIX}/events/push-main.json")).unwrap();
    let dir = std::env::temp_dir().join(format!("stockade-github-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("event.json");
    std::fs::write(&p, payload.replace("acme/app", "other/app")).unwrap();
    let rel = p.display().to_string();
    let mut c = Command::new(BIN);
    let o = c
        .args(["github", "job-started", "--policy", &format!("{FIX}/policy.toml")])
        .env_clear()
        .env("GITHUB_REPOSITORY", j.repo)
        .env("GITHUB_REF", j.git_ref)
        .env("GITHUB_EVENT_NAME", j.event)
        .env("GITHUB_EVENT_PATH", &rel)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_refused(&o, "pools.ci.projects");
}

#[test]
fn the_context_it_builds_feeds_stockade_gate() {
    let dir = std::env::temp_dir().join(format!("stockade-github-ctx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ctx = dir.join("job.json");
    let j = job("pull_request", "pull-request-fork.json", "refs/pull/7/merge");
    let o = hook(&j, Some("public"), &["--context-out", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v: Value = serde_json::from_slice(&std::fs::read(&ctx).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"platform": "github", "project": "acme/app", "ref": "refs/pull/7/merge",
            "ref_protected": false, "source": "pull_request", "from_fork": true,
            "job_id": "1234.1/build", "user": "alice"})
    );
    let g = Command::new(BIN)
        .args([
            "gate",
            "--policy",
            &format!("{FIX}/policy.toml"),
            "--context",
            ctx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(g.status.code(), Some(123));
    assert!(String::from_utf8_lossy(&g.stdout).contains("refused by pools.ci.forks"));
}

#[test]
fn bad_input_is_one_line_naming_the_variable_or_field_and_exits_125() {
    let base = || job("push", "push-main.json", "refs/heads/main");
    let cases: Vec<(Job, &str)> = vec![
        (Job { repo: "", ..base() }, "GITHUB_REPOSITORY: not set"),
        (
            Job { repo: "acme", ..base() },
            "GITHUB_REPOSITORY: \"acme\" is not a project path",
        ),
        (
            Job {
                git_ref: "main",
                ..base()
            },
            "GITHUB_REF: \"main\" is not a full ref",
        ),
        (
            Job {
                protected: "maybe",
                ..base()
            },
            "GITHUB_REF_PROTECTED: expected true or false, got \"maybe\"",
        ),
        (
            Job {
                payload: "missing.json",
                ..base()
            },
            "GITHUB_EVENT_PATH: reading",
        ),
        (
            Job {
                payload: "not-json.json",
                ..base()
            },
            "not-json.json: not JSON",
        ),
        (
            Job {
                payload: "other-repo.json",
                ..base()
            },
            "repository.full_name is \"evil/app\" but GITHUB_REPOSITORY is \"acme/app\"",
        ),
        (
            Job {
                event: "pull_request",
                payload: "pull-request-no-pr.json",
                ..base()
            },
            "pull_request: missing for a pull_request event",
        ),
    ];
    for (j, want) in cases {
        let o = hook(&j, None, &[]);
        assert_eq!(o.status.code(), Some(125), "{want}: {}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "want {want:?} in {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let o = Command::new(BIN)
        .args([
            "github",
            "job-started",
            "--policy",
            &format!("{FIX}/policy.toml"),
            "--pool",
            "nope",
        ])
        .env("GITHUB_REPOSITORY", "acme/app")
        .env("GITHUB_REF", "refs/heads/main")
        .env("GITHUB_EVENT_NAME", "push")
        .env("GITHUB_EVENT_PATH", format!("{FIX}/events/push-main.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(out(&o).contains("pool \"nope\" is not defined in the policy (defined: ci, prod, public)"));
}
