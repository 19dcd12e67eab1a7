//! seccomp, AppArmor and SELinux labels are what stand between a job and most kernel exploits;
//! turning them off in `security_opt` removes that layer for every job.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-unconfined",
        severity: Severity::High,
        description: "A Docker-executor runner disables seccomp, AppArmor or SELinux labelling in \
            `security_opt` (`seccomp:unconfined`, `apparmor:unconfined`, `label:disable`).",
        remediation: "Remove these entries; if a job needs a syscall Docker's profile blocks, give \
            it a custom seccomp profile that allows only that.",
        docs_anchor: "gitlab-docker-unconfined",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        for (opt, pos) in d.get("security_opt").map(|n| n.strings()).unwrap_or_default() {
            let o = opt.replace('=', ":").to_ascii_lowercase();
            if o.starts_with("seccomp:unconfined")
                || o.starts_with("apparmor:unconfined")
                || o.starts_with("label:disable")
                || o.starts_with("systempaths:unconfined")
            {
                sink.report(pos, format!("runner `{}` sets security_opt {opt:?}", r.name));
            }
        }
    }
}
