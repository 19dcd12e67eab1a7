//! A docker agent keeps Docker's default capabilities unless its args drop them; builds rarely
//! need any of them.

use super::{Check, Rule, Sink};
use crate::dockerargs::{drops_all_caps, flags};
use crate::models::jenkinsfile::Jenkinsfile;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-docker-agent-cap-drop-missing",
        severity: Severity::Low,
        description: "A docker agent's args do not drop all capabilities (`--cap-drop=ALL`), so \
            the build container keeps Docker's default set.",
        remediation: "Add `--cap-drop=ALL` (and `--security-opt=no-new-privileges`) to the agent's \
            args.",
        docs_anchor: "jenkins-docker-agent-cap-drop-missing",
    },
    check: Check::Jenkinsfile(check),
    family: "Jenkins",
};

fn check(jf: &Jenkinsfile, sink: &mut Sink<'_>) {
    for agent in &jf.docker_agents {
        let all: String = agent.args.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" ");
        if !drops_all_caps(&flags(&all, false)) {
            sink.report(
                agent.pos,
                format!("{} does not drop capabilities (--cap-drop=ALL)", agent.form),
            );
        }
    }
}
