//! `host-kernel-hardening`: the sysctls that keep a job from reading kernel addresses, tracing
//! or injecting into other processes, or abusing links in shared directories.

use super::{Check, Group, Outcome};
use crate::facts::{Ctx, sysctl};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-kernel-hardening",
    group: Group::RunnerHost,
    severity: Severity::Medium,
    title: "Kernel hardening sysctls",
    remediation: "Set in /etc/sysctl.d/: kernel.unprivileged_bpf_disabled=1, kernel.kptr_restrict=2, kernel.dmesg_restrict=1, kernel.yama.ptrace_scope=2, dev.tty.legacy_tiocsti=0, fs.protected_symlinks=1, fs.protected_hardlinks=1, fs.protected_fifos=2, fs.protected_regular=2.",
    run,
};

/// (key, minimum acceptable value, or the exact value wanted when `exact`).
const WANT: [(&str, i64, bool); 9] = [
    ("kernel.unprivileged_bpf_disabled", 1, false),
    ("kernel.kptr_restrict", 1, false),
    ("kernel.dmesg_restrict", 1, false),
    ("kernel.yama.ptrace_scope", 1, false),
    ("dev.tty.legacy_tiocsti", 0, true),
    ("fs.protected_symlinks", 1, false),
    ("fs.protected_hardlinks", 1, false),
    ("fs.protected_fifos", 1, false),
    ("fs.protected_regular", 1, false),
];

fn run(ctx: &Ctx) -> Outcome {
    let configured = if ctx.host.exists("/proc/sys").unwrap_or(false) {
        Vec::new()
    } else {
        sysctl::configured(ctx.host)
    };
    let mut evidence = Vec::new();
    let mut weak = Vec::new();
    let mut unknown = Vec::new();
    let running = ctx.host.exists("/proc/sys").unwrap_or(false);
    for (key, want, exact) in WANT {
        let want_txt = if exact {
            format!("want {want}")
        } else {
            format!("want >= {want}")
        };
        match sysctl::get(ctx.host, key, &configured) {
            sysctl::Value::Found(v, from) => {
                let ok = v
                    .parse::<i64>()
                    .is_ok_and(|n| if exact { n == want } else { n >= want });
                evidence.push(format!("{key} = {v} ({want_txt}) from {from}"));
                if !ok {
                    weak.push(format!("{key}={v}"));
                }
            }
            sysctl::Value::Absent if running => {
                // The kernel lacks the knob: Yama not built in, or a kernel before 6.2 where
                // TIOCSTI injection is always allowed. Either way the protection is missing.
                evidence.push(format!(
                    "{key} absent from /proc/sys ({want_txt}): the kernel lacks this protection"
                ));
                weak.push(format!("{key} absent"));
            }
            sysctl::Value::Absent => {
                evidence.push(format!(
                    "{key}: not running and not set in sysctl.d; the kernel default applies"
                ));
                unknown.push(key.to_string());
            }
            sysctl::Value::Unreadable(e) => {
                evidence.push(format!("{key}: {e}"));
                unknown.push(e);
            }
        }
    }
    if !weak.is_empty() {
        Outcome::fail(format!(
            "{} of {} settings weak: {}",
            weak.len(),
            WANT.len(),
            weak.join(", ")
        ))
        .with(evidence)
    } else if !unknown.is_empty() {
        Outcome::unknown(format!("could not read: {}", unknown.join(", "))).with(evidence)
    } else {
        Outcome::pass(format!("all {} settings hardened", WANT.len())).with(evidence)
    }
}
