//! docker:dind without TLS listens on 2375 with no authentication: anything on the job's network
//! drives a privileged daemon.

use super::{Check, Rule, Sink};
use crate::models::gitlab_ci::is_dind_image;
use crate::models::workflow::Workflow;
use crate::yaml::Node;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-dind-insecure",
        severity: Severity::High,
        description: "A docker:dind service runs with TLS disabled (`DOCKER_TLS_CERTDIR: \"\"`) or \
            the job talks to it over plain TCP (`DOCKER_HOST: tcp://...:2375`): the privileged \
            daemon is open to every container on the job's network, without authentication.",
        remediation: "Keep TLS on (`DOCKER_TLS_CERTDIR: /certs`, port 2376, client certificates), \
            or better, build without a daemon (buildah, kaniko).",
        docs_anchor: "gha-dind-insecure",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

fn insecure_env<'a>(env: Option<&'a Node<'a>>) -> Vec<(&'a Node<'a>, String)> {
    let mut out = Vec::new();
    for (k, v) in env.map(|e| e.entries().collect::<Vec<_>>()).unwrap_or_default() {
        match (k.as_str(), v.as_str()) {
            (Some("DOCKER_TLS_CERTDIR"), Some("")) => {
                out.push((k, "DOCKER_TLS_CERTDIR is empty: TLS disabled".to_string()))
            }
            (Some("DOCKER_HOST"), Some(h)) if h.starts_with("tcp://") && h.ends_with(":2375") => {
                out.push((k, format!("DOCKER_HOST={h}: plain, unauthenticated TCP")))
            }
            _ => {}
        }
    }
    out
}

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    for job in wf.jobs() {
        let dind = job.containers().into_iter().any(|(_, c)| {
            let image = c.get("image").and_then(Node::as_str).or(c.as_str());
            image.is_some_and(is_dind_image)
        });
        if !dind {
            continue;
        }
        let mut envs = vec![wf.root.get("env"), job.node.get("env")];
        for (_, c) in job.containers() {
            envs.push(c.get("env"));
        }
        for st in job
            .node
            .get("steps")
            .map(|s| s.items().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            envs.push(st.get("env"));
        }
        for env in envs {
            for (k, why) in insecure_env(env) {
                sink.report(k.start, format!("job `{}` uses docker:dind and {why}", job.id));
            }
        }
    }
}
