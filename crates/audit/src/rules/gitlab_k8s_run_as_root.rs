//! A build container that runs as uid 0 is one kernel or runtime bug away from root on the
//! node; most builds do not need it.

use super::{Check, Rule, Sink};
use crate::models::runner_config::{RunnerConfig, TNode};
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-run-as-root",
        severity: Severity::High,
        description: "A Kubernetes-executor runner lets build pods run as root: neither the pod \
            nor the build container security context sets `run_as_non_root = true` or a non-zero \
            `run_as_user`, or one sets `run_as_user = 0`.",
        remediation: "Set `run_as_non_root = true` and `run_as_user = 1000` (any non-zero uid) in \
            `[runners.kubernetes.pod_security_context]` or `build_container_security_context`.",
        docs_anchor: "gitlab-k8s-run-as-root",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(k) = r.kubernetes() else { continue };
        let ctxs: Vec<&TNode> = ["pod_security_context", "build_container_security_context"]
            .iter()
            .filter_map(|c| k.get(c))
            .collect();
        let mut non_root = false;
        for c in &ctxs {
            if let Some(u) = c.get("run_as_user") {
                if u.as_int() == Some(0) {
                    sink.report(u.pos, format!("runner `{}` runs builds with run_as_user = 0", r.name));
                    non_root = true; // already reported here
                } else if u.as_int().is_some() {
                    non_root = true;
                }
            }
            if c.get("run_as_non_root").and_then(TNode::as_bool) == Some(true) {
                non_root = true;
            }
        }
        if !non_root {
            let pos = ctxs.first().map(|c| c.pos).unwrap_or(k.pos);
            sink.report(
                pos,
                format!(
                    "runner `{}`: build pods may run as root (no run_as_non_root or run_as_user)",
                    r.name
                ),
            );
        }
    }
}
