//! hostPath volumes of the container runtime's socket or of system directories give the pod
//! the node.

use super::{Check, Rule, Sink};
use crate::dockerargs::is_sensitive_host_path;
use crate::models::k8s::PodSpec;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "k8s-sensitive-hostpath",
        severity: Severity::Critical,
        description: "A pod mounts a sensitive node path: the docker or containerd socket, `/`, \
            `/etc`, `/proc`, `/sys`, `/var/lib/kubelet`, `/var/lib/docker`, ...",
        remediation: "Replace the hostPath volume with emptyDir or a PVC; build images with a \
            rootless builder instead of the node's daemon.",
        docs_anchor: "k8s-sensitive-hostpath",
    },
    check: Check::Pod(check),
    family: "Kubernetes pod specs",
};

fn check(pod: &PodSpec<'_>, sink: &mut Sink<'_>) {
    for v in pod
        .spec
        .get("volumes")
        .map(|v| v.items().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let Some(p) = v.path(&["hostPath", "path"]) else {
            continue;
        };
        if let Some(path) = p.as_str().filter(|s| is_sensitive_host_path(s)) {
            let name = v.get("name").and_then(Node::as_str).unwrap_or("?");
            sink.report(
                p.start,
                format!("{}: volume `{name}` mounts node path {path}", pod.owner),
            );
        }
    }
}
