//! The agent-to-controller security subsystem stops a compromised agent from reading and writing
//! the controller's files; disabling it lets any build take over the controller.

use super::{Check, Rule, Sink};
use crate::models::Jcasc;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-casc-remoting-disabled",
        severity: Severity::High,
        description: "Jenkins Configuration as Code turns off agent-to-controller security \
            (`remotingSecurity.enabled: false`): code on any agent can act on the controller.",
        remediation: "Set `jenkins.remotingSecurity.enabled: true` (the default).",
        docs_anchor: "jenkins-casc-remoting-disabled",
    },
    check: Check::Jcasc(check),
    family: "Jenkins",
};

fn check(c: &Jcasc<'_>, sink: &mut Sink<'_>) {
    if let Some((k, v)) = c.jenkins.get("remotingSecurity").and_then(|r| r.entry("enabled"))
        && v.is_false()
    {
        sink.report(
            k.start,
            "remotingSecurity.enabled is false: agents can act on the controller",
        );
    }
}
