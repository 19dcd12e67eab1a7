//! `runner-uses-stockade`: records whether jobs reach the host only through Stockade (a GitLab
//! custom executor, or GitHub runner job hooks), which is what the other checks assume least.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::Ctx;
use crate::facts::runners::{Kind, Runner};
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-uses-stockade",
    group: Group::RunnerProcess,
    severity: Severity::Info,
    title: "Jobs run through Stockade",
    remediation: "GitLab: use executor = \"custom\" with config/prepare/run/cleanup_exec pointing at stockade. GitHub: set ACTIONS_RUNNER_HOOK_JOB_STARTED (or ACTIONS_RUNNER_CONTAINER_HOOKS) in the runner's .env to stockade.",
    run,
};

/// Ok(evidence) when this runner hands its jobs (or their start) to Stockade.
pub fn uses_stockade(r: &Runner) -> Result<String, String> {
    let mentions = |s: &str| s.to_ascii_lowercase().contains("stockade");
    match r.kind {
        Kind::GitHub => {
            let hooks: Vec<String> = r
                .github_env
                .iter()
                .filter(|(k, _)| k.starts_with("ACTIONS_RUNNER_HOOK_") || k == "ACTIONS_RUNNER_CONTAINER_HOOKS")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            match hooks.iter().find(|h| mentions(h)) {
                Some(h) => Ok(format!("{}: job hook {h}", r.label())),
                None if hooks.is_empty() => Err(format!("{}: no job hooks in its .env", r.label())),
                None => Err(format!(
                    "{}: job hooks do not call stockade: {}",
                    r.label(),
                    hooks.join(", ")
                )),
            }
        }
        Kind::GitLab => {
            let Some(cfg) = &r.gitlab else {
                return Err(format!("{}: {}", r.label(), r.notes.join("; ")));
            };
            let not: Vec<String> = cfg
                .runners
                .iter()
                .filter(|x| !(x.executor == "custom" && x.custom_execs.iter().any(|e| mentions(e))))
                .map(|x| format!("{} (executor {})", x.name, x.executor))
                .collect();
            if !not.is_empty() || cfg.runners.is_empty() {
                Err(format!("{}: not through stockade: {}", r.label(), not.join(", ")))
            } else {
                Ok(format!("{}: custom executor runs stockade ({})", r.label(), cfg.path))
            }
        }
        Kind::Jenkins => Err(format!("{}: no stockade integration for Jenkins agents", r.label())),
    }
}

/// Do this runner's jobs execute inside Stockade (so that its egress proxy applies)? A GitLab
/// custom executor or GitHub container hooks do; a job-started hook alone only observes.
pub fn executes_through_stockade(r: &Runner) -> bool {
    let mentions = |s: &str| s.to_ascii_lowercase().contains("stockade");
    match r.kind {
        Kind::GitHub => r
            .github_env
            .iter()
            .any(|(k, v)| k == "ACTIONS_RUNNER_CONTAINER_HOOKS" && mentions(v)),
        Kind::GitLab => r.gitlab.as_ref().is_some_and(|c| {
            !c.runners.is_empty()
                && c.runners
                    .iter()
                    .all(|x| x.executor == "custom" && x.custom_execs.iter().any(|e| mentions(e)))
        }),
        Kind::Jenkins => false,
    }
}

fn run(ctx: &Ctx) -> Outcome {
    for_each_runner(ctx, |r| match uses_stockade(r) {
        Ok(t) => (CheckStatus::Pass, t),
        Err(t) => (CheckStatus::Fail, t),
    })
}
