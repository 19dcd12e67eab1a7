//! `host-security-updates`: unattended security upgrades are configured, and no installed package
//! is older than the security archive's version (where apt's lists are on the host).

use super::{Check, Group, Outcome, short_list};
use crate::facts::{Ctx, dpkg};
use std::collections::HashMap;
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-security-updates",
    group: Group::RunnerHost,
    severity: Severity::High,
    title: "Security updates applied automatically",
    remediation: "Install unattended-upgrades and set APT::Periodic::Unattended-Upgrade \"1\" (or enable dnf-automatic with apply_updates = yes); apply pending security updates now.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let installed = match ctx.dpkg() {
        Err(e) => return Outcome::unknown(e.to_string()),
        Ok(Some(d)) => &d.installed,
        Ok(None) => return dnf(ctx),
    };
    let mut evidence = Vec::new();
    let mut problems = Vec::new();

    let pkg = installed.get("unattended-upgrades");
    let setting = dpkg::unattended_setting(ctx.host);
    match (&pkg, &setting) {
        (_, Err(e)) => return Outcome::unknown(e.clone()),
        (Some(v), Ok(Some((val, file)))) if val != "0" && !val.is_empty() => evidence.push(format!(
            "unattended-upgrades {v} installed; APT::Periodic::Unattended-Upgrade \"{val}\" in {file}"
        )),
        (Some(v), Ok(other)) => {
            let how = match other {
                Some((val, file)) => format!("\"{val}\" in {file}"),
                None => "not set in /etc/apt/apt.conf.d".into(),
            };
            evidence.push(format!(
                "unattended-upgrades {v} installed; APT::Periodic::Unattended-Upgrade {how}"
            ));
            problems.push("unattended upgrades are not enabled".to_string());
        }
        (None, _) => {
            evidence.push("package unattended-upgrades is not installed".into());
            problems.push("unattended upgrades are not configured".to_string());
        }
    }

    let lists = match dpkg::security_lists(ctx.host) {
        Ok(l) => l,
        Err(e) => return Outcome::unknown(e),
    };
    if lists.is_empty() {
        evidence.push("no security archive lists under /var/lib/apt/lists: pending updates not assessed".into());
    } else {
        let mut newest: HashMap<String, String> = HashMap::new();
        for l in &lists {
            match dpkg::read_list(ctx.host, l) {
                Ok(text) => {
                    for (p, v) in dpkg::parse_packages(&text) {
                        let keep = newest
                            .get(&p)
                            .is_some_and(|old| dpkg::compare_versions(old, &v).is_ge());
                        if !keep {
                            newest.insert(p, v);
                        }
                    }
                }
                Err(e) => return Outcome::unknown(e).with(evidence),
            }
        }
        let mut pending: Vec<String> = installed
            .iter()
            .filter_map(|(p, v)| {
                let new = newest.get(p)?;
                dpkg::compare_versions(v, new)
                    .is_lt()
                    .then(|| format!("{p} {v} -> {new}"))
            })
            .collect();
        pending.sort();
        evidence.push(format!(
            "{} security lists read: {}",
            lists.len(),
            short_list(&lists, 3)
        ));
        if pending.is_empty() {
            evidence.push("no pending security updates".into());
        } else {
            evidence.push(format!(
                "{} pending security updates: {}",
                pending.len(),
                short_list(&pending, 8)
            ));
            problems.push(format!("{} pending security updates", pending.len()));
        }
    }
    if problems.is_empty() {
        Outcome::pass("unattended upgrades enabled; no pending security updates seen").with(evidence)
    } else {
        Outcome::fail(problems.join("; ")).with(evidence)
    }
}

/// Red Hat family: dnf-automatic configured to apply updates, and its timer enabled.
fn dnf(ctx: &Ctx) -> Outcome {
    let conf = match ctx.host.read_optional("/etc/dnf/automatic.conf") {
        Err(e) => return Outcome::unknown(e.to_string()),
        Ok(None) => {
            return if ctx.host.exists("/var/lib/rpm").unwrap_or(false) {
                Outcome::fail("dnf-automatic is not installed (/etc/dnf/automatic.conf absent)")
            } else {
                Outcome::unknown("no dpkg or rpm package database under the root")
            };
        }
        Ok(Some(c)) => c,
    };
    let apply = conf.lines().any(|l| {
        let l = l.replace(' ', "");
        l == "apply_updates=yes" || l == "apply_updates=True" || l == "apply_updates=true"
    });
    let timer = ["dnf-automatic.timer", "dnf-automatic-install.timer"].iter().any(|t| {
        ctx.host
            .exists(&format!("/etc/systemd/system/timers.target.wants/{t}"))
            .unwrap_or(false)
    });
    let ev = vec![format!(
        "/etc/dnf/automatic.conf apply_updates {}; timer {}",
        if apply { "yes" } else { "no" },
        if timer { "enabled" } else { "not enabled" }
    )];
    if apply && timer {
        Outcome::pass("dnf-automatic applies updates").with(ev)
    } else {
        Outcome::fail("dnf-automatic does not apply updates automatically").with(ev)
    }
}
