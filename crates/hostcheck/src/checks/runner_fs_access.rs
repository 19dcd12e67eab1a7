//! `runner-fs-access`: jobs must not be able to change the runner that runs them (its binaries
//! and configuration), and other local users must not be able to write into its work directory.

use super::{Check, Group, Outcome, for_each_runner};
use crate::facts::Ctx;
use crate::facts::runners::Kind;
use crate::host::{Host, Meta};
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-fs-access",
    group: Group::RunnerProcess,
    severity: Severity::Medium,
    title: "Work dir not world-writable; runner binaries and config not writable by the runner user",
    remediation: "Install the runner as root (root-owned, mode 0755/0644, with --disableupdate for GitHub) and give the runner user only its work directory, mode 0700 or 0750.",
    run,
};

/// Can (uid, gids) change this file: owner (who can chmod), group-writable or world-writable.
fn writable_by(m: &Meta, uid: u32, gids: &[u32]) -> Option<&'static str> {
    if m.uid == uid {
        Some("owned by")
    } else if m.mode & 0o020 != 0 && gids.contains(&m.gid) {
        Some("group-writable by a group of")
    } else if m.mode & 0o002 != 0 {
        Some("world-writable, so writable by")
    } else {
        None
    }
}

fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn run(ctx: &Ctx) -> Outcome {
    let users = ctx.users();
    for_each_runner(ctx, |r| {
        let h: &Host = ctx.host;
        let mut bad = Vec::new();
        let mut unknown = Vec::new();
        let mut checked = 0;
        for w in &r.work_dirs {
            match h.stat(w) {
                Ok(m) => {
                    checked += 1;
                    if m.mode & 0o002 != 0 {
                        bad.push(format!("work dir {w} is world-writable (mode {:04o})", m.perm()));
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => unknown.push(e.to_string()),
            }
        }
        match r.job.uid {
            Some(0) => bad.push("jobs run as root and can write every runner file".into()),
            None => unknown.push(format!("user {} is not in /etc/passwd", r.job.name)),
            Some(uid) => {
                let gids = r.job_gids(users);
                let mut targets: Vec<String> = r.binaries.iter().chain(&r.configs).cloned().collect();
                // Whoever can write the directory holding a binary can replace the binary.
                let dirs: Vec<String> = r.binaries.iter().map(|b| parent(b).to_string()).collect();
                // A GitHub runner's install dir holds its binaries and config; gitlab-runner's
                // --working-directory is its own to write.
                let install = r.install_dir.clone().filter(|_| r.kind == Kind::GitHub);
                for d in dirs.into_iter().chain(install) {
                    if !targets.contains(&d) {
                        targets.push(d);
                    }
                }
                for t in targets {
                    match h.stat(&t) {
                        Ok(m) => {
                            checked += 1;
                            if let Some(how) = writable_by(&m, uid, &gids) {
                                bad.push(format!(
                                    "{t} {how} {} (owner {}, mode {:04o})",
                                    r.job.name,
                                    users.describe_uid(m.uid),
                                    m.perm()
                                ));
                            }
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => unknown.push(e.to_string()),
                    }
                }
            }
        }
        if !bad.is_empty() {
            (CheckStatus::Fail, format!("{}: {}", r.label(), bad.join("; ")))
        } else if !unknown.is_empty() {
            (CheckStatus::Unknown, format!("{}: {}", r.label(), unknown.join("; ")))
        } else if checked == 0 {
            (
                CheckStatus::Unknown,
                format!("{}: none of its files were found", r.label()),
            )
        } else {
            (
                CheckStatus::Pass,
                format!(
                    "{}: {checked} paths checked, none writable by {}",
                    r.label(),
                    r.job.name
                ),
            )
        }
    })
}
