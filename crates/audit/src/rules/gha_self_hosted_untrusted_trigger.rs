//! A self-hosted runner that runs for events outsiders can cause (fork pull requests, comments,
//! workflow_run) executes their code or input on your own machine, which persists.

use super::{Check, Rule, Sink};
use crate::models::workflow::{Hosting, Workflow, hosting};
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-self-hosted-untrusted-trigger",
        severity: Severity::High,
        description: "A job runs on a self-hosted runner in a workflow that outsiders can trigger \
            (pull_request from forks, pull_request_target, issue_comment, workflow_run and similar). \
            Their code or input then runs on a machine you own and that keeps state between jobs.",
        remediation: "Run untrusted events on GitHub-hosted or ephemeral, isolated runners; keep \
            self-hosted runners for push/workflow_dispatch of trusted branches, or guard the job \
            with `if: github.event.pull_request.head.repo.full_name == github.repository`.",
        docs_anchor: "gha-self-hosted-untrusted-trigger",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

/// Events whose payload or code an outsider controls.
const UNTRUSTED: &[&str] = &[
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "issues",
    "discussion",
    "discussion_comment",
    "workflow_run",
];

/// Job conditions that keep fork events and outsiders away.
const GUARDS: &[&str] = &[
    "head.repo.full_name",
    "head.repo.fork",
    "author_association",
    "isCrossRepository",
];

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    let triggers: Vec<&str> = wf
        .triggers()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| UNTRUSTED.contains(t))
        .collect();
    if triggers.is_empty() {
        return;
    }
    for job in wf.jobs() {
        let Some(ro) = job.runs_on() else { continue };
        let guarded = job
            .node
            .get("if")
            .and_then(|n| n.as_str())
            .is_some_and(|c| GUARDS.iter().any(|g| c.contains(g)));
        if guarded {
            continue;
        }
        if ro
            .alternatives
            .iter()
            .any(|alt| hosting(alt, sink.cfg) == Hosting::SelfHosted)
        {
            sink.report(
                ro.node.start,
                format!(
                    "job `{}` runs on a self-hosted runner and the workflow runs on {}",
                    job.id,
                    triggers.join(", ")
                ),
            );
        }
    }
}
