//! Sharing the node's network, PID or IPC namespace lets a pod see and reach the node's
//! processes and services.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-host-namespaces",
        severity: Severity::High,
        description: "A pod shares a namespace with the node: `hostNetwork`, `hostPID` or \
            `hostIPC` is true.",
        remediation: "Remove `hostNetwork`/`hostPID`/`hostIPC`.",
        docs_anchor: "k8s-host-namespaces",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if let Some((k, v)) = pod.spec.entry(key)
            && v.is_true()
        {
            sink.report(k.start, format!("{}: {key} is true", pod.owner));
        }
    }
}
