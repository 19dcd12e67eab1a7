//! A hostPath volume of the node's container socket or system directories, mounted into every
//! build pod, gives each job the node.

use super::{Check, Rule, Sink};
use crate::dockerargs::is_sensitive_host_path;
use crate::models::runner_config::{RunnerConfig, TNode};
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-k8s-sensitive-hostpath",
        severity: Severity::Critical,
        description: "A Kubernetes-executor runner mounts a sensitive node path into build pods \
            (`[[runners.kubernetes.volumes.host_path]]` with docker.sock, containerd's socket, \
            `/`, `/etc`, `/proc`, `/var/lib/kubelet`, ...).",
        remediation: "Remove the host_path volume; use emptyDir or PVC volumes for caches and a \
            rootless builder for images.",
        docs_anchor: "gitlab-k8s-sensitive-hostpath",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(k) = r.kubernetes() else { continue };
        let vols = k.get("volumes").and_then(|v| v.get("host_path"));
        for v in vols.map(TNode::items).unwrap_or_default() {
            let Some(p) = v.get("host_path") else {
                continue;
            };
            if let Some(path) = p.as_str().filter(|h| is_sensitive_host_path(h)) {
                sink.report(
                    p.pos,
                    format!("runner `{}` mounts node path {path} into build pods", r.name),
                );
            }
        }
    }
}
