//! `runner-non-root`: a runner whose jobs run as root hands every job the whole host.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::Ctx;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-non-root",
    group: Group::RunnerProcess,
    severity: Severity::High,
    title: "Runner service user is not root",
    remediation: "Run the runner service as a dedicated unprivileged user (User= in its unit; gitlab-runner --user), never as root.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    for_each_runner(ctx, |r| {
        let who = format!(
            "{}: service user {}, jobs run as {}",
            r.label(),
            r.service.name,
            r.job.name
        );
        match (r.service.uid, r.job.uid) {
            (_, Some(0)) => (CheckStatus::Fail, who),
            (_, None) => (
                CheckStatus::Unknown,
                format!("{who}: user {} is not in /etc/passwd", r.job.name),
            ),
            (Some(0), Some(_)) => (CheckStatus::Warn, format!("{who}: the service itself runs as root")),
            (_, Some(_)) => (CheckStatus::Pass, who),
        }
    })
}
