//! `runner-no-persistence`: what one job leaves behind (checkouts, caches, credentials) is what
//! the next job can read or poison; work dirs, /tmp and the runner's home should hold none.

use super::{Check, Group, Outcome, for_each_runner, short_list};
use crate::facts::Ctx;
use crate::host::Host;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-no-persistence",
    group: Group::RunnerProcess,
    severity: Severity::Medium,
    title: "No leftovers of earlier jobs",
    remediation: "Use ephemeral runners, or wipe the work directory, the runner user's /tmp files and home caches and credentials after every job (e.g. a job-completed hook).",
    run,
};

/// Things jobs leave in a home directory: credentials first, then caches that can be poisoned.
const HOME_LEFTOVERS: [&str; 14] = [
    ".docker/config.json",
    ".git-credentials",
    ".netrc",
    ".npmrc",
    ".pypirc",
    ".ssh/id_rsa",
    ".ssh/id_ed25519",
    ".cache",
    ".npm",
    ".m2",
    ".gradle",
    ".cargo/registry",
    "go/pkg",
    ".nuget",
];

/// Bounded, so that a huge /tmp cannot make the check slow.
const TMP_SCAN_LIMIT: usize = 20_000;

fn run(ctx: &Ctx) -> Outcome {
    let users = ctx.users();
    for_each_runner(ctx, |r| {
        let h: &Host = ctx.host;
        let mut left = Vec::new();
        let mut unknown = Vec::new();
        for w in &r.work_dirs {
            match h.read_dir(w) {
                Ok(entries) if !entries.is_empty() => left.push(format!("{w}: {}", short_list(&entries, 6))),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => unknown.push(e.to_string()),
            }
        }
        if let Some(uid) = r.job.uid.filter(|u| *u != 0) {
            for tmp in ["/tmp", "/var/tmp"] {
                match h.read_dir(tmp) {
                    Ok(entries) => {
                        let mine: Vec<String> = entries
                            .iter()
                            .take(TMP_SCAN_LIMIT)
                            .filter(|e| h.lstat(&format!("{tmp}/{e}")).is_ok_and(|m| m.uid == uid))
                            .cloned()
                            .collect();
                        if !mine.is_empty() {
                            left.push(format!("{tmp}: {} owned by {}", short_list(&mine, 6), r.job.name));
                        }
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => unknown.push(e.to_string()),
                }
            }
        }
        if let Some(home) = r.job_home(users).filter(|h| h != "/" && !h.is_empty()) {
            let mut found = Vec::new();
            for rel in HOME_LEFTOVERS {
                let p = format!("{}/{rel}", home.trim_end_matches('/'));
                match h.exists(&p) {
                    Ok(true) => found.push(rel.to_string()),
                    Ok(false) => {}
                    Err(e) => {
                        unknown.push(e.to_string());
                        break;
                    }
                }
            }
            if !found.is_empty() {
                left.push(format!("{home}: {}", found.join(", ")));
            }
        }
        if !left.is_empty() {
            (CheckStatus::Fail, format!("{}: {}", r.label(), left.join("; ")))
        } else if !unknown.is_empty() {
            (CheckStatus::Unknown, format!("{}: {}", r.label(), unknown.join("; ")))
        } else {
            (
                CheckStatus::Pass,
                format!("{}: work dirs, /tmp and home hold nothing from earlier jobs", r.label()),
            )
        }
    })
}
