//! `docker-privileged-containers`: a privileged container, or one with host-reaching capabilities
//! or the Docker socket, is the host; find them through the API (read-only GETs) or on disk.

use super::{Check, Group, Outcome};
use crate::facts::{Ctx, docker};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "docker-privileged-containers",
    group: Group::ContainerBuilds,
    severity: Severity::High,
    title: "No privileged containers running",
    remediation: "Stop containers that run --privileged, with --cap-add SYS_ADMIN (or other host-reaching capabilities) or with the Docker socket mounted; set privileged = false in gitlab-runner's [runners.docker].",
    run,
};

fn run(ctx: &Ctx) -> Outcome {
    let Some(installed) = ctx.docker_installed() else {
        return Outcome::na("the Docker engine is not installed");
    };
    let mut evidence = vec![format!("Docker engine: {installed}")];
    let mut errors = Vec::new();
    let mut containers = None;
    for s in docker::SOCKETS {
        match ctx.host.lstat(s) {
            Ok(m) if m.file_type == crate::host::Kind::Socket || m.file_type == crate::host::Kind::Symlink => {}
            Ok(_) => continue,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        }
        match docker::containers_via_api(ctx.host, s) {
            Ok(c) => {
                evidence.push(format!(
                    "{} running containers listed through the Docker API on {s}",
                    c.len()
                ));
                containers = Some(c);
                break;
            }
            Err(e) => errors.push(e),
        }
    }
    if containers.is_none() {
        match docker::containers_on_disk(ctx.host) {
            Ok(Some(c)) => {
                evidence.push(format!(
                    "{} running containers read from /var/lib/docker/containers (no API answer)",
                    c.len()
                ));
                containers = Some(c);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let mut bad = Vec::new();
    for c in containers.iter().flatten() {
        let f = c.findings();
        if f.is_empty() {
            evidence.push(format!("container {} ({}): unprivileged", c.name, c.id));
        } else {
            bad.push(format!("container {} ({}): {}", c.name, c.id, f.join(", ")));
        }
    }
    // Containers the runner will start: gitlab-runner's docker executor settings.
    if let Ok(runners) = ctx.runners() {
        for r in runners {
            for g in r.gitlab.iter().flat_map(|c| c.runners.iter().map(move |x| (c, x))) {
                let (cfg, x) = g;
                if !x.executor.starts_with("docker") {
                    continue;
                }
                if x.docker_privileged {
                    bad.push(format!(
                        "gitlab runner {} starts job containers with privileged = true ({})",
                        x.name, cfg.path
                    ));
                }
                if x.docker_volumes
                    .iter()
                    .any(|v| v.split(':').next().is_some_and(|s| s.ends_with("docker.sock")))
                {
                    bad.push(format!(
                        "gitlab runner {} mounts the Docker socket into job containers ({})",
                        x.name, cfg.path
                    ));
                }
            }
        }
    }
    for e in &errors {
        evidence.push(format!("not read: {e}"));
    }
    if !bad.is_empty() {
        let n = bad.len();
        evidence.extend(bad.iter().cloned());
        return Outcome::fail(format!(
            "{n} privileged or host-reaching containers: {}{}",
            bad[0],
            if n > 1 {
                format!(" (and {} more)", n - 1)
            } else {
                String::new()
            }
        ))
        .with(evidence);
    }
    match containers {
        Some(c) => Outcome::pass(format!("{} running containers, none privileged", c.len())).with(evidence),
        None if errors.is_empty() => {
            Outcome::pass("no Docker socket answers and no container state on disk: no running containers")
                .with(evidence)
        }
        None => Outcome::unknown(errors.join("; ")).with(evidence),
    }
}
