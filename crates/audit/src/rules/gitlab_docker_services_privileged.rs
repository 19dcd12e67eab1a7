//! Privileged services (docker:dind) are reachable from the job, and they are the host.
//! Read from `[runners.docker]` / `[runners.kubernetes]` of each `[[runners]]` block.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-services-privileged",
        severity: Severity::High,
        description: "A GitLab runner runs service containers (such as docker:dind) privileged: a job reaches them over the network and through them the host.",
        remediation: "Set `services_privileged = false` and build without a privileged daemon (kaniko, buildah).",
        docs_anchor: "gitlab-docker-services-privileged",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(section) = r.docker() else { continue };
        if let Some(n) = section.get("services_privileged").filter(|n| n.as_bool() == Some(true)) {
            sink.report(
                n.pos,
                format!(
                    "runner `{}` sets services_privileged = true: service containers run privileged",
                    r.name
                ),
            );
        }
    }
}
