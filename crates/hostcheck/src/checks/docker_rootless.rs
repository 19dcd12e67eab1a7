//! `docker-rootless`: records whether container root is host root: a rootless daemon, or a
//! rootful one with userns-remap, keeps a container escape from being a host root shell.

use super::{Check, Group, Outcome};
use crate::facts::Ctx;
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "docker-rootless",
    group: Group::ContainerBuilds,
    severity: Severity::Info,
    title: "Rootless Docker or userns-remap in use",
    remediation: "Run Docker rootless (dockerd-rootless-setuptool.sh install) for the build user, or set \"userns-remap\": \"default\" in /etc/docker/daemon.json.",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let Some(installed) = ctx.docker_installed() else {
        return Outcome::na("the Docker engine is not installed");
    };
    let users = ctx.users();
    let mut evidence = vec![format!("Docker engine: {installed}")];
    let procs = ctx.procs_or_empty();
    let daemons: Vec<_> = procs.iter().filter(|p| p.name == "dockerd").collect();
    for d in &daemons {
        evidence.push(format!("{} as {}", d.label(), users.describe_uid(d.uid)));
    }
    if let Some(d) = daemons.iter().find(|d| d.uid != 0) {
        return Outcome::pass(format!("rootless: {} runs as {}", d.label(), users.describe_uid(d.uid))).with(evidence);
    }
    if let Some(k) = procs.iter().find(|p| p.name == "rootlesskit") {
        return Outcome::pass(format!("rootless: {} runs as {}", k.label(), users.describe_uid(k.uid))).with(evidence);
    }
    match ctx.daemon_json() {
        Err(e) => Outcome::unknown(e.to_string()).with(evidence),
        Ok(v) => match v
            .and_then(|v| v.get("userns-remap"))
            .and_then(|x| x.as_str())
            .filter(|s| !s.is_empty())
        {
            Some(r) => Outcome::pass(format!("userns-remap = {r} (/etc/docker/daemon.json)")).with(evidence),
            None => {
                let who = if daemons.is_empty() {
                    "the daemon would run as root"
                } else {
                    "dockerd runs as root"
                };
                Outcome::fail(format!("{who} without userns-remap: container root is host root")).with(evidence)
            }
        },
    }
}
