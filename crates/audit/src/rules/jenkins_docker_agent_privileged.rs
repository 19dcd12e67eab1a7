//! Docker agent args are passed to `docker run` on the Jenkins agent: `--privileged` or the
//! Docker socket there gives the build the agent host.

use super::{Check, Rule, Sink};
use crate::dockerargs::{flags, is_docker_socket, mounted_host_paths, risky_options};
use crate::models::jenkinsfile::Jenkinsfile;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-docker-agent-privileged",
        severity: Severity::High,
        description: "A docker agent (`agent { docker { args ... } }`, `docker.image().inside()`) \
            runs with `--privileged`, the Docker socket mounted, `--network=host`, `--pid=host` \
            or `--cap-add`: the build can take over the agent host.",
        remediation: "Remove these args; build images with a rootless builder, and run builds \
            that truly need them on ephemeral agents.",
        docs_anchor: "jenkins-docker-agent-privileged",
    },
    check: Check::Jenkinsfile(check),
    family: "Jenkins",
};

fn check(jf: &Jenkinsfile, sink: &mut Sink<'_>) {
    for agent in &jf.docker_agents {
        for arg in &agent.args {
            let fl = flags(&arg.text, false);
            for (why, raw) in risky_options(&fl) {
                let pos = sink.src.find_between(arg.start, arg.end, &raw).unwrap_or(arg.start);
                sink.report(pos, format!("{} runs with {why}", agent.form));
            }
            for (host, _) in mounted_host_paths(&fl) {
                if is_docker_socket(&host) {
                    let pos = sink.src.find_between(arg.start, arg.end, &host).unwrap_or(arg.start);
                    sink.report(pos, format!("{} mounts the Docker socket ({host})", agent.form));
                }
            }
        }
    }
}
