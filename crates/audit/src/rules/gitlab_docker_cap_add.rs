//! Capabilities such as SYS_ADMIN or SYS_PTRACE are most of root: a job container that has them
//! can escape or attack its neighbours.

use super::{Check, Rule, Sink};
use crate::dockerargs::is_dangerous_cap;
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-cap-add",
        severity: Severity::High,
        description: "A Docker-executor runner adds dangerous capabilities to job containers \
            (`cap_add` with ALL, SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH, \
            BPF, ...).",
        remediation: "Remove them from `cap_add`; run the jobs that need them on a dedicated, \
            ephemeral VM runner.",
        docs_anchor: "gitlab-docker-cap-add",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        for (cap, pos) in d.get("cap_add").map(|n| n.strings()).unwrap_or_default() {
            if is_dangerous_cap(cap) {
                sink.report(
                    pos,
                    format!("runner `{}` adds capability {cap} to job containers", r.name),
                );
            }
        }
    }
}
