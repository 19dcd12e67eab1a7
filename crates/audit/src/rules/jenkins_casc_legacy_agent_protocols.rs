//! JNLP1-3 send agent secrets unencrypted or with weak handshakes; only JNLP4-connect is
//! TLS-protected.

use super::{Check, Rule, Sink};
use crate::models::Jcasc;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "jenkins-casc-legacy-agent-protocols",
        severity: Severity::High,
        description: "Jenkins Configuration as Code enables an agent protocol other than \
            JNLP4-connect (JNLP-connect, JNLP2-connect, JNLP3-connect, CLI-connect ...), whose \
            handshakes are unencrypted or deprecated. (`Ping` is accepted.)",
        remediation: "Set `jenkins.agentProtocols: [\"JNLP4-connect\", \"Ping\"]`.",
        docs_anchor: "jenkins-casc-legacy-agent-protocols",
    },
    check: Check::Jcasc(check),
    family: "Jenkins",
};

fn check(c: &Jcasc<'_>, sink: &mut Sink<'_>) {
    for (p, node) in c.jenkins.get("agentProtocols").map(|n| n.strings()).unwrap_or_default() {
        if p != "JNLP4-connect" && p != "Ping" {
            sink.report(node.start, format!("legacy agent protocol {p} is enabled"));
        }
    }
}
