//! SYS_ADMIN, NET_ADMIN, SYS_PTRACE and their like are most of root; a container that adds them
//! can escape or attack the node.

use super::{Check, Rule, Sink};
use crate::dockerargs::is_dangerous_cap;
use crate::models::k8s::PodSpec;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-dangerous-caps",
        severity: Severity::High,
        description: "A container adds a dangerous capability (ALL, SYS_ADMIN, NET_ADMIN, \
            SYS_PTRACE, SYS_MODULE, DAC_READ_SEARCH, BPF, ...).",
        remediation: "Remove it from `capabilities.add`; run what needs it outside CI, or on \
            dedicated, ephemeral nodes.",
        docs_anchor: "k8s-dangerous-caps",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for c in pod.containers() {
        let add = c.security().and_then(|s| s.path(&["capabilities", "add"]));
        for (cap, node) in add.map(|a| a.strings()).unwrap_or_default() {
            if is_dangerous_cap(cap) {
                sink.report(node.start, format!("{}: container `{}` adds {cap}", pod.owner, c.name));
            }
        }
    }
}
