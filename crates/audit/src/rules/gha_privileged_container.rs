//! Container and service options passed to `docker create` by the runner: `--privileged` and
//! friends give the job the runner host.

use super::{Check, Rule, Sink};
use crate::dockerargs::{flags, risky_options};
use crate::models::workflow::Workflow;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-privileged-container",
        severity: Severity::High,
        description: "A job container or service container is started with options that remove \
            its isolation: `--privileged`, `--cap-add`, `--pid=host`, `--network=host`, \
            `--ipc=host`, `seccomp=unconfined`, `apparmor=unconfined`.",
        remediation: "Drop these options. If a build needs a daemon, use a rootless builder \
            (buildah, kaniko) or a separate, ephemeral VM.",
        docs_anchor: "gha-privileged-container",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    for job in wf.jobs() {
        for (what, c) in job.containers() {
            let Some(opts) = c.get("options") else {
                continue;
            };
            let Some(text) = opts.as_str() else { continue };
            for (why, raw) in risky_options(&flags(text, false)) {
                let pos = sink.src.find_in_node(opts, &raw);
                sink.report(pos, format!("{what} of job `{}` runs with {why}", job.id));
            }
        }
    }
}
