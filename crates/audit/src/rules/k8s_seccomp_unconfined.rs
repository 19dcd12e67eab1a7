//! Kubernetes runs pods without seccomp unless asked: the job then reaches every syscall of the
//! node's kernel, the usual path of container escapes.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-seccomp-unconfined",
        severity: Severity::Medium,
        description: "A container has no seccomp profile (`seccompProfile.type` RuntimeDefault or \
            Localhost on it or on the pod), or its profile is Unconfined.",
        remediation: "Set `securityContext.seccompProfile.type: RuntimeDefault` on the pod.",
        docs_anchor: "k8s-seccomp-unconfined",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

/// Some(true): confined; Some(false): explicitly unconfined (with the node); None: unset.
fn profile<'a>(ctx: Option<&'a Node<'a>>) -> (Option<bool>, Option<&'a Node<'a>>) {
    let Some(t) = ctx.and_then(|c| c.path(&["seccompProfile", "type"])) else {
        return (None, None);
    };
    match t.as_str() {
        Some("RuntimeDefault" | "Localhost") => (Some(true), None),
        Some(_) => (Some(false), Some(t)),
        None => (None, None),
    }
}

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    let (pod_p, pod_n) = profile(pod.pod_security());
    let annotated = pod
        .annotation("seccomp.security.alpha.kubernetes.io/pod")
        .is_some_and(|a| a == "runtime/default" || a == "docker/default" || a.starts_with("localhost/"));
    for c in pod.containers() {
        let (c_p, c_n) = profile(c.security());
        let v = c_p.or(pod_p).or(annotated.then_some(true));
        match v {
            Some(true) => {}
            Some(false) => {
                let n = c_n.or(pod_n).unwrap_or(c.anchor());
                sink.report(
                    n.start,
                    format!("{}: container `{}` runs with seccomp Unconfined", pod.owner, c.name),
                );
            }
            None if pod.partial => {}
            None => sink.report(
                c.anchor().start,
                format!("{}: container `{}` has no seccomp profile", pod.owner, c.name),
            ),
        }
    }
}
