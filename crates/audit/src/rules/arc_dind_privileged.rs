//! Docker-in-Docker in an ARC runner pod means a privileged container beside the job: the job
//! reaches it through the shared socket and, from there, the node.

use super::{Check, Rule, Sink};
use crate::models::ArcResource;
use crate::models::gitlab_ci::is_dind_image;
use crate::models::k8s::{pod_specs_of_object, pod_specs_of_values};
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "arc-dind-privileged",
        severity: Severity::High,
        description: "The runner pod runs a privileged Docker daemon: `containerMode.type: dind`, a \
            privileged docker sidecar, `dockerdWithinRunnerContainer: true`, or a summerwind \
            runner without `dockerEnabled: false` (whose controller adds a privileged docker \
            sidecar by default). Job code that reaches the daemon is root on the node.",
        remediation: "Use `containerMode.type: kubernetes` (jobs run in their own pods), or \
            `dockerEnabled: false` with a rootless builder; isolate runner nodes from other \
            workloads if dind cannot be avoided.",
        docs_anchor: "arc-dind-privileged",
    },
    check: Check::Arc(check),
    family: "actions-runner-controller",
};

fn check(arc: &ArcResource<'_>, sink: &mut Sink<'_>) {
    let doc = arc.doc;
    match arc.kind {
        None => {
            if let Some(v) = doc.path(&["containerMode", "type"])
                && v.as_str() == Some("dind")
            {
                sink.report(
                    v.start,
                    "containerMode.type is dind: a privileged Docker daemon runs beside each job",
                );
            }
            for pod in pod_specs_of_values(doc) {
                sidecars(&pod.containers(), sink);
            }
        }
        Some(kind @ ("Runner" | "RunnerDeployment" | "RunnerReplicaSet" | "RunnerSet")) => {
            let spec = if kind == "Runner" || kind == "RunnerSet" {
                doc.get("spec")
            } else {
                doc.path(&["spec", "template", "spec"])
            };
            let Some(spec) = spec else { return };
            let name = doc.path(&["metadata", "name"]).and_then(Node::as_str).unwrap_or("?");
            if let Some((k, v)) = spec.entry("dockerdWithinRunnerContainer")
                && v.is_true()
            {
                sink.report(
                    k.start,
                    format!("{kind}/{name} runs dockerd inside the (privileged) runner container"),
                );
                return;
            }
            let docker_off = spec.get("dockerEnabled").is_some_and(Node::is_false);
            let k8s_mode = spec
                .get("containerMode")
                .and_then(Node::as_str)
                .is_some_and(|m| m == "kubernetes");
            if !docker_off && !k8s_mode {
                let anchor = doc
                    .path(&["spec", "template"])
                    .and_then(|t| t.entry("spec"))
                    .filter(|_| kind != "RunnerSet")
                    .or_else(|| doc.entry("spec"))
                    .map(|(k, _)| k.start)
                    .unwrap_or(doc.start);
                sink.report(
                    anchor,
                    format!("{kind}/{name} gets a privileged docker sidecar by default (dockerEnabled is not false)"),
                );
            }
            for pod in pod_specs_of_object(doc) {
                sidecars(&pod.containers(), sink);
            }
        }
        Some(_) => {
            for pod in pod_specs_of_object(doc) {
                sidecars(&pod.containers(), sink);
            }
        }
    }
}

fn sidecars(containers: &[crate::models::k8s::Container<'_>], sink: &mut Sink<'_>) {
    for c in containers {
        let privileged = c.security_entry("privileged").filter(|(_, v)| v.is_true());
        if let Some((k, _)) = privileged
            && (is_dind_image(c.image()) || c.name == "dind" || c.name == "docker")
        {
            sink.report(
                k.start,
                format!("container `{}` ({}) is a privileged Docker daemon", c.name, c.image()),
            );
        }
    }
}
