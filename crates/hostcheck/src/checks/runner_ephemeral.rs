//! `runner-ephemeral`: a runner that takes one job and is thrown away cannot carry one job's
//! compromise into the next; a persistent runner or GitLab's shell executor can.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::Ctx;
use crate::facts::runners::Kind;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-ephemeral",
    group: Group::RunnerProcess,
    severity: Severity::High,
    title: "Runner is ephemeral (one job per runner)",
    remediation: "Register GitHub runners with --ephemeral or start them from a JIT config; use a GitLab executor other than shell (docker, kubernetes, or a custom executor such as stockade).",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    for_each_runner(ctx, |r| match r.kind {
        Kind::GitHub => {
            if r.jit {
                return (
                    CheckStatus::Pass,
                    format!("{}: started from a JIT config (--jitconfig)", r.label()),
                );
            }
            match &r.github {
                Some(s) if s.ephemeral => (
                    CheckStatus::Pass,
                    format!("{}: registered --ephemeral ({})", r.label(), s.path),
                ),
                Some(s) => (
                    CheckStatus::Fail,
                    format!("{}: persistent: {} has no \"ephemeral\": true", r.label(), s.path),
                ),
                None => (CheckStatus::Unknown, format!("{}: {}", r.label(), r.notes.join("; "))),
            }
        }
        Kind::GitLab => match &r.gitlab {
            None => (CheckStatus::Unknown, format!("{}: {}", r.label(), r.notes.join("; "))),
            Some(cfg) if cfg.runners.is_empty() => (
                CheckStatus::Unknown,
                format!("{}: no [[runners]] in {}", r.label(), cfg.path),
            ),
            Some(cfg) => {
                let all: Vec<String> = cfg
                    .runners
                    .iter()
                    .map(|x| format!("{} executor={}", x.name, x.executor))
                    .collect();
                let shell: Vec<&str> = cfg
                    .runners
                    .iter()
                    .filter(|x| x.executor == "shell" || x.executor.is_empty())
                    .map(|x| x.name.as_str())
                    .collect();
                let text = format!("{}: {} ({})", r.label(), all.join(", "), cfg.path);
                if shell.is_empty() {
                    (CheckStatus::Pass, text)
                } else {
                    (
                        CheckStatus::Fail,
                        format!("{text}: shell executor runs jobs directly on the host"),
                    )
                }
            }
        },
        Kind::Jenkins => (
            CheckStatus::Warn,
            format!(
                "{}: a Jenkins agent carries no single-use marker on the host; use cloud agents that are destroyed after one build",
                r.label()
            ),
        ),
    })
}
