//! The rule registry: every rule is one file here and one line in `RULES`, nowhere else.
//! A rule is its metadata plus one check over one model; the engine decides what it runs on.

use crate::config::AuditConfig;
use crate::models::gitlab_ci::GitlabCi;
use crate::models::jenkinsfile::Jenkinsfile;
use crate::models::k8s::PodSpec;
use crate::models::runner_config::RunnerConfig;
use crate::models::workflow::Workflow;
use crate::models::{ArcResource, Jcasc};
use crate::source::Source;
use crate::yaml::Pos;
use stockade_report::RuleMeta;

pub mod arc_dind_privileged;
pub mod arc_runner_not_ephemeral;
pub mod gha_dind_insecure;
pub mod gha_docker_run_privileged;
pub mod gha_docker_socket_mount;
pub mod gha_privileged_container;
pub mod gha_self_hosted_unrestricted;
pub mod gha_self_hosted_untrusted_trigger;
pub mod gitlab_ci_deploy_untagged;
pub mod gitlab_ci_dind_build;
pub mod gitlab_ci_dind_tls_disabled;
pub mod gitlab_docker_cap_add;
pub mod gitlab_docker_cap_drop_missing;
pub mod gitlab_docker_entrypoint_overwrite;
pub mod gitlab_docker_host_network;
pub mod gitlab_docker_images_unrestricted;
pub mod gitlab_docker_no_new_privileges_missing;
pub mod gitlab_docker_privileged;
pub mod gitlab_docker_sensitive_volume;
pub mod gitlab_docker_services_privileged;
pub mod gitlab_docker_unconfined;
pub mod gitlab_k8s_allow_privilege_escalation;
pub mod gitlab_k8s_default_service_account;
pub mod gitlab_k8s_no_apparmor_seccomp;
pub mod gitlab_k8s_privileged;
pub mod gitlab_k8s_run_as_root;
pub mod gitlab_k8s_sensitive_hostpath;
pub mod gitlab_shell_executor;
pub mod jenkins_casc_controller_executors;
pub mod jenkins_casc_legacy_agent_protocols;
pub mod jenkins_casc_remoting_disabled;
pub mod jenkins_docker_agent_cap_drop_missing;
pub mod jenkins_docker_agent_privileged;
pub mod jenkins_pod_privileged;
pub mod jenkins_pod_run_as_root;
pub mod k8s_allow_privilege_escalation;
pub mod k8s_caps_not_dropped;
pub mod k8s_dangerous_caps;
pub mod k8s_host_namespaces;
pub mod k8s_no_resource_limits;
pub mod k8s_privileged;
pub mod k8s_run_as_root;
pub mod k8s_sa_token_automount;
pub mod k8s_seccomp_unconfined;
pub mod k8s_sensitive_hostpath;
pub mod k8s_writable_root_fs;

/// The one list. Order here is the order of `--list-rules` and of docs/rules.md.
pub static RULES: &[&Rule] = &[
    &gha_self_hosted_untrusted_trigger::RULE,
    &gha_self_hosted_unrestricted::RULE,
    &gha_privileged_container::RULE,
    &gha_docker_socket_mount::RULE,
    &gha_dind_insecure::RULE,
    &gha_docker_run_privileged::RULE,
    &arc_runner_not_ephemeral::RULE,
    &arc_dind_privileged::RULE,
    &gitlab_shell_executor::RULE,
    &gitlab_docker_privileged::RULE,
    &gitlab_docker_services_privileged::RULE,
    &gitlab_docker_cap_drop_missing::RULE,
    &gitlab_docker_cap_add::RULE,
    &gitlab_docker_no_new_privileges_missing::RULE,
    &gitlab_docker_unconfined::RULE,
    &gitlab_docker_host_network::RULE,
    &gitlab_docker_sensitive_volume::RULE,
    &gitlab_docker_entrypoint_overwrite::RULE,
    &gitlab_docker_images_unrestricted::RULE,
    &gitlab_k8s_privileged::RULE,
    &gitlab_k8s_allow_privilege_escalation::RULE,
    &gitlab_k8s_run_as_root::RULE,
    &gitlab_k8s_default_service_account::RULE,
    &gitlab_k8s_no_apparmor_seccomp::RULE,
    &gitlab_k8s_sensitive_hostpath::RULE,
    &gitlab_ci_dind_tls_disabled::RULE,
    &gitlab_ci_dind_build::RULE,
    &gitlab_ci_deploy_untagged::RULE,
    &jenkins_docker_agent_privileged::RULE,
    &jenkins_docker_agent_cap_drop_missing::RULE,
    &jenkins_pod_privileged::RULE,
    &jenkins_pod_run_as_root::RULE,
    &jenkins_casc_remoting_disabled::RULE,
    &jenkins_casc_legacy_agent_protocols::RULE,
    &jenkins_casc_controller_executors::RULE,
    &k8s_privileged::RULE,
    &k8s_allow_privilege_escalation::RULE,
    &k8s_run_as_root::RULE,
    &k8s_caps_not_dropped::RULE,
    &k8s_dangerous_caps::RULE,
    &k8s_host_namespaces::RULE,
    &k8s_sensitive_hostpath::RULE,
    &k8s_writable_root_fs::RULE,
    &k8s_no_resource_limits::RULE,
    &k8s_seccomp_unconfined::RULE,
    &k8s_sa_token_automount::RULE,
];

