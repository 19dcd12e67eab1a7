//! `stockade github job-started`: the GitHub Actions runner's job-started hook. It builds the job
//! context from the runner's GITHUB_* variables and event payload and stops a job its pool refuses.

use crate::cmd::gate::{load_policy, render};
use crate::exit;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::PathBuf;
use stockade_policy::JobContext;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Gate the job that is starting (ACTIONS_RUNNER_HOOK_JOB_STARTED): exit 0 to let it run,
    /// 123 with the reason when its pool refuses it.
    JobStarted(JobStartedArgs),
}

#[derive(clap::Args)]
pub struct JobStartedArgs {
    /// Policy file (TOML) with the runner's pools.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The pool this runner serves (default: the policy's default_pool).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Also write the job context (JSON) to FILE, for `stockade run --context`.
    #[arg(long, value_name = "FILE")]
    pub context_out: Option<PathBuf>,
}

pub fn main(c: Command) -> Result<i32> {
    match c {
        Command::JobStarted(a) => job_started(a),
    }
}

fn job_started(a: JobStartedArgs) -> Result<i32> {
    let policy = load_policy(a.policy.as_deref())?;
    let ctx = context_from_env(|k| std::env::var(k).ok())?;
    if let Some(out) = &a.context_out {
        std::fs::write(out, serde_json::to_vec_pretty(&ctx)?).with_context(|| format!("writing {}", out.display()))?;
    }
    let (decision, _) = stockade_policy::gate(&policy, a.pool.as_deref(), &ctx)?;
    print!("{}", render(&ctx, &decision));
    if decision.allowed {
        Ok(0)
    } else {
        eprintln!("stockade: this runner does not run this job: {}", decision.summary());
        Ok(exit::REFUSED)
    }
}

/// Events whose payload carries the pull request whose code the job may check out.
const PR_EVENTS: &[&str] = &[
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "pull_request_review_comment",
];

/// The job context from the runner's environment (`var`) and the event payload it points at.
pub fn context_from_env(var: impl Fn(&str) -> Option<String>) -> Result<JobContext> {
    let need = |k: &str| -> Result<String> {
        match var(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => bail!("{k}: not set (run this as the runner's ACTIONS_RUNNER_HOOK_JOB_STARTED hook)"),
        }
    };
    let repo = need("GITHUB_REPOSITORY")?;
    let git_ref = need("GITHUB_REF")?;
    let event = need("GITHUB_EVENT_NAME")?;
    let ref_protected = match var("GITHUB_REF_PROTECTED").as_deref() {
        Some("true") => true,
        Some("false") | Some("") | None => false,
        Some(other) => bail!("GITHUB_REF_PROTECTED: expected true or false, got {other:?}"),
    };
    let job_id = match (var("GITHUB_RUN_ID"), var("GITHUB_RUN_ATTEMPT"), var("GITHUB_JOB")) {
        (Some(run), attempt, job) => {
            let mut id = run;
            if let Some(a) = attempt.filter(|a| !a.is_empty()) {
                id = format!("{id}.{a}");
            }
            if let Some(j) = job.filter(|j| !j.is_empty()) {
                id = format!("{id}/{j}");
            }
            id
        }
        (None, _, _) => String::new(),
    };
    let mut ctx = JobContext {
        platform: "github".into(),
        project: repo.clone(),
        git_ref,
        ref_protected,
        source: event.clone(),
        from_fork: false,
        job_id,
        user: var("GITHUB_ACTOR").filter(|u| !u.is_empty()),
        image: None,
    };
    ctx.check().map_err(|(f, m)| {
        let var = match f {
            "project" => "GITHUB_REPOSITORY",
            "ref" => "GITHUB_REF",
            _ => f,
        };
        anyhow!("{var}: {m}")
    })?;

    let path = need("GITHUB_EVENT_PATH")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("GITHUB_EVENT_PATH: reading {path}"))?;
    let payload: Value = serde_json::from_str(&text).with_context(|| format!("GITHUB_EVENT_PATH {path}: not JSON"))?;
    if !payload.is_object() {
        bail!("GITHUB_EVENT_PATH {path}: expected a JSON object");
    }
    let field = |p: &str| -> Result<Option<&str>> {
        let mut v = &payload;
        for part in p.split('.') {
            match v.get(part) {
                Some(Value::Null) | None => return Ok(None),
                Some(next) => v = next,
            }
        }
        v.as_str()
            .map(Some)
            .ok_or_else(|| anyhow!("GITHUB_EVENT_PATH {path}: {p}: expected a string"))
    };
    // The payload and the runner must agree on the repository.
    if let Some(full) = field("repository.full_name")?
        && !full.eq_ignore_ascii_case(&repo)
    {
        bail!("GITHUB_EVENT_PATH {path}: repository.full_name is {full:?} but GITHUB_REPOSITORY is {repo:?}");
    }
    ctx.from_fork = if PR_EVENTS.contains(&event.as_str()) {
        if payload.get("pull_request").is_none_or(Value::is_null) {
            bail!("GITHUB_EVENT_PATH {path}: pull_request: missing for a {event} event");
        }
        // A head repository that is gone (a deleted fork) counts as a fork.
        match field("pull_request.head.repo.full_name")? {
            Some(head) => !head.eq_ignore_ascii_case(&repo),
            None => true,
        }
    } else if event == "workflow_run" {
        match field("workflow_run.head_repository.full_name")? {
            Some(head) => !head.eq_ignore_ascii_case(&repo),
            None => false,
        }
    } else {
        false
    };
    if ctx.user.is_none() {
        ctx.user = field("sender.login")?.map(String::from);
    }
    Ok(ctx)
}
