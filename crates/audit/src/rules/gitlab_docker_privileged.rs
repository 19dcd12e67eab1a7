//! Privileged job containers are the host: every device, every capability, no seccomp or AppArmor.
//! Read from `[runners.docker]` / `[runners.kubernetes]` of each `[[runners]]` block.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-privileged",
        severity: Severity::Critical,
        description: "A GitLab runner with a Docker executor runs job containers with `privileged = true`: every job, and so every author of a pipeline, is root on the runner host.",
        remediation: "Set `privileged = false`. Build images with a daemonless, rootless builder (kaniko, buildah) instead of docker:dind.",
        docs_anchor: "gitlab-docker-privileged",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(section) = r.docker() else { continue };
        if let Some(n) = section.get("privileged").filter(|n| n.as_bool() == Some(true)) {
            sink.report(
                n.pos,
                format!(
                    "runner `{}` sets privileged = true: job containers get all capabilities and host devices",
                    r.name
                ),
            );
        }
    }
}
