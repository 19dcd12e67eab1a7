//! A privileged container has every capability and every host device: it is root on the node.
//! For a CI runner pod, that means every job author is.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-privileged",
        severity: Severity::Critical,
        description: "A container of a pod spec runs with `securityContext.privileged: true`.",
        remediation: "Remove `privileged: true`. For image builds use a rootless builder (kaniko, \
            buildah, BuildKit rootless); for dind, isolate it on dedicated, ephemeral nodes.",
        docs_anchor: "k8s-privileged",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        if let Some((k, v)) = c.security_entry("privileged")
            && v.is_true()
        {
            sink.report(k.start, format!("{}: container `{}` is privileged", pod.owner, c.name));
        }
    }
}
