//! Generic labels (`self-hosted`, `linux`, `x64`) send a job to any runner of the pool, so every
//! repository that may use the pool shares machines with this one.

use super::{Check, Rule, Sink};
use crate::models::workflow::{Hosting, Workflow, glob_match, hosting, is_generic_label};
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gha-self-hosted-unrestricted",
        severity: Severity::Medium,
        description: "A self-hosted job selects its runner only by generic labels (`self-hosted`, \
            `linux`, `x64`, ...), with no runner group and no dedicated label, so it lands on any \
            runner of the organisation's shared pool.",
        remediation: "Use `runs-on: {group: NAME}` with a runner group limited to the repositories \
            that need it, or a dedicated label (configure `restricted_labels` in `.stockade.toml`).",
        docs_anchor: "gha-self-hosted-unrestricted",
    },
    check: Check::Workflow(check),
    family: "GitHub Actions",
};

fn check(wf: &Workflow<'_>, sink: &mut Sink<'_>) {
    for job in wf.jobs() {
        let Some(ro) = job.runs_on() else { continue };
        if ro.group.is_some() {
            continue;
        }
        for alt in &ro.alternatives {
            if hosting(alt, sink.cfg) != Hosting::SelfHosted {
                continue;
            }
            let restricted = if sink.cfg.restricted_labels.is_empty() {
                alt.iter().any(|l| !is_generic_label(&l.name, sink.cfg))
            } else {
                alt.iter()
                    .any(|l| sink.cfg.restricted_labels.iter().any(|r| glob_match(r, &l.name)))
            };
            if !restricted {
                let names: Vec<&str> = alt.iter().map(|l| l.name.as_str()).collect();
                sink.report(
                    ro.node.start,
                    format!(
                        "job `{}` selects a self-hosted runner only by [{}]: no runner group or dedicated label",
                        job.id,
                        names.join(", ")
                    ),
                );
                break;
            }
        }
    }
}
