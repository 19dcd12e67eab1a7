//! allowPrivilegeEscalation defaults to true in Kubernetes: setuid binaries in a build image
//! then make the job root in its container.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-allow-privilege-escalation",
        severity: Severity::High,
        description: "A Kubernetes-executor runner allows privilege escalation in build pods \
            (`allow_privilege_escalation` is true, or unset, which Kubernetes treats as true).",
        remediation: "Set `allow_privilege_escalation = false` in `[runners.kubernetes]` (or in \
            `build_container_security_context`).",
        docs_anchor: "gitlab-k8s-allow-privilege-escalation",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(k) = r.kubernetes() else { continue };
        let build = k
            .get("build_container_security_context")
            .and_then(|b| b.get("allow_privilege_escalation"));
        let top = k.get("allow_privilege_escalation");
        let explicit_true = [top, build].into_iter().flatten().find(|n| n.as_bool() == Some(true));
        if let Some(n) = explicit_true {
            sink.report(
                n.pos,
                format!("runner `{}` sets allow_privilege_escalation = true", r.name),
            );
        } else if ![top, build].into_iter().flatten().any(|n| n.as_bool() == Some(false)) {
            sink.report(
                k.pos,
                format!("runner `{}`: allow_privilege_escalation is not false", r.name),
            );
        }
    }
}
