//! A runner that is not ephemeral keeps its filesystem, caches and credentials from one job to
//! the next: a job can poison what a later job of another repository runs.

use super::{Check, Rule, Sink};
use crate::models::ArcResource;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "arc-runner-not-ephemeral",
        severity: Severity::High,
        description: "An actions-runner-controller runner is declared with `ephemeral: false`: the \
            same pod serves job after job, so one job can leave behind processes, files or \
            credentials that the next one trusts.",
        remediation: "Remove `ephemeral: false` (ephemeral is the default) so that each runner pod \
            takes one job and is destroyed.",
        docs_anchor: "arc-runner-not-ephemeral",
    },
    check: Check::Arc(check),
    family: "actions-runner-controller",
};

fn check(arc: &ArcResource<'_>, sink: &mut Sink<'_>) {
    let places: &[&[&str]] = match arc.kind {
        Some("Runner") => &[&["spec"]],
        Some("RunnerDeployment" | "RunnerReplicaSet" | "RunnerSet") => &[&["spec"], &["spec", "template", "spec"]],
        _ => &[],
    };
    for p in places {
        if let Some((k, v)) = arc.doc.path(p).and_then(|n| n.entry("ephemeral"))
            && (v.is_false() || v.as_str() == Some("false"))
        {
            let name = arc
                .doc
                .path(&["metadata", "name"])
                .and_then(Node::as_str)
                .unwrap_or("?");
            sink.report(
                k.start,
                format!("{}/{name} runners are not ephemeral", arc.kind.unwrap_or("")),
            );
        }
    }
}
