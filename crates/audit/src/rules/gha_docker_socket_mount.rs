//! The Docker socket is root on the runner host: a job that can reach it can start a
//! privileged container that mounts `/`.

use super::{Check, Rule, Sink};
use crate::dockerargs::{docker_run_commands, flags, is_docker_socket, mounted_host_paths};
use crate::models::workflow::Workflow;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-docker-socket-mount",
        severity: Severity::High,
        description: "The Docker socket of the runner host is mounted into a job container, a \
            service, or a `docker run` of a step. Whoever reaches the socket is root on the host.",
        remediation: "Do not mount docker.sock. Build images with a rootless builder, or run the \
            job on an ephemeral VM whose Docker daemon belongs to that job only.",
        docs_anchor: "gha-docker-socket-mount",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    for job in wf.jobs() {
        for (what, c) in job.containers() {
            for (vol, node) in c.get("volumes").map(|v| v.strings()).unwrap_or_default() {
                let host = vol.split(':').next().unwrap_or("");
                if vol.contains(':') && is_docker_socket(host) {
                    sink.report(
                        node.start,
                        format!("{what} of job `{}` mounts the Docker socket ({host})", job.id),
                    );
                }
            }
            if let Some(opts) = c.get("options") {
                for (host, raw) in mounted_host_paths(&flags(opts.as_str().unwrap_or(""), false)) {
                    if is_docker_socket(&host) {
                        let pos = sink.src.find_in_node(opts, &raw);
                        sink.report(
                            pos,
                            format!("{what} of job `{}` mounts the Docker socket ({host})", job.id),
                        );
                    }
                }
            }
        }
        for run in job.run_scripts() {
            let Some(script) = run.as_str() else { continue };
            for (_, cmd) in docker_run_commands(script) {
                for (host, _) in mounted_host_paths(&flags(&cmd, true)) {
                    if is_docker_socket(&host) {
                        let pos = sink.src.find_in_node(run, &host);
                        sink.report(
                            pos,
                            format!(
                                "a step of job `{}` runs a container with the Docker socket ({host})",
                                job.id
                            ),
                        );
                    }
                }
            }
        }
    }
}
