//! A container whose user is root (uid 0) is one runtime or kernel bug away from root on the
//! node; the image's USER is not a guarantee.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-run-as-root",
        severity: Severity::High,
        description: "A container may run as root: neither it nor the pod sets `runAsNonRoot: true` \
            or a non-zero `runAsUser`, or one of them sets `runAsUser: 0`.",
        remediation: "Set `runAsNonRoot: true` and `runAsUser: 1000` (any non-zero uid) in the pod's \
            or the container's securityContext.",
        docs_anchor: "k8s-run-as-root",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

/// Some(true): non-root asked for; Some(false): root asked for; None: nothing said.
fn verdict<'a>(ctx: Option<&'a Node<'a>>) -> (Option<bool>, Option<&'a Node<'a>>) {
    let Some(ctx) = ctx else { return (None, None) };
    if let Some((k, v)) = ctx.entry("runAsUser") {
        if v.as_i64() == Some(0) {
            return (Some(false), Some(k));
        }
        if v.as_i64().is_some() {
            return (Some(true), None);
        }
    }
    if let Some((k, v)) = ctx.entry("runAsNonRoot") {
        if v.is_true() {
            return (Some(true), None);
        }
        if v.is_false() {
            return (Some(false), Some(k));
        }
    }
    (None, None)
}

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    let (pod_v, pod_k) = verdict(pod.pod_security());
    for c in pod.containers() {
        let (c_v, c_k) = verdict(c.security());
        match c_v.or(pod_v) {
            Some(true) => {}
            Some(false) => {
                let k = c_k.or(pod_k).unwrap_or(c.anchor());
                sink.report(k.start, format!("{}: container `{}` runs as root", pod.owner, c.name));
            }
            None if pod.partial => {}
            None => sink.report(
                c.anchor().start,
                format!(
                    "{}: container `{}` may run as root (no runAsNonRoot or runAsUser)",
                    pod.owner, c.name
                ),
            ),
        }
    }
}
