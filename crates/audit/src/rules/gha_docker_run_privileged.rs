//! `docker run --privileged` in a step hands the step's code the runner host, whatever the
//! job container's own options say.

use super::{Check, Rule, Sink};
use crate::dockerargs::{docker_run_commands, flags};
use crate::models::workflow::Workflow;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-docker-run-privileged",
        severity: Severity::High,
        description: "A `run:` step starts a container with `docker run --privileged` or \
            `--cap-add`: the code in that container can take over the runner host.",
        remediation: "Remove `--privileged`/`--cap-add`; if a build truly needs them, run it on an \
            ephemeral VM runner that is destroyed after the job.",
        docs_anchor: "gha-docker-run-privileged",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    for job in wf.jobs() {
        for run in job.run_scripts() {
            let Some(script) = run.as_str() else { continue };
            for (_, cmd) in docker_run_commands(script) {
                for f in flags(&cmd, true) {
                    let why = match f.name.as_str() {
                        "--privileged" if f.value.as_deref() != Some("false") => "--privileged".to_string(),
                        "--cap-add" => format!("--cap-add {}", f.value.as_deref().unwrap_or("")),
                        _ => continue,
                    };
                    let pos = sink.src.find_in_node(run, &f.raw);
                    sink.report(pos, format!("a step of job `{}` runs `docker run {why}`", job.id));
                }
            }
        }
    }
}
