//! `runner-no-passwordless-sudo`: a NOPASSWD sudo rule for the runner user lets any job become
//! root without a secret.

use super::{Check, Group, Outcome, for_each_runner, no_runners};
use crate::facts::{Ctx, sudoers};
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-no-passwordless-sudo",
    group: Group::RunnerProcess,
    severity: Severity::High,
    title: "No passwordless sudo for the runner user",
    remediation: "Remove NOPASSWD rules that match the runner user (directly, by group or alias, or via ALL) from /etc/sudoers and /etc/sudoers.d.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    if let Some(o) = no_runners(ctx) {
        return o;
    }
    let sudo = match sudoers::load(ctx.host) {
        Err(e) => {
            return for_each_runner(ctx, |r| {
                (CheckStatus::Unknown, format!("{}: sudoers unreadable: {e}", r.label()))
            });
        }
        Ok(s) => s,
    };
    let users = ctx.users();
    for_each_runner(ctx, |r| {
        let Some(s) = &sudo else {
            return (
                CheckStatus::Pass,
                format!("{}: sudo is not installed (no /etc/sudoers)", r.label()),
            );
        };
        let gids = r.job_gids(users);
        let groups: Vec<String> = gids.iter().map(|g| users.group_name(*g)).collect();
        let rules = s.nopasswd_for(&r.job.name, r.job.uid, &groups, &gids);
        if rules.is_empty() {
            (
                CheckStatus::Pass,
                format!(
                    "{}: no NOPASSWD rule applies to {} ({} files read)",
                    r.label(),
                    r.job.name,
                    s.files.len()
                ),
            )
        } else {
            let list: Vec<String> = rules
                .iter()
                .map(|x| format!("{}:{}: {}", x.file, x.line, x.text))
                .collect();
            (
                CheckStatus::Fail,
                format!(
                    "{}: {} may sudo without a password: {}",
                    r.label(),
                    r.job.name,
                    list.join(" | ")
                ),
            )
        }
    })
}
