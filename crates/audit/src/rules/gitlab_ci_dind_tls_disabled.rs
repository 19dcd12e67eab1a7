//! docker:dind with TLS off listens on 2375 for anyone on the job's network: other services,
//! and on shared-network runners, other jobs.

use super::{Check, Rule, Sink};
use crate::models::gitlab_ci::{GitlabCi, variable_maps};
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-ci-dind-tls-disabled",
        severity: Severity::High,
        description: "A pipeline turns off TLS for its docker:dind service (`DOCKER_TLS_CERTDIR: \
            \"\"`) or talks to it over plain TCP (`DOCKER_HOST: tcp://docker:2375`): the privileged \
            daemon then accepts unauthenticated connections.",
        remediation: "Keep `DOCKER_TLS_CERTDIR: \"/certs\"` and `DOCKER_HOST: tcp://docker:2376`, \
            or build without a daemon (kaniko, buildah).",
        docs_anchor: "gitlab-ci-dind-tls-disabled",
    },
    check: Check::GitlabCi(check),
    family: "GitLab CI (.gitlab-ci.yml)",
};

fn check(ci: &GitlabCi<'_>, sink: &mut Sink<'_>) {
    for vars in variable_maps(ci.root) {
        for (k, v) in vars.entries() {
            // A variable may be `{value: ..., description: ...}`.
            let value = v.as_str().or_else(|| v.get("value").and_then(|x| x.as_str()));
            match (k.as_str(), value) {
                (Some("DOCKER_TLS_CERTDIR"), Some("")) => {
                    sink.report(k.start, "DOCKER_TLS_CERTDIR is empty: docker:dind runs without TLS")
                }
                (Some("DOCKER_HOST"), Some(h)) if h.starts_with("tcp://") && h.ends_with(":2375") => sink.report(
                    k.start,
                    format!("DOCKER_HOST={h}: plain, unauthenticated TCP to the daemon"),
                ),
                _ => {}
            }
        }
    }
}
