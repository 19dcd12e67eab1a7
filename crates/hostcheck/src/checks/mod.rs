//! The checklist: one check per file, registered in `ALL` in the order the checklist reads.
//! A check gets the shared facts (`Ctx`) and returns an `Outcome`; it never prints or renders.

use crate::facts::Ctx;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

mod docker_daemon_config;
mod docker_privileged_containers;
mod docker_rootless;
mod docker_socket_exposure;
mod host_audit_logging;
mod host_disk_encryption;
mod host_kernel_hardening;
mod host_lsm;
mod host_minimal_os;
mod host_security_updates;
mod host_unnecessary_services;
mod runner_capabilities;
mod runner_egress_restricted;
mod runner_ephemeral;
mod runner_fs_access;
mod runner_no_passwordless_sudo;
mod runner_no_persistence;
mod runner_no_privilege_groups;
mod runner_non_root;
mod runner_uses_stockade;

/// Every check, in checklist order.
pub const ALL: &[&Check] = &[
    &host_minimal_os::CHECK,
    &host_security_updates::CHECK,
    &host_unnecessary_services::CHECK,
    &host_disk_encryption::CHECK,
    &host_audit_logging::CHECK,
    &host_kernel_hardening::CHECK,
    &host_lsm::CHECK,
    &runner_non_root::CHECK,
    &runner_no_privilege_groups::CHECK,
    &runner_no_passwordless_sudo::CHECK,
    &runner_capabilities::CHECK,
    &runner_fs_access::CHECK,
    &runner_ephemeral::CHECK,
    &runner_no_persistence::CHECK,
    &runner_egress_restricted::CHECK,
    &runner_uses_stockade::CHECK,
    &docker_daemon_config::CHECK,
    &docker_socket_exposure::CHECK,
    &docker_privileged_containers::CHECK,
    &docker_rootless::CHECK,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    RunnerHost,
    RunnerProcess,
    ContainerBuilds,
}

impl Group {
    pub fn label(self) -> &'static str {
        match self {
            Group::RunnerHost => "Runner host",
            Group::RunnerProcess => "Runner process",
            Group::ContainerBuilds => "Container builds",
        }
    }
}

pub struct Check {
    pub id: &'static str,
    pub group: Group,
    pub severity: Severity,
    pub title: &'static str,
    pub remediation: &'static str,
    pub run: fn(&Ctx) -> Outcome,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: CheckStatus,
    pub reason: String,
    pub evidence: Vec<String>,
}

impl Outcome {
    pub fn new(status: CheckStatus, reason: impl Into<String>) -> Self {
        Outcome {
            status,
            reason: reason.into(),
            evidence: Vec::new(),
        }
    }
    pub fn pass(reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Pass, reason)
    }
    pub fn fail(reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Fail, reason)
    }
    pub fn warn(reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Warn, reason)
    }
    pub fn na(reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::NotApplicable, reason)
    }
    pub fn unknown(reason: impl Into<String>) -> Self {
        Self::new(CheckStatus::Unknown, reason)
    }
    pub fn with(mut self, evidence: Vec<String>) -> Self {
        self.evidence.extend(evidence);
        self
    }
}

/// How bad a status is when several parts (runners, settings) make one result.
fn rank(s: CheckStatus) -> u8 {
    match s {
        CheckStatus::Fail => 4,
        CheckStatus::Unknown => 3,
        CheckStatus::Warn => 2,
        CheckStatus::Pass => 1,
        CheckStatus::NotApplicable => 0,
    }
}

/// One result from parts: the worst status wins, its parts' texts make the reason, and every
/// part's text is evidence.
pub fn combine(parts: Vec<(CheckStatus, String)>, extra_evidence: Vec<String>) -> Outcome {
    let worst = parts
        .iter()
        .map(|(s, _)| *s)
        .max_by_key(|s| rank(*s))
        .unwrap_or(CheckStatus::NotApplicable);
    // The first worst part says why; the evidence lists every part.
    let worst_parts: Vec<&str> = parts
        .iter()
        .filter(|(s, _)| *s == worst)
        .map(|(_, t)| t.as_str())
        .collect();
    let reason = match worst_parts.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    };
    let mut evidence: Vec<String> = parts.into_iter().map(|(_, t)| t).collect();
    evidence.extend(extra_evidence);
    Outcome {
        status: worst,
        reason,
        evidence,
    }
}

/// The outcome when there is no runner to judge: not applicable, or unknown if processes
/// could not be listed.
pub fn no_runners(ctx: &Ctx) -> Option<Outcome> {
    match ctx.runners() {
        Err(e) => Some(Outcome::unknown(e.to_string())),
        Ok([]) => Some(Outcome::na(no_runner_reason(ctx))),
        Ok(_) => None,
    }
}

/// Runs `per_runner` for each runner found; not applicable when there is none.
pub fn for_each_runner(
    ctx: &Ctx,
    per_runner: impl Fn(&crate::facts::runners::Runner) -> (CheckStatus, String),
) -> Outcome {
    if let Some(o) = no_runners(ctx) {
        return o;
    }
    let runners = ctx.runners().unwrap_or(&[]);
    combine(runners.iter().map(per_runner).collect(), Vec::new())
}

pub fn no_runner_reason(ctx: &Ctx) -> String {
    if ctx.host.is_live() || ctx.host.exists("/proc/1").unwrap_or(false) {
        "no runner process or service unit found".into()
    } else {
        "no runner service unit found (no processes under this root)".into()
    }
}

/// "a, b, c and 4 more" for long evidence lists.
pub fn short_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}
