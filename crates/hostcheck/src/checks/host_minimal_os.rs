//! `host-minimal-os`: records how much is installed and enabled, and flags desktop stacks, which
//! have no place on a runner host and bring large attack surface.

use super::{Check, Group, Outcome, short_list};
use crate::facts::{Ctx, units};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-minimal-os",
    group: Group::RunnerHost,
    severity: Severity::Info,
    title: "Minimal OS: installed package and enabled service counts",
    remediation: "Build runner hosts from a minimal server image; remove desktop environments, display servers and packages the runner does not need.",
    run,
};

/// Packages that mean a desktop or display server is installed.
const DESKTOP: [&str; 12] = [
    "xserver-xorg-core",
    "xwayland",
    "gnome-shell",
    "plasma-desktop",
    "plasma-workspace",
    "xfce4-session",
    "lxde-core",
    "mate-session-manager",
    "cinnamon",
    "gdm3",
    "lightdm",
    "sddm",
];

/// Above this many packages a host is not minimal (a Debian server base is a few hundred).
const PACKAGE_LIMIT: usize = 1000;

fn run(ctx: &Ctx) -> Outcome {
    let mut evidence = Vec::new();
    match units::enabled_services(ctx.host) {
        Ok(s) => evidence.push(format!("{} services enabled: {}", s.len(), short_list(&s, 12))),
        Err(e) => evidence.push(format!("enabled services unknown: {e}")),
    }
    let dpkg = match ctx.dpkg() {
        Err(e) => return Outcome::unknown(e.to_string()).with(evidence),
        Ok(Some(d)) => d,
        Ok(None) => {
            return match ctx.host.read_optional("/lib/apk/db/installed") {
                Ok(Some(t)) => {
                    let n = t.lines().filter(|l| l.starts_with("P:")).count();
                    evidence.insert(0, format!("{n} packages installed (/lib/apk/db/installed)"));
                    count_outcome(n, Vec::new(), evidence)
                }
                Ok(None) => Outcome::unknown("no dpkg or apk package database under the root (/var/lib/dpkg/status)")
                    .with(evidence),
                Err(e) => Outcome::unknown(e.to_string()).with(evidence),
            };
        }
    };
    let n = dpkg.installed.len();
    evidence.insert(0, format!("{n} packages installed (/var/lib/dpkg/status)"));
    let desktop: Vec<String> = DESKTOP
        .iter()
        .filter(|p| dpkg.installed.contains_key(**p))
        .map(|p| p.to_string())
        .collect();
    count_outcome(n, desktop, evidence)
}

fn count_outcome(n: usize, desktop: Vec<String>, mut evidence: Vec<String>) -> Outcome {
    if !desktop.is_empty() {
        evidence.push(format!("desktop packages: {}", desktop.join(", ")));
        return Outcome::fail(format!(
            "{n} packages, including a desktop stack ({})",
            short_list(&desktop, 3)
        ))
        .with(evidence);
    }
    if n > PACKAGE_LIMIT {
        return Outcome::warn(format!("{n} packages installed (more than {PACKAGE_LIMIT})")).with(evidence);
    }
    Outcome::pass(format!("{n} packages installed, no desktop stack")).with(evidence)
}
