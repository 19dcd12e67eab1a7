//! Without no-new-privileges, a setuid binary inside the job image turns the job user into root
//! inside the container, one step from the kernel.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-no-new-privileges-missing",
        severity: Severity::Medium,
        description: "A Docker-executor runner does not set `no-new-privileges` in `security_opt`, \
            so setuid binaries in job images still raise privileges.",
        remediation: "Add `security_opt = [\"no-new-privileges:true\"]` to `[runners.docker]`.",
        docs_anchor: "gitlab-docker-no-new-privileges-missing",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        let set = d
            .get("security_opt")
            .map(|n| n.strings())
            .unwrap_or_default()
            .iter()
            .any(|(o, _)| {
                let o = o.replace('=', ":");
                o == "no-new-privileges" || o == "no-new-privileges:true"
            });
        if !set {
            let pos = d.get("security_opt").map(|n| n.pos).unwrap_or(d.pos);
            sink.report(
                pos,
                format!("runner `{}`: security_opt lacks no-new-privileges", r.name),
            );
        }
    }
}
