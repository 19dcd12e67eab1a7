//! The service-account token mounted into a job pod is a credential for the Kubernetes API that
//! every job step can read.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-sa-token-automount",
        severity: Severity::Medium,
        description: "A pod does not set `automountServiceAccountToken: false`, so its service \
            account's API token is mounted where job code can read it.",
        remediation: "Set `automountServiceAccountToken: false` on the pod (or its service \
            account) unless it must call the Kubernetes API.",
        docs_anchor: "k8s-sa-token-automount",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    match pod.spec.entry("automountServiceAccountToken") {
        Some((_, v)) if v.is_false() => {}
        Some((k, _)) => sink.report(
            k.start,
            format!("{}: automountServiceAccountToken is not false", pod.owner),
        ),
        None if pod.partial => {}
        None => sink.report(
            pod.anchor.start,
            format!(
                "{}: the service account token is mounted (automountServiceAccountToken not false)",
                pod.owner
            ),
        ),
    }
}
