//! `runner-capabilities`: a runner process with capabilities in its effective or permitted set
//! passes them to jobs; both sets must be empty.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::{Ctx, procs};
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-capabilities",
    group: Group::RunnerProcess,
    severity: Severity::Medium,
    title: "Runner process holds no capabilities",
    remediation: "Run the runner as a non-root user with no AmbientCapabilities= and an empty CapabilityBoundingSet= in its unit.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    for_each_runner(ctx, |r| {
        if let Some(p) = &r.process {
            let text = format!(
                "{}: CapEff {}, CapPrm {}",
                r.label(),
                procs::cap_names(p.cap_eff),
                procs::cap_names(p.cap_prm)
            );
            return if p.cap_eff == 0 && p.cap_prm == 0 {
                (CheckStatus::Pass, text)
            } else {
                (CheckStatus::Fail, text)
            };
        }
        // Only a unit: what systemd would grant when it starts the service.
        let Some(u) = &r.unit else {
            return (
                CheckStatus::Unknown,
                format!("{}: neither process nor unit readable", r.label()),
            );
        };
        let ambient = u.get("Service", "AmbientCapabilities");
        let bounding = u.get_raw("Service", "CapabilityBoundingSet");
        let text = format!(
            "{}: User={}, AmbientCapabilities={}, CapabilityBoundingSet={} ({})",
            r.label(),
            u.user(),
            ambient.unwrap_or("(none)"),
            match bounding {
                Some("") => "(empty)",
                Some(b) => b,
                None => "(all)",
            },
            u.path
        );
        match (r.service.uid, ambient) {
            (_, Some(_)) => (CheckStatus::Fail, text),
            (Some(0), _) if bounding.is_none_or(|b| !b.trim().is_empty()) => {
                (CheckStatus::Fail, format!("{text}: root with capabilities"))
            }
            (None, _) => (CheckStatus::Unknown, format!("{text}: user not in /etc/passwd")),
            _ => (CheckStatus::Pass, text),
        }
    })
}
