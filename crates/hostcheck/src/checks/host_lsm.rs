//! `host-lsm`: seccomp is available to confine jobs, and a mandatory access control LSM
//! (AppArmor with enforcing profiles, or SELinux enforcing) is in force.

use super::{Check, Group, Outcome};
use crate::facts::Ctx;
use crate::host::ErrorKind;
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-lsm",
    group: Group::RunnerHost,
    severity: Severity::Medium,
    title: "Seccomp available; AppArmor or SELinux enforcing",
    remediation: "Boot a kernel with seccomp and AppArmor (apparmor=1 security=apparmor) or SELinux in enforcing mode, and load enforcing profiles.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let h = ctx.host;
    let mut evidence = Vec::new();
    let mut unknown = Vec::new();

    // Seccomp: the kernel lists its filter actions, or reports a Seccomp: field per process.
    let seccomp = match h.read_optional("/proc/sys/kernel/seccomp/actions_avail") {
        Ok(Some(a)) => {
            evidence.push(format!(
                "seccomp actions: {} (/proc/sys/kernel/seccomp/actions_avail)",
                a.trim()
            ));
            Some(true)
        }
        Ok(None) => match h.read_optional("/proc/self/status") {
            Ok(Some(s)) => {
                let has = s.lines().any(|l| l.starts_with("Seccomp:"));
                evidence.push(format!(
                    "seccomp {} (/proc/self/status)",
                    if has { "available" } else { "absent" }
                ));
                Some(has)
            }
            Ok(None) => {
                unknown.push("no /proc under the root to tell whether seccomp is available".to_string());
                None
            }
            Err(e) => {
                unknown.push(e.to_string());
                None
            }
        },
        Err(e) => {
            unknown.push(e.to_string());
            None
        }
    };

    if let Ok(Some(lsm)) = h.read_optional("/sys/kernel/security/lsm") {
        evidence.push(format!("active LSMs: {} (/sys/kernel/security/lsm)", lsm.trim()));
    }
    let sys_present = h.exists("/sys/module").unwrap_or(false) || h.exists("/sys/kernel").unwrap_or(false);

    // AppArmor: enabled in the kernel, and at least one profile in enforce mode.
    let mut mac = None;
    match h.read_optional("/sys/module/apparmor/parameters/enabled") {
        Ok(Some(v)) if v.trim() == "Y" => match h.read_string("/sys/kernel/security/apparmor/profiles") {
            Ok(p) => {
                let enforce = p.lines().filter(|l| l.ends_with("(enforce)")).count();
                let complain = p.lines().filter(|l| l.ends_with("(complain)")).count();
                evidence.push(format!(
                    "AppArmor enabled: {enforce} profiles enforcing, {complain} complaining"
                ));
                if enforce > 0 {
                    mac = Some(format!("AppArmor with {enforce} enforcing profiles"));
                }
            }
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                evidence.push("AppArmor enabled".into());
                unknown.push(format!("AppArmor profile modes unreadable: {e}"));
            }
            Err(e) => {
                evidence.push(format!("AppArmor enabled; no profiles loaded ({e})"));
            }
        },
        Ok(Some(v)) => evidence.push(format!("AppArmor disabled (enabled={})", v.trim())),
        Ok(None) if sys_present => evidence.push("AppArmor not in the kernel".into()),
        Ok(None) => {}
        Err(e) => unknown.push(e.to_string()),
    }
    // SELinux: enforce is 1 when enforcing.
    match h.read_optional("/sys/fs/selinux/enforce") {
        Ok(Some(v)) => {
            let on = v.trim() == "1";
            evidence.push(format!("SELinux {}", if on { "enforcing" } else { "permissive" }));
            if on {
                mac = Some("SELinux enforcing".into());
            }
        }
        Ok(None) if sys_present => evidence.push("SELinux not enabled".into()),
        Ok(None) => {}
        Err(e) => unknown.push(e.to_string()),
    }
    if !sys_present && mac.is_none() {
        unknown.push("no /sys under the root to tell which LSM is in force".into());
    }

    match (seccomp, mac) {
        (Some(true), Some(m)) => Outcome::pass(format!("seccomp available; {m}")).with(evidence),
        (Some(false), _) => Outcome::fail("seccomp is not available in this kernel").with(evidence),
        (_, None) if unknown.is_empty() => Outcome::fail("neither AppArmor nor SELinux is enforcing").with(evidence),
        _ => Outcome::unknown(unknown.join("; ")).with(evidence),
    }
}
