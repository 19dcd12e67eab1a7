//! Build pods inherit the namespace's default service account token unless told otherwise; what
//! that account may do in the cluster, every job may do.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-default-service-account",
        severity: Severity::Medium,
        description: "A Kubernetes-executor runner starts build pods with the namespace's \
            `default` service account (`service_account` unset or \"default\").",
        remediation: "Create a dedicated service account with no RBAC bindings (and \
            `automountServiceAccountToken: false`) and set `service_account` to it.",
        docs_anchor: "gitlab-k8s-default-service-account",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(k) = r.kubernetes() else { continue };
        match k.get("service_account") {
            Some(n) if !matches!(n.as_str(), Some("" | "default")) => {}
            Some(n) => sink.report(n.pos, format!("runner `{}` uses the default service account", r.name)),
            None => sink.report(
                k.pos,
                format!("runner `{}`: no service_account, builds use `default`", r.name),
            ),
        }
    }
}
