//! allowPrivilegeEscalation defaults to true: setuid binaries in the image can make the process
//! root inside the container.

use super::{Check, Rule, Sink};
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-allow-privilege-escalation",
        severity: Severity::High,
        description: "A container does not set `securityContext.allowPrivilegeEscalation: false` \
            (Kubernetes defaults it to true), or sets it to true.",
        remediation: "Set `allowPrivilegeEscalation: false` in every container's securityContext.",
        docs_anchor: "k8s-allow-privilege-escalation",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        match c.security_entry("allowPrivilegeEscalation") {
            Some((_, v)) if v.is_false() => {}
            Some((k, _)) => sink.report(
                k.start,
                format!("{}: container `{}` allows privilege escalation", pod.owner, c.name),
            ),
            None if pod.partial => {}
            None => sink.report(
                c.anchor().start,
                format!(
                    "{}: container `{}` does not set allowPrivilegeEscalation: false",
                    pod.owner, c.name
                ),
            ),
        }
    }
}
