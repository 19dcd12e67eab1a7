//! A writable root filesystem lets a job modify its own image's binaries, where a later step may
//! trust them, and gives malware a place to persist for the pod's life.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-writable-root-fs",
        severity: Severity::Low,
        description: "A container's root filesystem is writable (`readOnlyRootFilesystem` is not \
            true).",
        remediation: "Set `readOnlyRootFilesystem: true` and mount emptyDir volumes where the job \
            writes (workspace, /tmp, caches).",
        docs_anchor: "k8s-writable-root-fs",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        match c.security_entry("readOnlyRootFilesystem") {
            Some((_, v)) if v.is_true() => {}
            Some((k, _)) => sink.report(
                k.start,
                format!("{}: container `{}` has a writable root filesystem", pod.owner, c.name),
            ),
            None if pod.partial => {}
            None => sink.report(
                c.anchor().start,
                format!("{}: container `{}` has a writable root filesystem", pod.owner, c.name),
            ),
        }
    }
}
