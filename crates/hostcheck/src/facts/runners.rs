//! Finds the CI runners on the host (GitHub Actions `Runner.Listener`, `gitlab-runner`, Jenkins
//! `agent.jar`) from processes and service units, with the users, files and settings they use.
//!
//! Every runner-* check reads this one model, so that "which runner, as whom, with which files"
//! is decided once; what could not be read is kept in `notes` for `unknown` reasons.

use super::procs::{self, Proc};
use super::units::{self, Unit};
use super::users::Users;
use crate::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    GitHub,
    GitLab,
    Jenkins,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::GitHub => "GitHub Actions runner",
            Kind::GitLab => "GitLab Runner",
            Kind::Jenkins => "Jenkins agent",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerConfigError {
    #[error("{path}: not valid JSON: {source}")]
    RunnerJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: not valid TOML: {}", one_line(source))]
    GitLabToml {
        path: String,
        #[source]
        source: toml::de::Error,
    },
}

fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The fields of a GitHub runner's `.runner` file that matter here (camelCase, UTF-8 with BOM).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitHubSettings {
    pub path: String,
    pub agent_name: String,
    pub ephemeral: bool,
    pub disable_update: bool,
    pub work_folder: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitLabRunner {
    pub name: String,
    pub executor: String,
    pub builds_dir: Option<String>,
    pub cache_dir: Option<String>,
    /// config_exec, prepare_exec, run_exec, cleanup_exec of a custom executor.
    pub custom_execs: Vec<String>,
    pub docker_privileged: bool,
    pub docker_volumes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct GitLabConfig {
    pub path: String,
    pub runners: Vec<GitLabRunner>,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: Option<u32>,
    /// Name as configured or looked up; "uid N" when only the number is known.
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub kind: Kind,
    /// Where it was found: "pid 812 Runner.Listener" or a unit file path.
    pub origin: String,
    pub process: Option<Proc>,
    pub unit: Option<Unit>,
    /// The user the runner service runs as.
    pub service: Identity,
    /// The user jobs run as (gitlab-runner's `--user`, otherwise the service user).
    pub job: Identity,
    pub install_dir: Option<String>,
    pub binaries: Vec<String>,
    pub configs: Vec<String>,
    pub work_dirs: Vec<String>,
    pub jit: bool,
    pub github: Option<GitHubSettings>,
    /// KEY=VALUE lines of the GitHub runner's `.env` (where job hooks are configured).
    pub github_env: Vec<(String, String)>,
    pub gitlab: Option<GitLabConfig>,
    /// What could not be read about this runner, as reasons.
    pub notes: Vec<String>,
}

impl Runner {
    fn new(kind: Kind, origin: String) -> Runner {
        Runner {
            kind,
            origin,
            process: None,
            unit: None,
            service: Identity {
                uid: None,
                name: String::new(),
            },
            job: Identity {
                uid: None,
                name: String::new(),
            },
            install_dir: None,
            binaries: Vec::new(),
            configs: Vec::new(),
            work_dirs: Vec::new(),
            jit: false,
            github: None,
            github_env: Vec::new(),
            gitlab: None,
            notes: Vec::new(),
        }
    }

    /// "GitHub Actions runner (pid 812 Runner.Listener)".
    pub fn label(&self) -> String {
        format!("{} ({})", self.kind.label(), self.origin)
    }

    /// Supplementary and primary gids of the job user: from the live process when jobs run as
    /// the process's own user, from /etc/group otherwise.
    pub fn job_gids(&self, users: &Users) -> Vec<u32> {
        if let Some(p) = &self.process
            && self.job.uid == Some(p.uid)
        {
            let mut g = vec![p.gid];
            g.extend(p.groups.iter().filter(|x| **x != p.gid));
            return g;
        }
        match self.job.uid.and_then(|u| users.by_uid(u)) {
            Some(u) => users.gids_of(u),
            None => Vec::new(),
        }
    }

    pub fn job_home(&self, users: &Users) -> Option<String> {
        self.job.uid.and_then(|u| users.by_uid(u)).map(|u| u.home.clone())
    }
}

fn dirname(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].to_string(),
        None => ".".into(),
    }
}

