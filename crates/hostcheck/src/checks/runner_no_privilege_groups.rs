//! `runner-no-privilege-groups`: membership in docker, sudo, wheel, adm, lxd or libvirt is root
//! (or root's logs) by another name, so the runner user must have none of them.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::Ctx;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-no-privilege-groups",
    group: Group::RunnerProcess,
    severity: Severity::High,
    title: "Runner user in no privileged group",
    remediation: "Remove the runner user from docker, sudo, wheel, adm, lxd and libvirt (gpasswd -d USER GROUP); give container builds a rootless or sandboxed builder instead.",
    run,
};

const PRIVILEGED: [&str; 6] = ["docker", "sudo", "wheel", "adm", "lxd", "libvirt"];

fn run(ctx: &Ctx) -> Outcome {
    let users = ctx.users();
    for_each_runner(ctx, |r| {
        let gids = r.job_gids(users);
        if gids.is_empty() {
            let why = users
                .errors
                .first()
                .cloned()
                .unwrap_or_else(|| format!("user {} is not in /etc/passwd", r.job.name));
            return (CheckStatus::Unknown, format!("{}: groups unknown: {why}", r.label()));
        }
        let names: Vec<String> = gids.iter().map(|g| users.group_name(*g)).collect();
        let bad: Vec<&String> = names.iter().filter(|n| PRIVILEGED.contains(&n.as_str())).collect();
        let base = format!("{}: {} in groups {}", r.label(), r.job.name, names.join(","));
        if bad.is_empty() {
            (CheckStatus::Pass, base)
        } else {
            let bad: Vec<&str> = bad.iter().map(|s| s.as_str()).collect();
            (CheckStatus::Fail, format!("{base}: privileged: {}", bad.join(",")))
        }
    })
}
