//! A privileged build pod owns the Kubernetes node it lands on.
//! Read from `[runners.docker]` / `[runners.kubernetes]` of each `[[runners]]` block.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-privileged",
        severity: Severity::Critical,
        description: "A GitLab runner with the Kubernetes executor starts build pods privileged: a job is root on the node and sees every other pod on it.",
        remediation: "Set `privileged = false`; use a daemonless builder (kaniko, buildah) for images.",
        docs_anchor: "gitlab-k8s-privileged",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(section) = r.kubernetes() else {
            continue;
        };
        let build = section.get("build_container_security_context");
        for n in [section.get("privileged"), build.and_then(|b| b.get("privileged"))]
            .into_iter()
            .flatten()
        {
            if n.as_bool() == Some(true) {
                sink.report(
                    n.pos,
                    format!(
                        "runner `{}` sets privileged = true: build pods are privileged on the node",
                        r.name
                    ),
                );
            }
        }
    }
}
