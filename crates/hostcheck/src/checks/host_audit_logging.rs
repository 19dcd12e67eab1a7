//! `host-audit-logging`: what jobs did on the host must survive them: auditd running with rules,
//! or journald keeping its journal on disk.

use super::{Check, Group, Outcome};
use crate::facts::{Ctx, units};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-audit-logging",
    group: Group::RunnerHost,
    severity: Severity::Medium,
    title: "Audit logging: auditd with rules, or persistent journald",
    remediation: "Run auditd with rules in /etc/audit/rules.d (e.g. execve and privilege changes), or set Storage=persistent in /etc/systemd/journald.conf.",
    run,
};

/// Running (when processes are visible) or else enabled at boot.
fn active(ctx: &Ctx, comm: &str, unit: &str) -> Option<String> {
    let procs = ctx.procs_or_empty();
    if !procs.is_empty() {
        return procs
            .iter()
            .find(|p| p.name == comm)
            .map(|p| format!("{} running", p.label()));
    }
    units::enabled_services(ctx.host)
        .ok()?
        .into_iter()
        .find(|s| s == unit)
        .map(|s| format!("{s} enabled (no processes under this root)"))
}

fn run(ctx: &Ctx) -> Outcome {
    let mut evidence = Vec::new();
    let mut unknown = None;

    let auditd = active(ctx, "auditd", "auditd.service");
    let mut rules = 0usize;
    if let Some(a) = &auditd {
        evidence.push(a.clone());
        let mut files = vec!["/etc/audit/audit.rules".to_string()];
        match ctx.host.read_dir_optional("/etc/audit/rules.d") {
            Ok(names) => files.extend(
                names
                    .into_iter()
                    .filter(|n| n.ends_with(".rules"))
                    .map(|n| format!("/etc/audit/rules.d/{n}")),
            ),
            Err(e) => unknown = Some(e.to_string()),
        }
        for f in files {
            match ctx.host.read_optional(&f) {
                Ok(Some(t)) => {
                    let n = t
                        .lines()
                        .map(str::trim)
                        .filter(|l| l.starts_with("-w ") || l.starts_with("-a "))
                        .count();
                    evidence.push(format!("{f}: {n} watch/syscall rules"));
                    rules += n;
                }
                Ok(None) => {}
                Err(e) => unknown = Some(e.to_string()),
            }
        }
    } else {
        evidence.push("auditd is not running".into());
    }
    if auditd.is_some() && rules > 0 {
        return Outcome::pass(format!("auditd active with {rules} rules")).with(evidence);
    }

    // journald: Storage= from journald.conf and its drop-ins; the default is "auto", which keeps
    // the journal on disk only if /var/log/journal exists.
    let mut storage = ("auto".to_string(), "default".to_string());
    let mut files = vec!["/etc/systemd/journald.conf".to_string()];
    for dir in ["/usr/lib/systemd/journald.conf.d", "/etc/systemd/journald.conf.d"] {
        for n in ctx.host.read_dir_optional(dir).unwrap_or_default() {
            if n.ends_with(".conf") {
                files.push(format!("{dir}/{n}"));
            }
        }
    }
    for f in &files {
        match ctx.host.read_optional(f) {
            Ok(Some(t)) => {
                for l in t.lines().map(str::trim) {
                    if let Some(v) = l.strip_prefix("Storage=") {
                        storage = (v.trim().to_string(), f.clone());
                    }
                }
            }
            Ok(None) => {}
            Err(e) => unknown = Some(e.to_string()),
        }
    }
    let journal_dir = ctx.host.exists("/var/log/journal").unwrap_or(false);
    let persistent = storage.0 == "persistent" || (storage.0 == "auto" && journal_dir);
    let journald = active(ctx, "systemd-journal", "systemd-journald.service").or_else(|| {
        // journald is static (never "enabled"); on an image, its binary stands for it.
        (ctx.procs_or_empty().is_empty()
            && ["/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"]
                .iter()
                .any(|b| ctx.host.exists(b).unwrap_or(false)))
        .then(|| "systemd-journald installed (no processes under this root)".to_string())
    });
    evidence.push(format!(
        "journald {}; Storage={} ({}); /var/log/journal {}",
        journald.as_deref().unwrap_or("not running"),
        storage.0,
        storage.1,
        if journal_dir { "exists" } else { "absent" }
    ));
    if journald.is_some() && persistent {
        return Outcome::pass("journald keeps a persistent journal").with(evidence);
    }
    if let Some(u) = unknown {
        return Outcome::unknown(u).with(evidence);
    }
    let why = match (auditd.is_some(), journald.is_some()) {
        (true, _) => "auditd has no rules and the journal is not persistent",
        (false, true) => "auditd is not running and the journal is not persistent",
        (false, false) => "neither auditd nor journald is running",
    };
    Outcome::fail(why).with(evidence)
}
