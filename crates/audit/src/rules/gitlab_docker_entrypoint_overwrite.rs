//! A job that can replace an image's entrypoint can skip whatever setup or confinement the
//! image's entrypoint was there to apply.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-entrypoint-overwrite",
        severity: Severity::Low,
        description: "A Docker-executor runner lets jobs override image entrypoints \
            (`disable_entrypoint_overwrite` is not true).",
        remediation: "Set `disable_entrypoint_overwrite = true` in `[runners.docker]` when images \
            carry their own entrypoint logic.",
        docs_anchor: "gitlab-docker-entrypoint-overwrite",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        match d.get("disable_entrypoint_overwrite") {
            Some(n) if n.as_bool() == Some(true) => {}
            Some(n) => sink.report(
                n.pos,
                format!("runner `{}`: disable_entrypoint_overwrite is not true", r.name),
            ),
            None => sink.report(
                d.pos,
                format!("runner `{}`: disable_entrypoint_overwrite is not set", r.name),
            ),
        }
    }
}