fn join(dir: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        rel.to_string()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), rel)
    }
}

fn identity_from_uid(users: &Users, uid: u32) -> Identity {
    Identity {
        uid: Some(uid),
        name: users
            .by_uid(uid)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| format!("uid {uid}")),
    }
}

fn identity_from_name(users: &Users, name: &str) -> Identity {
    let uid = if name == "root" {
        Some(0)
    } else if let Ok(n) = name.parse::<u32>() {
        Some(n)
    } else {
        users.by_name(name).map(|u| u.uid)
    };
    Identity {
        uid,
        name: name.to_string(),
    }
}

/// An absolute path for a process's program or argument: itself, or relative to its cwd.
fn proc_path(host: &Host, p: &Proc, arg: &str) -> Option<String> {
    if arg.starts_with('/') {
        return Some(arg.to_string());
    }
    let cwd = host.read_link(&format!("/proc/{}/cwd", p.pid)).ok()?;
    Some(join(&cwd, arg.trim_start_matches("./")))
}

fn is_jenkins_jar(a: &str) -> bool {
    let base = a.rsplit('/').next().unwrap_or(a);
    matches!(base, "agent.jar" | "slave.jar" | "remoting.jar")
}

fn classify_proc(p: &Proc) -> Option<Kind> {
    let base = p.argv0_base();
    if p.name == "Runner.Listener" || base == "Runner.Listener" {
        return Some(Kind::GitHub);
    }
    if (p.name == "gitlab-runner" || base == "gitlab-runner")
        && p.cmdline.iter().skip(1).any(|a| a == "run" || a == "run-single")
    {
        return Some(Kind::GitLab);
    }
    if (p.name == "java" || base == "java")
        && p.cmdline
            .iter()
            .any(|a| is_jenkins_jar(a) || a == "hudson.remoting.jnlp.Main" || a == "hudson.remoting.Launcher")
    {
        return Some(Kind::Jenkins);
    }
    None
}

fn classify_unit(name: &str, unit: &Unit) -> Option<Kind> {
    let exec = unit.exec_start();
    let base = exec
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if name.starts_with("actions.runner.") || base == "runsvc.sh" {
        return Some(Kind::GitHub);
    }
    if name == "gitlab-runner.service" || base == "gitlab-runner" {
        return Some(Kind::GitLab);
    }
    if exec.iter().any(|a| is_jenkins_jar(a)) {
        return Some(Kind::Jenkins);
    }
    None
}

