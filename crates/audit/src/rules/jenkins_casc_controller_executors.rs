//! Builds on the controller run with the controller's own filesystem and credentials at hand;
//! Jenkins' own hardening guide says to give it no executors.

use super::{Check, Rule, Sink};
use crate::models::Jcasc;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-casc-controller-executors",
        severity: Severity::Medium,
        description: "Jenkins Configuration as Code gives the controller (built-in node) \
            executors (`numExecutors > 0`), so builds run next to its secrets and configuration.",
        remediation: "Set `jenkins.numExecutors: 0` and run builds on agents.",
        docs_anchor: "jenkins-casc-controller-executors",
    },
    check: Check::Jcasc(check),
    family: "Jenkins",
};

fn check(c: &Jcasc<'_>, sink: &mut Sink<'_>) {
    if let Some((k, v)) = c.jenkins.entry("numExecutors")
        && v.as_i64().is_some_and(|n| n > 0)
    {
        sink.report(
            k.start,
            format!("the controller has {} executors", v.as_str().unwrap_or("?")),
        );
    }
}
