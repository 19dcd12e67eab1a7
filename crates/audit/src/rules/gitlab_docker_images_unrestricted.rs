//! Without `allowed_images`, any pipeline picks any image (and services), including ones built
//! to attack the runner.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-images-unrestricted",
        severity: Severity::Medium,
        description: "A Docker-executor runner has no `allowed_images`, so jobs may run any image \
            from any registry.",
        remediation: "Set `allowed_images` (and `allowed_services`) to the registries and images \
            your pipelines use.",
        docs_anchor: "gitlab-docker-images-unrestricted",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        let restricted = d.get("allowed_images").is_some_and(|n| !n.items().is_empty());
        if !restricted {
            let pos = d.get("allowed_images").map(|n| n.pos).unwrap_or(d.pos);
            sink.report(pos, format!("runner `{}` has no allowed_images", r.name));
        }
    }
}
