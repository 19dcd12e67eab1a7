//! `docker-socket-exposure`: whoever can open the Docker socket is root on the host; list every
//! non-root user who can, from the socket's mode and group (or the docker.socket unit's).

use super::{Check, Group, Outcome, short_list};
use crate::facts::{Ctx, docker, units};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "docker-socket-exposure",
    group: Group::ContainerBuilds,
    severity: Severity::Critical,
    title: "Docker socket reachable by root only",
    remediation: "Keep /run/docker.sock root:docker mode 0660 with an empty docker group (gpasswd -d USER docker), never 0666; give builds a rootless daemon or a sandbox instead of the socket.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let Some(installed) = ctx.docker_installed() else {
        return Outcome::na("the Docker engine is not installed");
    };
    let users = ctx.users();
    let mut evidence = vec![format!("Docker engine: {installed}")];
    // (mode, owner uid, group gid, where)
    let mut seen: Option<(u32, u32, u32, String)> = None;
    for s in docker::SOCKETS {
        match ctx.host.stat(s) {
            Ok(m) => {
                seen = Some((m.perm(), m.uid, m.gid, s.to_string()));
                break;
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Outcome::unknown(e.to_string()).with(evidence),
        }
    }
    if seen.is_none() {
        match units::load(ctx.host, "docker.socket") {
            Err(e) => return Outcome::unknown(e).with(evidence),
            Ok(None) => {}
            Ok(Some(u)) => {
                // systemd's defaults: SocketMode=0666, owned by root:root.
                let mode = u
                    .get("Socket", "SocketMode")
                    .and_then(|m| u32::from_str_radix(m, 8).ok())
                    .unwrap_or(0o666);
                let uid = match u.get("Socket", "SocketUser") {
                    None | Some("root") => 0,
                    Some(n) => users.by_name(n).map_or(u32::MAX, |x| x.uid),
                };
                let gid = match u.get("Socket", "SocketGroup") {
                    None | Some("root") => 0,
                    Some(n) => match users.group_by_name(n) {
                        Some(g) => g.gid,
                        None => {
                            return Outcome::unknown(format!("{}: SocketGroup={n} is not in /etc/group", u.path))
                                .with(evidence);
                        }
                    },
                };
                seen = Some((
                    mode,
                    uid,
                    gid,
                    format!("{} (socket not present; as configured)", u.path),
                ));
            }
        }
    }
    let Some((mode, uid, gid, wher)) = seen else {
        return Outcome::unknown("no Docker socket and no docker.socket unit under the root").with(evidence);
    };
    evidence.push(format!(
        "{wher}: mode {mode:04o}, owner {}, group {}",
        users.describe_uid(uid),
        users.group_name(gid)
    ));
    let mut who = Vec::new();
    if mode & 0o006 == 0o006 {
        return Outcome::fail(format!(
            "the socket is world-accessible (mode {mode:04o}): every local user is root"
        ))
        .with(evidence);
    }
    if uid != 0 && mode & 0o600 == 0o600 {
        who.push(format!("{} (owner)", users.describe_uid(uid)));
    }
    if mode & 0o060 == 0o060 && gid != 0 {
        for m in users.members_of(gid) {
            if m != "root" && !who.iter().any(|w| w.starts_with(&m)) {
                who.push(m);
            }
        }
    }
    if who.is_empty() {
        Outcome::pass(format!(
            "only root can reach the socket (group {} has no other members)",
            users.group_name(gid)
        ))
        .with(evidence)
    } else {
        evidence.push(format!("can reach it: {}", who.join(", ")));
        Outcome::fail(format!(
            "{} non-root users can reach the Docker socket: {}",
            who.len(),
            short_list(&who, 6)
        ))
        .with(evidence)
    }
}