/// Everything about the runners on this host. Errors reading /proc or units end up in notes.
pub fn discover(host: &Host, users: &Users, procs: &[Proc]) -> Vec<Runner> {
    let mut runners: Vec<Runner> = Vec::new();
    for p in procs {
        let Some(kind) = classify_proc(p) else {
            continue;
        };
        let mut r = Runner::new(kind, p.label());
        r.service = identity_from_uid(users, p.uid);
        r.job = r.service.clone();
        r.jit = p.cmdline.iter().any(|a| a == "--jitconfig");
        match kind {
            Kind::GitHub => {
                let exe = host
                    .read_link(&format!("/proc/{}/exe", p.pid))
                    .ok()
                    .filter(|e| e.starts_with('/') && e.ends_with("/Runner.Listener"))
                    .or_else(|| proc_path(host, p, p.cmdline.first()?));
                if let Some(exe) = exe {
                    r.install_dir = Some(dirname(&dirname(&exe)));
                }
            }
            Kind::GitLab => {
                if let Some(u) = p.arg_value(&["--user", "-u"]) {
                    r.job = identity_from_name(users, &u);
                }
                r.binaries.extend(p.cmdline.first().and_then(|a| proc_path(host, p, a)));
                r.install_dir = p.arg_value(&["--working-directory", "-d"]);
            }
            Kind::Jenkins => {
                let jar = p
                    .cmdline
                    .iter()
                    .find(|a| is_jenkins_jar(a))
                    .and_then(|a| proc_path(host, p, a));
                r.binaries.extend(jar);
                let work = p
                    .arg_value(&["-workDir", "--workDir"])
                    .or_else(|| host.read_link(&format!("/proc/{}/cwd", p.pid)).ok());
                r.work_dirs.extend(work);
            }
        }
        // Runner.Worker and helper processes of an already-found runner are the same runner.
        if runners
            .iter()
            .any(|o| o.kind == kind && o.install_dir.is_some() && o.install_dir == r.install_dir)
        {
            continue;
        }
        r.process = Some(p.clone());
        runners.push(r);
    }

    for (name, dir) in units::names(host) {
        // Admin-made units live in /etc and /run; packaged ones are only looked at by name.
        let by_name =
            name.starts_with("actions.runner.") || name == "gitlab-runner.service" || name.starts_with("jenkins");
        if !(by_name || dir.starts_with("/etc") || dir.starts_with("/run")) {
            continue;
        }
        let unit = match units::load(host, &name) {
            Ok(Some(u)) => u,
            Ok(None) => continue,
            Err(e) => {
                if by_name {
                    let mut r = Runner::new(Kind::GitHub, format!("unit {dir}/{name}"));
                    r.notes.push(e);
                    runners.push(r);
                }
                continue;
            }
        };
        let Some(kind) = classify_unit(&name, &unit) else {
            continue;
        };
        let exec = unit.exec_start();
        let install_dir = match kind {
            Kind::GitHub => unit
                .get("Service", "WorkingDirectory")
                .map(String::from)
                .or_else(|| exec.first().map(|e| dirname(e))),
            Kind::GitLab => procs::arg_value(&exec, &["--working-directory", "-d"]),
            Kind::Jenkins => None,
        };
        // The same runner seen as a process: keep the process view, add the unit.
        if let Some(existing) = runners
            .iter_mut()
            .find(|r| r.kind == kind && r.unit.is_none() && (kind != Kind::GitHub || r.install_dir == install_dir))
        {
            existing.unit = Some(unit);
            continue;
        }
        let mut r = Runner::new(kind, format!("unit {}", unit.path));
        r.service = identity_from_name(users, unit.user());
        r.job = r.service.clone();
        r.install_dir = install_dir;
        match kind {
            Kind::GitLab => {
                if let Some(u) = procs::arg_value(&exec, &["--user", "-u"]) {
                    r.job = identity_from_name(users, &u);
                }
                r.binaries.extend(exec.first().cloned());
            }
            Kind::Jenkins => {
                r.binaries.extend(exec.iter().find(|a| is_jenkins_jar(a)).cloned());
                r.work_dirs.extend(
                    procs::arg_value(&exec, &["-workDir", "--workDir"])
                        .or_else(|| unit.get("Service", "WorkingDirectory").map(String::from)),
                );
            }
            Kind::GitHub => {}
        }
        r.jit = exec.iter().any(|a| a == "--jitconfig");
        r.unit = Some(unit);
        runners.push(r);
    }

    for r in &mut runners {
        match r.kind {
            Kind::GitHub => fill_github(host, r),
            Kind::GitLab => fill_gitlab(host, users, r),
            Kind::Jenkins => {}
        }
    }
    runners
}

