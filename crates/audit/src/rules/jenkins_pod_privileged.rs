//! A privileged container in a Kubernetes-plugin pod template owns the node that runs the
//! build, and every other pod on it.

use super::{Check, Rule, Sink};
use crate::models::jenkinsfile::Jenkinsfile;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-pod-privileged",
        severity: Severity::Critical,
        description: "A Kubernetes-plugin `containerTemplate` runs with `privileged: true`. (Inline \
            pod YAML is checked by the `k8s-*` rules.)",
        remediation: "Remove `privileged: true`; build images with kaniko or buildah in an \
            unprivileged container.",
        docs_anchor: "jenkins-pod-privileged",
    },
    check: Check::Jenkinsfile(check),
    family: "Jenkins",
};

fn check(jf: &Jenkinsfile, sink: &mut Sink<'_>) {
    for t in &jf.container_templates {
        if let Some(a) = t.arg("privileged").filter(|a| a.value == "true") {
            sink.report(a.key_pos, format!("containerTemplate `{}` is privileged", t.name()));
        }
    }
}
