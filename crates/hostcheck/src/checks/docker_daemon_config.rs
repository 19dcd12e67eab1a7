//! `docker-daemon-config`: the daemon settings that contain a container build (user namespace
//! remapping, no-new-privileges, no inter-container traffic, seccomp) and keep the API off TCP.

use super::{Check, Group, Outcome};
use crate::facts::{Ctx, procs};
use stockade_report::Severity;

pub const CHECK: Check = Check {
    id: "docker-daemon-config",
    group: Group::ContainerBuilds,
    severity: Severity::High,
    title: "Docker daemon hardened (daemon.json)",
    remediation: "In /etc/docker/daemon.json set \"userns-remap\": \"default\", \"no-new-privileges\": true, \"icc\": false, \"live-restore\": true; keep \"hosts\" to unix:// (or tcp:// only with \"tlsverify\": true); never \"seccomp-profile\": \"unconfined\".",
    run,
};

/// The effective settings: daemon.json, overridden by dockerd's command-line flags.
#[derive(Debug, Default)]
struct Settings {
    userns_remap: Option<String>,
    no_new_privileges: Option<bool>,
    icc: Option<bool>,
    live_restore: Option<bool>,
    hosts: Vec<String>,
    tlsverify: Option<bool>,
    seccomp_profile: Option<String>,
}

fn from_json(v: &serde_json::Value) -> Settings {
    let b = |k: &str| v.get(k).and_then(|x| x.as_bool());
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    Settings {
        userns_remap: s("userns-remap"),
        no_new_privileges: b("no-new-privileges"),
        icc: b("icc"),
        live_restore: b("live-restore"),
        hosts: v
            .get("hosts")
            .and_then(|h| h.as_array())
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        tlsverify: b("tlsverify"),
        seccomp_profile: s("seccomp-profile"),
    }
}

fn apply_flags(s: &mut Settings, argv: &[String]) {
    let flag_bool = |name: &str| -> Option<bool> {
        argv.iter().find_map(|a| {
            if a == name {
                Some(true)
            } else {
                a.strip_prefix(&format!("{name}=")).map(|v| v == "true" || v == "1")
            }
        })
    };
    if let Some(v) = procs::arg_value(argv, &["--userns-remap"]) {
        s.userns_remap = Some(v);
    }
    if let Some(v) = flag_bool("--no-new-privileges") {
        s.no_new_privileges = Some(v);
    }
    if let Some(v) = flag_bool("--icc") {
        s.icc = Some(v);
    }
    if let Some(v) = flag_bool("--live-restore") {
        s.live_restore = Some(v);
    }
    if let Some(v) = flag_bool("--tlsverify") {
        s.tlsverify = Some(v);
    }
    if let Some(v) = procs::arg_value(argv, &["--seccomp-profile"]) {
        s.seccomp_profile = Some(v);
    }
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        if a == "-H" || a == "--host" {
            s.hosts.extend(it.next().cloned());
        } else if let Some(v) = a.strip_prefix("--host=").or_else(|| a.strip_prefix("-H=")) {
            s.hosts.push(v.to_string());
        }
    }
}

fn run(ctx: &Ctx) -> Outcome {
    let Some(installed) = ctx.docker_installed() else {
        return Outcome::na("the Docker engine is not installed");
    };
    let mut evidence = vec![format!("Docker engine: {installed}")];
    let mut s = match ctx.daemon_json() {
        Err(e) => return Outcome::unknown(e.to_string()).with(evidence),
        Ok(Some(v)) => {
            evidence.push("/etc/docker/daemon.json read".into());
            from_json(v)
        }
        Ok(None) => {
            evidence.push("/etc/docker/daemon.json absent: the daemon's defaults apply".into());
            Settings::default()
        }
    };
    for p in ctx.procs_or_empty().iter().filter(|p| p.name == "dockerd") {
        evidence.push(format!("{}: {}", p.label(), p.cmdline.join(" ")));
        apply_flags(&mut s, &p.cmdline);
    }
    let mut seen_hosts = Vec::new();
    s.hosts.retain(|h| {
        let new = !seen_hosts.contains(h);
        seen_hosts.push(h.clone());
        new
    });
    let mut bad = Vec::new();
    let mut show = |ok: bool, text: String| {
        evidence.push(format!("{} {text}", if ok { "ok:" } else { "weak:" }));
        if !ok {
            bad.push(text);
        }
    };
    let remap = s.userns_remap.clone().filter(|v| !v.is_empty());
    show(
        remap.is_some(),
        format!("userns-remap = {}", remap.as_deref().unwrap_or("(unset)")),
    );
    show(
        s.no_new_privileges == Some(true),
        format!("no-new-privileges = {}", opt(s.no_new_privileges)),
    );
    show(
        s.icc == Some(false),
        format!("icc = {}", s.icc.map_or("(unset: true)".into(), |v| v.to_string())),
    );
    show(
        s.live_restore == Some(true),
        format!("live-restore = {}", opt(s.live_restore)),
    );
    let tcp: Vec<&String> = s.hosts.iter().filter(|h| h.starts_with("tcp://")).collect();
    if tcp.is_empty() {
        show(
            true,
            format!(
                "hosts = {}",
                if s.hosts.is_empty() {
                    "(default unix socket)".into()
                } else {
                    s.hosts.join(",")
                }
            ),
        );
    } else {
        let tls = s.tlsverify == Some(true);
        show(
            tls,
            format!(
                "hosts include {} {}",
                tcp.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                if tls {
                    "with tlsverify"
                } else {
                    "without tlsverify: the API is open on the network"
                }
            ),
        );
    }
    let unconfined = s.seccomp_profile.as_deref() == Some("unconfined");
    show(
        !unconfined,
        format!(
            "seccomp-profile = {}",
            s.seccomp_profile.as_deref().unwrap_or("(default)")
        ),
    );
    if bad.is_empty() {
        Outcome::pass("userns-remap, no-new-privileges, icc off, live-restore; no plain TCP API; default seccomp")
            .with(evidence)
    } else {
        Outcome::fail(format!("{} weak settings: {}", bad.len(), bad.join("; "))).with(evidence)
    }
}

fn opt(v: Option<bool>) -> String {
    v.map_or("(unset: false)".into(), |b| b.to_string())
}
