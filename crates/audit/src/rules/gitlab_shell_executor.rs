//! The shell executor runs job scripts as the runner's user on the runner host, with whatever
//! the previous job left there.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-shell-executor",
        severity: Severity::High,
        description: "A GitLab runner uses the `shell` executor: job code runs directly on the \
            host as the runner's user, and files, processes and credentials persist from one job \
            to the next.",
        remediation: "Use an isolating executor (docker with a hardened `[runners.docker]`, \
            kubernetes, or an autoscaled VM executor), or wrap jobs in `stockade run` through the \
            custom executor.",
        docs_anchor: "gitlab-shell-executor",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        if let Some(("shell", pos)) = r.executor() {
            sink.report(pos, format!("runner `{}` uses the shell executor", r.name));
        }
    }
}
