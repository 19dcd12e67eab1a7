//! `host-unnecessary-services`: every socket listening beyond loopback is attack surface next
//! to the jobs; only SSH and DHCP clients are expected on a runner host.

use super::{Check, Group, Outcome};
use crate::facts::{Ctx, procs};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "host-unnecessary-services",
    group: Group::RunnerHost,
    severity: Severity::Medium,
    title: "No listening services beyond the allowlist",
    remediation: "Stop and disable services the runner does not need, or bind them to loopback; allowed beyond loopback: ssh (tcp/22) and DHCP clients (udp/68, udp/546).",
    run,
};

fn allowed(l: &procs::Listener) -> bool {
    l.is_loopback() || (l.proto == "tcp" && l.port == 22) || (l.proto == "udp" && (l.port == 68 || l.port == 546))
}

fn run(ctx: &Ctx) -> Outcome {
    let listeners = match procs::listeners(ctx.host) {
        Err(e) => return Outcome::unknown(e),
        Ok(None) => {
            return Outcome::unknown("/proc/net is not there under the root: listening sockets cannot be seen");
        }
        Ok(Some(l)) => l,
    };
    let inodes: Vec<u64> = listeners.iter().map(|l| l.inode).collect();
    let procs = ctx.procs_or_empty();
    let (owners, unreadable) = if listeners.is_empty() {
        (Vec::new(), 0)
    } else {
        procs::socket_owners(ctx.host, procs, &inodes)
    };
    let users = ctx.users();
    let describe = |l: &procs::Listener| {
        let who: Vec<String> = owners
            .iter()
            .filter(|(i, _)| *i == l.inode)
            .filter_map(|(_, pid)| procs.iter().find(|p| p.pid == *pid))
            .map(|p| format!("{} as {}", p.label(), users.describe_uid(p.uid)))
            .collect();
        let who = if who.is_empty() {
            if unreadable > 0 {
                format!(
                    "process not visible (fds of {unreadable} processes unreadable); socket uid {}",
                    l.uid
                )
            } else {
                format!("no process holds it; socket uid {}", l.uid)
            }
        } else {
            who.join(", ")
        };
        format!("{} {who}", l.endpoint())
    };
    let mut seen = Vec::new();
    let mut unexpected = Vec::new();
    let mut expected = Vec::new();
    for l in &listeners {
        let key = (l.proto, l.addr, l.port);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        if allowed(l) {
            expected.push(describe(l));
        } else {
            unexpected.push(describe(l));
        }
    }
    if unexpected.is_empty() {
        Outcome::pass(format!(
            "{} listening sockets, all on loopback or allowlisted",
            expected.len()
        ))
        .with(expected)
    } else {
        let n = unexpected.len();
        let mut ev = unexpected;
        ev.extend(expected.into_iter().map(|e| format!("allowed: {e}")));
        Outcome::fail(format!("{n} listening sockets beyond the allowlist")).with(ev)
    }
}