fn fill_github(host: &Host, r: &mut Runner) {
    let Some(dir) = r.install_dir.clone() else {
        r.notes.push("the runner's install directory could not be found".into());
        return;
    };
    for b in ["bin/Runner.Listener", "bin/Runner.Worker", "run.sh", "runsvc.sh"] {
        let p = join(&dir, b);
        if host.exists(&p).unwrap_or(true) {
            r.binaries.push(p);
        }
    }
    for c in [".runner", ".credentials", ".credentials_rsaparams", ".env", ".path"] {
        let p = join(&dir, c);
        if host.exists(&p).unwrap_or(true) {
            r.configs.push(p);
        }
    }
    let path = join(&dir, ".runner");
    match host.read_optional(&path) {
        Ok(Some(text)) => match parse_runner_file(&path, &text) {
            Ok(s) => {
                r.work_dirs.push(join(&dir, &s.work_folder));
                r.github = Some(s);
            }
            Err(e) => r.notes.push(e.to_string()),
        },
        Ok(None) => {
            // A JIT runner receives its settings on the command line, not in a file.
            if !r.jit {
                r.notes.push(format!("{path}: not found"));
            }
            r.work_dirs.push(join(&dir, "_work"));
        }
        Err(e) => {
            r.notes.push(e.to_string());
            r.work_dirs.push(join(&dir, "_work"));
        }
    }
    match host.read_optional(&join(&dir, ".env")) {
        Ok(Some(text)) => r.github_env = parse_env(&text),
        Ok(None) => {}
        Err(e) => r.notes.push(e.to_string()),
    }
}

pub fn parse_runner_file(path: &str, text: &str) -> Result<GitHubSettings, RunnerConfigError> {
    let text = text.trim_start_matches('\u{feff}');
    let v: serde_json::Value = serde_json::from_str(text).map_err(|source| RunnerConfigError::RunnerJson {
        path: path.to_string(),
        source,
    })?;
    // Keys are camelCase as the runner writes them; compare without case to be lenient.
    let get = |key: &str| {
        v.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    };
    let truthy = |key: &str| get(key).is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"));
    Ok(GitHubSettings {
        path: path.to_string(),
        agent_name: get("agentName")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string(),
        ephemeral: truthy("ephemeral") || truthy("isEphemeral"),
        disable_update: truthy("disableUpdate"),
        work_folder: get("workFolder")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or("_work")
            .to_string(),
    })
}

pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

fn fill_gitlab(host: &Host, users: &Users, r: &mut Runner) {
    let from_args = r
        .process
        .as_ref()
        .and_then(|p| p.arg_value(&["--config", "-c"]))
        .or_else(|| {
            r.unit
                .as_ref()
                .and_then(|u| procs::arg_value(&u.exec_start(), &["--config", "-c"]))
        });
    // gitlab-runner's default: /etc/gitlab-runner as root, ~/.gitlab-runner otherwise.
    let path = from_args.unwrap_or_else(|| match r.service.uid {
        Some(0) | None => "/etc/gitlab-runner/config.toml".into(),
        Some(uid) => match users.by_uid(uid) {
            Some(u) => join(&u.home, ".gitlab-runner/config.toml"),
            None => "/etc/gitlab-runner/config.toml".into(),
        },
    });
    if r.binaries.is_empty() {
        r.binaries.push("/usr/bin/gitlab-runner".into());
    }
    r.configs.push(path.clone());
    let wd = r
        .install_dir
        .clone()
        .or_else(|| r.job.uid.and_then(|u| users.by_uid(u)).map(|u| u.home.clone()));
    match host.read_optional(&path) {
        Ok(Some(text)) => match parse_gitlab_config(&path, &text) {
            Ok(cfg) => {
                for rr in &cfg.runners {
                    let builds = rr.builds_dir.clone().or_else(|| wd.as_ref().map(|w| join(w, "builds")));
                    let cache = rr.cache_dir.clone().or_else(|| wd.as_ref().map(|w| join(w, "cache")));
                    for d in [builds, cache].into_iter().flatten() {
                        if !r.work_dirs.contains(&d) {
                            r.work_dirs.push(d);
                        }
                    }
                }
                r.gitlab = Some(cfg);
            }
            Err(e) => r.notes.push(e.to_string()),
        },
        Ok(None) => r.notes.push(format!("{path}: not found")),
        Err(e) => r.notes.push(e.to_string()),
    }
}