pub struct Rule {
    pub meta: RuleMeta,
    pub check: Check,
    /// Which family's file kinds it reads, for docs: "GitHub Actions", ...
    pub family: &'static str,
}

/// What a rule reads. The engine builds each model once per file and runs the rules for it.
pub enum Check {
    Workflow(fn(&Workflow<'_>, &mut Sink<'_>)),
    Arc(fn(&ArcResource<'_>, &mut Sink<'_>)),
    Pod(fn(&PodSpec<'_>, &mut Sink<'_>)),
    GitlabCi(fn(&GitlabCi<'_>, &mut Sink<'_>)),
    Runner(fn(&RunnerConfig, &mut Sink<'_>)),
    Jenkinsfile(fn(&Jenkinsfile, &mut Sink<'_>)),
    Jcasc(fn(&Jcasc<'_>, &mut Sink<'_>)),
}

/// A rule's raw result before config, suppressions and severity overrides are applied.
#[derive(Debug, Clone)]
pub struct Hit {
    pub rule: &'static str,
    pub pos: Pos,
    pub message: String,
}

/// What a check writes its findings into; it also lends the config and the file's text.
pub struct Sink<'s> {
    pub cfg: &'s AuditConfig,
    pub src: &'s Source,
    pub(crate) rule: &'static str,
    pub(crate) hits: Vec<Hit>,
}

impl<'s> Sink<'s> {
    pub fn new(cfg: &'s AuditConfig, src: &'s Source) -> Sink<'s> {
        Sink {
            cfg,
            src,
            rule: "",
            hits: Vec::new(),
        }
    }

    pub fn report(&mut self, pos: Pos, message: impl Into<String>) {
        self.hits.push(Hit {
            rule: self.rule,
            pos,
            message: message.into(),
        });
    }

    pub fn into_hits(self) -> Vec<Hit> {
        self.hits
    }
}

pub fn find(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|r| r.meta.id == id)
}

pub fn ids() -> Vec<&'static str> {
    RULES.iter().map(|r| r.meta.id).collect()
}

/// docs/rules.md, generated from this registry (`stockade audit --list-rules --format markdown`).
pub fn markdown() -> String {
    let mut out = String::from(
        "# `stockade audit` rules\n\n\
         <!-- Generated by `stockade audit --list-rules --format markdown`; do not edit by hand. -->\n\n\
         Suppress one finding with a comment `stockade: ignore[rule-id] reason` on its line or the\n\
         line above (`#` in YAML and TOML, `//` in Jenkinsfiles), or in `.stockade.toml`:\n\n\
         ```toml\n[audit]\ndisable = [\"rule-id\"]\nignore = [\"path/to/file.yml:12\"]\n\
         self_hosted_labels = [\"self-hosted\"]\nrestricted_labels = []\nhosted_labels = [\"ubuntu-latest-16-cores\"]\n\
         [audit.severity]\nrule-id = \"low\"\n```\n\n| rule | severity | reads |\n|---|---|---|\n",
    );
    for r in RULES {
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            r.meta.id, r.meta.docs_anchor, r.meta.severity, r.family
        ));
    }
    let mut family = "";
    for r in RULES {
        if r.family != family {
            family = r.family;
            out.push_str(&format!("\n## {family}\n"));
        }
        out.push_str(&format!(
            "\n### {}\n\nSeverity: **{}**\n\n{}\n\nRemediation: {}\n",
            r.meta.id, r.meta.severity, r.meta.description, r.meta.remediation
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_anchors_match() {
        let mut ids = ids();
        for r in RULES {
            assert_eq!(r.meta.id, r.meta.docs_anchor);
            assert!(!r.meta.description.is_empty() && !r.meta.remediation.is_empty());
        }
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
