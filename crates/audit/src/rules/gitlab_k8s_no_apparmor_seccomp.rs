//! Kubernetes runs containers unconfined by seccomp unless a profile is asked for; build pods
//! then reach every syscall of the node's kernel.

use super::{Check, Rule, Sink};
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-no-apparmor-seccomp",
        severity: Severity::Low,
        description: "A Kubernetes-executor runner gives build pods no seccomp profile \
            (RuntimeDefault or Localhost), or sets a seccomp or AppArmor profile to Unconfined.",
        remediation: "Add `[runners.kubernetes.pod_security_context.seccomp_profile]` with \
            `type = \"RuntimeDefault\"` and do not set AppArmor or seccomp to Unconfined.",
        docs_anchor: "gitlab-k8s-no-apparmor-seccomp",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

const CONTEXTS: &[&str] = &[
    "pod_security_context",
    "build_container_security_context",
    "helper_container_security_context",
    "service_container_security_context",
];

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(k) = r.kubernetes() else { continue };
        let mut confined = false;
        for ctx in CONTEXTS.iter().filter_map(|c| k.get(c)) {
            for profile in ["seccomp_profile", "app_armor_profile"] {
                let Some(t) = ctx.get(profile).and_then(|p| p.get("type")) else {
                    continue;
                };
                match t.as_str() {
                    Some(v) if v.eq_ignore_ascii_case("unconfined") => {
                        sink.report(t.pos, format!("runner `{}` sets {profile} type Unconfined", r.name));
                    }
                    Some(_) if profile == "seccomp_profile" => confined = true,
                    _ => {}
                }
            }
        }
        if !confined {
            let pos = k.get("pod_security_context").map(|n| n.pos).unwrap_or(k.pos);
            sink.report(
                pos,
                format!(
                    "runner `{}`: build pods have no seccomp profile (RuntimeDefault)",
                    r.name
                ),
            );
        }
    }
}
