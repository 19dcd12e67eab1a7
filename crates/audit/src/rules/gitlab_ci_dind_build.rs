//! Building images with docker:dind needs a privileged runner; a daemonless builder needs none,
//! so the privileged mode can be turned off for the whole runner.

use super::{Check, Rule, Sink};
use crate::models::gitlab_ci::{GitlabCi, is_dind_image, service_image};
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-ci-dind-build",
        severity: Severity::Low,
        description: "A job uses a docker:dind service (which only works on a privileged runner), \
            typically to build images.",
        remediation: "Build with a daemonless, rootless builder such as kaniko, buildah or \
            BuildKit rootless, so that runners can stay unprivileged.",
        docs_anchor: "gitlab-ci-dind-build",
    },
    check: Check::GitlabCi(check),
    family: "GitLab CI (.gitlab-ci.yml)",
};

fn check(ci: &GitlabCi<'_>, sink: &mut Sink<'_>) {
    let mut lists: Vec<(String, &Node<'_>)> = Vec::new();
    if let Some(s) = ci.root.get("services") {
        lists.push(("the pipeline".to_string(), s));
    }
    for (k, v) in ci.root.entries() {
        if let Some(s) = v.get("services") {
            lists.push((format!("job `{}`", k.as_str().unwrap_or("?")), s));
        }
    }
    for (who, list) in lists {
        for s in list.items() {
            if let Some((image, node)) = service_image(s)
                && is_dind_image(image)
            {
                sink.report(node.start, format!("{who} uses the privileged {image} service"));
            }
        }
    }
}
