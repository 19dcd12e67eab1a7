//! Host paths such as docker.sock, `/` or `/var/lib/docker` mounted into every job make every
//! job's author root on the runner host.

use super::{Check, Rule, Sink};
use crate::dockerargs::is_sensitive_host_path;
use crate::models::runner_config::RunnerConfig;
use stockade_report::{RuleMeta, Severity};

pub static RULE: Rule = Rule {
    meta: RuleMeta {
        id: "gitlab-docker-sensitive-volume",
        severity: Severity::Critical,
        description: "A Docker-executor runner mounts a sensitive host path into every job: the \
            Docker or containerd socket, `/`, `/etc`, `/root`, `/home`, `/proc`, `/sys`, \
            `/var/lib/docker`.",
        remediation: "Remove the mount. For image builds use a rootless builder; for caches use \
            Docker volumes (`/cache`) rather than host paths.",
        docs_anchor: "gitlab-docker-sensitive-volume",
    },
    check: Check::Runner(check),
    family: "GitLab Runner config.toml",
};

fn check(cfg: &RunnerConfig, sink: &mut Sink<'_>) {
    for r in &cfg.runners {
        let Some(d) = r.docker() else { continue };
        for (vol, pos) in d.get("volumes").map(|n| n.strings()).unwrap_or_default() {
            // "/cache" alone is a Docker volume; "host:container[:mode]" is a bind mount.
            let Some((host, _)) = vol.split_once(':') else {
                continue;
            };
            if is_sensitive_host_path(host) {
                sink.report(pos, format!("runner `{}` mounts host path {host} into jobs", r.name));
            }
        }
    }
}
