//! A deploy job holds the production credentials; without `tags:` it may run on any shared
//! runner, next to jobs from any project.

use super::{Check, Rule, Sink};
use crate::models::gitlab_ci::GitlabCi;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-ci-deploy-untagged",
        severity: Severity::Medium,
        description: "A deploy or production job (by name, stage or environment) has no `tags:`, \
            so it may run on any shared runner, whose other jobs could read its secrets.",
        remediation: "Add `tags:` that pin the job to a dedicated, protected runner (and mark the \
            runner protected so only protected branches reach it).",
        docs_anchor: "gitlab-ci-deploy-untagged",
    },
    check: Check::GitlabCi(check),
    family: "GitLab CI (.gitlab-ci.yml)",
};

fn is_deploy(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    ["deploy", "production", "prod-", "release-prod"]
        .iter()
        .any(|w| s.contains(w))
        || s == "prod"
}

fn check(ci: &GitlabCi<'_>, sink: &mut Sink<'_>) {
    for job in ci.jobs() {
        // A trigger job starts a downstream pipeline; it runs on no runner.
        if job.node.get("trigger").is_some() {
            continue;
        }
        let stage = ci.lookup(job.node, "stage");
        let env = ci.lookup(job.node, "environment");
        let (Ok(stage), Ok(env)) = (stage, env) else {
            continue;
        };
        let env_name = env.and_then(|e| e.as_str().or_else(|| e.get("name").and_then(Node::as_str)));
        let env_deploy = env_name.is_some_and(|n| {
            let n = n.to_ascii_lowercase();
            n.starts_with("prod") || n.contains("production")
        }) && env
            .and_then(|e| e.get("action"))
            .and_then(Node::as_str)
            .is_none_or(|a| a == "start");
        let deploy = is_deploy(job.name) || stage.and_then(Node::as_str).is_some_and(is_deploy) || env_deploy;
        if !deploy {
            continue;
        }
        match ci.lookup(job.node, "tags") {
            Ok(Some(t)) if !t.strings().is_empty() || t.as_seq().is_some_and(|s| !s.is_empty()) => {}
            Ok(_) => sink.report(
                job.key.start,
                format!("deploy job `{}` has no tags: it may run on any shared runner", job.name),
            ),
            Err(_) => {}
        }
    }
}
