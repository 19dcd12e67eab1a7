//! The runtime's default capabilities (NET_RAW, SETUID, CHOWN, ...) are rarely needed by a job
//! and widen what a kernel exploit can start from.

use super::{Check, Rule, Sink};
use crate::dockerargs::normalize_cap;
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-caps-not-dropped",
        severity: Severity::Medium,
        description: "A container does not drop all capabilities (`capabilities.drop` lacks ALL).",
        remediation: "Set `securityContext.capabilities.drop: [ALL]` and add back only what is \
            needed.",
        docs_anchor: "k8s-caps-not-dropped",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        let drop = c.security().and_then(|s| s.path(&["capabilities", "drop"]));
        let all = drop.is_some_and(|d| d.strings().iter().any(|(s, _)| normalize_cap(s) == "ALL"));
        // A kustomize patch that says nothing about capabilities leaves them to its base.
        let unknown = pod.partial && drop.is_none();
        if !all && !unknown {
            let at = drop.map(|d| d.start).unwrap_or(c.anchor().start);
            sink.report(
                at,
                format!("{}: container `{}` does not drop ALL capabilities", pod.owner, c.name),
            );
        }
    }
}
