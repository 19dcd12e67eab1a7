//! Kubernetes-plugin containers run as the image's user, root for most build images, unless the
//! template says otherwise.

use super::{Check, Rule, Sink};
use crate::models::jenkinsfile::Jenkinsfile;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-pod-run-as-root",
        severity: Severity::High,
        description: "A Kubernetes-plugin `containerTemplate` runs as root: `runAsUser: 0`, or no \
            `runAsUser` on it nor on its `podTemplate`. (Inline pod YAML is checked by \
            `k8s-run-as-root`.)",
        remediation: "Set `runAsUser` (and `runAsGroup`) to a non-zero id on the podTemplate or \
            the containerTemplate.",
        docs_anchor: "jenkins-pod-run-as-root",
    },
    check: Check::Jenkinsfile(check),
    family: "Jenkins",
};

fn check(jf: &Jenkinsfile, sink: &mut Sink<'_>) {
    let pod_user = jf.pod_templates.iter().find_map(|p| p.arg("runAsUser"));
    for t in &jf.container_templates {
        match t.arg("runAsUser").or(pod_user) {
            Some(a) if a.value.trim() == "0" => {
                sink.report(a.key_pos, format!("containerTemplate `{}` runs as uid 0", t.name()))
            }
            Some(_) => {}
            None => sink.report(
                t.pos,
                format!(
                    "containerTemplate `{}` sets no runAsUser: it runs as the image's user (often root)",
                    t.name()
                ),
            ),
        }
    }
}
