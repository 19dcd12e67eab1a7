//! `host-disk-encryption`: the root file system and the runners' work directories sit on
//! dm-crypt (LUKS), so that a lost disk or snapshot does not leak sources and secrets of jobs.

use super::{Check, Group, Outcome, combine};
use crate::facts::{Ctx, mounts};
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "host-disk-encryption",
    group: Group::RunnerHost,
    severity: Severity::Medium,
    title: "Root and runner work directories encrypted at rest",
    remediation: "Put the root file system and the runner work directories on LUKS (dm-crypt) volumes, or keep work directories on tmpfs.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let mut paths = vec!["/".to_string()];
    if let Ok(runners) = ctx.runners() {
        for r in runners {
            for w in &r.work_dirs {
                if !paths.contains(w) {
                    paths.push(w.clone());
                }
            }
        }
    }
    let mountinfo = match ctx.host.read_optional("/proc/self/mountinfo") {
        Ok(m) => m,
        Err(e) => return Outcome::unknown(e.to_string()),
    };
    let parts = match mountinfo {
        Some(text) => {
            let table = mounts::parse_mountinfo(&text);
            paths.iter().map(|p| from_mountinfo(ctx, &table, p)).collect()
        }
        None => paths
            .iter()
            .map(|p| match mounts::crypt_from_fstab(ctx.host, p) {
                Err(e) => (CheckStatus::Unknown, format!("{p}: {e}")),
                Ok(None) => (
                    CheckStatus::Unknown,
                    format!("{p}: no /proc/self/mountinfo and no /etc/fstab entry under the root"),
                ),
                Ok(Some((desc, true))) => (CheckStatus::Pass, format!("{p}: {desc}, mapped by /etc/crypttab")),
                Ok(Some((desc, false))) => (CheckStatus::Fail, format!("{p}: {desc}, not in /etc/crypttab")),
            })
            .collect(),
    };
    combine(parts, Vec::new())
}

fn from_mountinfo(ctx: &Ctx, table: &[mounts::Mount], path: &str) -> (CheckStatus, String) {
    let Some(m) = mounts::mount_of(table, path) else {
        return (CheckStatus::Unknown, format!("{path}: no mount holds it"));
    };
    let desc = format!(
        "{path}: {} on {} ({}, dev {})",
        m.source, m.mount_point, m.fstype, m.dev
    );
    if m.dev.starts_with("0:") {
        return match m.fstype.as_str() {
            "tmpfs" | "ramfs" => (CheckStatus::Pass, format!("{desc}: in memory, not on disk")),
            _ => (
                CheckStatus::Unknown,
                format!("{desc}: not a block device, its backing store is not visible"),
            ),
        };
    }
    match mounts::dev_is_crypt(ctx.host, &m.dev, 0) {
        Ok(true) => (CheckStatus::Pass, format!("{desc}: dm-crypt")),
        Ok(false) => (CheckStatus::Fail, format!("{desc}: not encrypted")),
        Err(e) => (CheckStatus::Unknown, format!("{desc}: {e}")),
    }
}
