//! A job on the host's network namespace reaches every local service of the runner host and
//! can bind its ports, including the runner's own.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-host-network",
        severity: Severity::High,
        description: "A Docker-executor runner puts job containers on the host network \
            (`network_mode = \"host\"`): jobs reach the host's local services, cloud metadata \
            endpoints and each other without any network isolation.",
        remediation: "Remove `network_mode = \"host\"`; use a per-job network \
            (`FF_NETWORK_PER_BUILD`) and an egress policy.",
        docs_anchor: "gitlab-docker-host-network",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        if let Some(n) = d.get("network_mode").filter(|n| n.as_str() == Some("host")) {
            sink.report(n.pos, format!("runner `{}` runs jobs on the host network", r.name));
        }
    }
}
