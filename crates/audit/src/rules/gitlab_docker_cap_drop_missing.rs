//! Docker's default capability set still includes CAP_NET_RAW, CAP_CHOWN, CAP_SETUID and more;
//! a job needs few of them, and every one is attack surface against the kernel.

use super::{Check, Rule, Sink};
use crate::dockerargs::normalize_cap;
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-cap-drop-missing",
        severity: Severity::Medium,
        description: "A Docker-executor runner does not drop all capabilities (`cap_drop` lacks \
            \"ALL\"), so job containers keep Docker's default set.",
        remediation: "Set `cap_drop = [\"ALL\"]` in `[runners.docker]` and add back only what jobs \
            provably need with `cap_add`.",
        docs_anchor: "gitlab-docker-cap-drop-missing",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        match d.get("cap_drop") {
            Some(n) if n.strings().iter().any(|(c, _)| normalize_cap(c) == "ALL") => {}
            Some(n) => sink.report(n.pos, format!("runner `{}`: cap_drop does not contain \"ALL\"", r.name)),
            None => sink.report(
                d.pos,
                format!("runner `{}`: no cap_drop = [\"ALL\"] in [runners.docker]", r.name),
            ),
        }
    }
}
