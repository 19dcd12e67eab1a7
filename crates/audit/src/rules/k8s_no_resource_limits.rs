//! A job without a memory limit can exhaust the node and starve or evict its neighbours,
//! other jobs included.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-no-resource-limits",
        severity: Severity::Medium,
        description: "A container has no memory limit (`resources.limits.memory`), so one job can \
            exhaust the node.",
        remediation: "Set `resources.limits.memory` (and requests) for every container.",
        docs_anchor: "k8s-no-resource-limits",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        let limits = c.node.path(&["resources", "limits"]);
        if limits.and_then(|l| l.get("memory")).is_none() && !pod.partial {
            let at = c
                .node
                .entry("resources")
                .map(|(k, _)| k.start)
                .unwrap_or(c.anchor().start);
            sink.report(at, format!("{}: container `{}` has no memory limit", pod.owner, c.name));
        }
    }
}