pub fn parse_gitlab_config(path: &str, text: &str) -> Result<GitLabConfig, RunnerConfigError> {
    let doc: toml::Table = text.parse().map_err(|source| RunnerConfigError::GitLabToml {
        path: path.to_string(),
        source,
    })?;
    let s = |t: &toml::Table, k: &str| t.get(k).and_then(|v| v.as_str()).map(String::from);
    let mut out = GitLabConfig {
        path: path.to_string(),
        runners: Vec::new(),
    };
    for r in doc.get("runners").and_then(|v| v.as_array()).into_iter().flatten() {
        let Some(t) = r.as_table() else { continue };
        let mut gr = GitLabRunner {
            name: s(t, "name").unwrap_or_default(),
            executor: s(t, "executor").unwrap_or_default(),
            builds_dir: s(t, "builds_dir"),
            cache_dir: s(t, "cache_dir"),
            ..Default::default()
        };
        if let Some(c) = t.get("custom").and_then(|v| v.as_table()) {
            for k in ["config_exec", "prepare_exec", "run_exec", "cleanup_exec"] {
                gr.custom_execs.extend(s(c, k));
            }
        }
        if let Some(d) = t.get("docker").and_then(|v| v.as_table()) {
            gr.docker_privileged = d.get("privileged").and_then(|v| v.as_bool()) == Some(true);
            gr.docker_volumes = d
                .get("volumes")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
        }
        out.runners.push(gr);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_file_with_bom_and_camel_case() {
        let s = parse_runner_file(
            "/r/.runner",
            "\u{feff}{\"agentId\": 2, \"agentName\": \"r1\", \"workFolder\": \"/srv/work\", \"ephemeral\": true, \"disableUpdate\": true}",
        )
        .unwrap();
        assert!(s.ephemeral && s.disable_update);
        assert_eq!(s.work_folder, "/srv/work");
        let p = parse_runner_file("/r/.runner", "{\"agentName\": \"r2\"}").unwrap();
        assert!(!p.ephemeral);
        assert_eq!(p.work_folder, "_work");
        let e = parse_runner_file("/r/.runner", "{").unwrap_err().to_string();
        assert!(e.starts_with("/r/.runner: not valid JSON"), "{e}");
    }

    #[test]
    fn gitlab_config_executors_and_custom_execs() {
        let cfg = parse_gitlab_config(
            "/etc/gitlab-runner/config.toml",
            r#"concurrent = 2
[[runners]]
  name = "shell"
  executor = "shell"
[[runners]]
  name = "sandboxed"
  executor = "custom"
  builds_dir = "/srv/builds"
  [runners.custom]
    run_exec = "/usr/local/bin/stockade"
[[runners]]
  name = "dind"
  executor = "docker"
  [runners.docker]
    privileged = true
    volumes = ["/var/run/docker.sock:/var/run/docker.sock"]
"#,
        )
        .unwrap();
        assert_eq!(cfg.runners.len(), 3);
        assert_eq!(cfg.runners[1].custom_execs, vec!["/usr/local/bin/stockade"]);
        assert!(cfg.runners[2].docker_privileged);
        let err = parse_gitlab_config("/c.toml", "[[runners]\n").unwrap_err();
        assert!(err.to_string().starts_with("/c.toml: not valid TOML"));
    }

    #[test]
    fn env_lines() {
        assert_eq!(
            parse_env("# x\nACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/stockade/hook.sh\nexport LANG=\"C\"\n"),
            vec![
                (
                    "ACTIONS_RUNNER_HOOK_JOB_STARTED".to_string(),
                    "/opt/stockade/hook.sh".to_string()
                ),
                ("LANG".to_string(), "C".to_string())
            ]
        );
    }
}
