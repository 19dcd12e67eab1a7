//! End-to-end tests of `stockade gitlab`, driven by a harness that behaves as gitlab-runner's
//! custom executor does (gitlab-runner itself is in no registry this project can reach).
//!
//! The harness (`sim` below) follows executors/custom of gitlab-runner: a per-job temp dir as
//! TMPDIR holding `response.json` (JOB_RESPONSE_FILE) and one generated bash script per stage;
//! BUILD_FAILURE_EXIT_CODE=1, SYSTEM_FAILURE_EXIT_CODE=2, BUILD_EXIT_CODE_FILE; every job
//! variable as CUSTOM_ENV_*; config, prepare (retried on system failure), the run stages in
//! gitlab-runner's order, after_script after a failure, cleanup always; a stage past its timeout
//! gets SIGTERM on its process group, then SIGKILL after the grace period. The jobs run in real
//! sandboxes, as root.

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stockade");
const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gitlab");
/// The uid and gid stockade gives job workspaces and caches on disk.
const WORKSPACE_OWNER: u32 = 99_900_000;

mod sim {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    /// One test's runner host: its temp dirs, stockade's state dir, the report dir.
    pub struct Host {
        pub dir: PathBuf,
        pub policy: PathBuf,
    }

    impl Host {
        pub fn new(name: &str) -> Host {
            // Not under /tmp: each sandbox has a fresh /tmp, so a runner temp dir there would be
            // invisible to jobs anyway and prove nothing about hiding.
            let dir = PathBuf::from(format!("/var/lib/stockade-tests/gitlab-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for d in ["runner", "state", "reports"] {
                std::fs::create_dir_all(dir.join(d)).unwrap();
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            Host {
                dir,
                policy: PathBuf::from(FIX).join("policy.toml"),
            }
        }
        pub fn state(&self) -> PathBuf {
            self.dir.join("state")
        }
        pub fn reports(&self) -> PathBuf {
            self.dir.join("reports")
        }
        pub fn args(&self, sub: &str, pool: Option<&str>) -> Vec<String> {
            let mut a: Vec<String> = vec![
                "gitlab".into(),
                sub.into(),
                "--policy".into(),
                self.policy.display().to_string(),
            ];
            if let Some(p) = pool {
                a.extend(["--pool".into(), p.into()]);
            }
            a.extend([
                "--state-dir".into(),
                self.state().display().to_string(),
                "--report-dir".into(),
                self.reports().display().to_string(),
            ]);
            a
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    #[derive(Clone)]
    pub struct Job {
        pub id: u64,
        pub project: String,
        pub project_id: u64,
        pub git_ref: String,
        /// git_info.protected; None leaves it out (older GitLab).
        pub protected: Option<bool>,
        pub source: String,
        /// Variables the job defines, after the predefined ones in the response.
        pub user_vars: Vec<(String, String)>,
        /// CUSTOM_ENV_* values in the executor's environment only (job-controlled).
        pub custom_env: Vec<(String, String)>,
        pub script: Vec<String>,
        pub after_script: Vec<String>,
        pub cache_paths: Vec<String>,
        /// (stage, body) run before build_script: `step_*` stages.
        pub extra_stages: Vec<(String, String)>,
        pub pool: Option<String>,
        pub build_timeout: Duration,
        pub grace: Duration,
    }

    pub fn job(id: u64, project: &str) -> Job {
        Job {
            id,
            project: project.into(),
            project_id: 1000 + id,
            git_ref: "main".into(),
            protected: Some(false),
            source: "push".into(),
            user_vars: Vec::new(),
            custom_env: Vec::new(),
            script: vec!["echo hello".into()],
            after_script: Vec::new(),
            cache_paths: Vec::new(),
            extra_stages: Vec::new(),
            pool: None,
            build_timeout: Duration::from_secs(600),
            grace: Duration::from_secs(60),
        }
    }

    pub fn token(id: u64) -> String {
        format!("SECRET-JOB-TOKEN-{id}")
    }

    /// The job as GitLab sends it to the runner (JobResponse).
    pub fn response(j: &Job) -> Value {
        let mut vars: Vec<(String, String)> = vec![
            ("CI_JOB_ID".into(), j.id.to_string()),
            ("CI_JOB_TOKEN".into(), token(j.id)),
            ("CI_SERVER_URL".into(), "https://gitlab.example".into()),
            ("CI_PROJECT_ID".into(), j.project_id.to_string()),
            ("CI_PROJECT_PATH".into(), j.project.clone()),
            ("CI_COMMIT_REF_NAME".into(), j.git_ref.clone()),
            (
                "CI_COMMIT_REF_PROTECTED".into(),
                j.protected.unwrap_or(false).to_string(),
            ),
            ("CI_PIPELINE_SOURCE".into(), j.source.clone()),
            ("GITLAB_USER_LOGIN".into(), "alice".into()),
        ];
        vars.extend(j.user_vars.iter().cloned());
        let name = j.project.rsplit('/').next().unwrap().to_string();
        json!({
            "id": j.id,
            "token": token(j.id),
            "allow_git_fetch": true,
            "job_info": {"name": "test", "stage": "test", "project_id": j.project_id,
                "project_name": name, "project_full_path": j.project, "user_id": 7},
            "git_info": {"repo_url": format!("https://gitlab-ci-token:{}@gitlab.example/{}.git", token(j.id), j.project),
                "ref": j.git_ref, "sha": "4f1c3b2a", "before_sha": "0000000", "ref_type": "branch",
                "refspecs": [], "depth": 20, "protected": j.protected},
            "runner_info": {"timeout": 3600},
            "variables": vars.iter().map(|(k, v)| json!({"key": k, "value": v, "public": true, "masked": false})).collect::<Vec<_>>(),
            "steps": [
                {"name": "script", "script": j.script, "timeout": 3600, "when": "on_success", "allow_failure": false},
                {"name": "after_script", "script": j.after_script, "timeout": 3600, "when": "always", "allow_failure": false}
            ],
            "image": {"name": ""},
            "services": [],
            "cache": [{"key": "default", "paths": j.cache_paths, "policy": "pull-push", "when": "on_success"}],
            "artifacts": [], "credentials": [], "dependencies": [], "features": {}
        })
    }

    #[derive(Debug, Clone, PartialEq)]
    pub enum Outcome {
        Success,
        /// A failed script, with the code from BUILD_EXIT_CODE_FILE when there is one.
        BuildFailure(Option<i32>),
        SystemFailure(String),
        Timeout(String),
        UnknownExit(String, i32),
    }

    pub struct Run {
        pub outcome: Outcome,
        /// Stages that ran, with the driver's exit code (None: killed).
        pub stages: Vec<(String, Option<i32>)>,
        pub log: String,
        pub force_killed: bool,
        pub config: Value,
        pub cleanup_code: Option<i32>,
        pub cleanup_log: String,
        /// stockade's state.json just before cleanup.
        pub state_before_cleanup: Option<Value>,
        pub response: PathBuf,
    }

    impl Run {
        pub fn stage_names(&self) -> Vec<&str> {
            self.stages.iter().map(|(s, _)| s.as_str()).collect()
        }
        /// Host pids and start times of the stage supervisors, as sandbox job ids end.
        pub fn supervisors(&self) -> Vec<String> {
            self.state_before_cleanup
                .as_ref()
                .and_then(|s| s["stages"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["supervisor"].as_str())
                        .map(|s| format!(".{}", s.replace(' ', ".")))
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    pub struct Exec {
        pub code: Option<i32>,
        pub out: String,
        pub timed_out: bool,
        pub force_killed: bool,
    }

    /// Runs one executor command as gitlab-runner does: its own process group, the job's
    /// environment only; past `timeout`, SIGTERM to the group, then SIGKILL after `grace`.
    pub fn exec(args: &[String], env: &[(String, String)], cwd: &Path, timeout: Duration, grace: Duration) -> Exec {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start stockade");
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let to = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = so.read_to_string(&mut s);
            s
        });
        let te = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = se.read_to_string(&mut s);
            s
        });
        let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let mut deadline = Instant::now() + timeout;
        let (mut timed_out, mut force_killed) = (false, false);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                if !timed_out {
                    timed_out = true;
                    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
                    deadline = Instant::now() + grace;
                } else if !force_killed {
                    force_killed = true;
                    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = format!("{}{}", to.join().unwrap(), te.join().unwrap());
        Exec {
            code: status.code(),
            out,
            timed_out,
            force_killed,
        }
    }

    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }

    /// A stage script as gitlab-runner generates them for bash: strict mode, the job's variables,
    /// the stage's commands.
    fn script(vars: &[(String, String)], body: &str) -> String {
        let mut s = String::from("#!/usr/bin/env bash\n\nset -eo pipefail\nset +o noclobber\n");
        for (k, v) in vars {
            s.push_str(&format!("export {k}={}\n", quote(v)));
        }
        s.push_str(body);
        s.push_str("\nexit 0\n");
        s
    }

    pub fn run(host: &Host, j: &Job) -> Run {
        let temp = temp_dir(host, j.id);
        std::fs::create_dir_all(&temp).unwrap();
        let resp = response(j);
        let response = temp.join("response.json");
        std::fs::write(&response, serde_json::to_vec(&resp).unwrap()).unwrap();
        // gitlab-runner writes it 0600; world-readable here, so that only stockade's hiding
        // stands between a job and the file.
        std::fs::set_permissions(&response, std::fs::Permissions::from_mode(0o644)).unwrap();

        let vars: Vec<(String, String)> = resp["variables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["key"].as_str().unwrap().to_string(),
                    v["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("TMPDIR".into(), temp.display().to_string()),
            ("BUILD_FAILURE_EXIT_CODE".into(), "1".into()),
            ("SYSTEM_FAILURE_EXIT_CODE".into(), "2".into()),
            ("JOB_RESPONSE_FILE".into(), response.display().to_string()),
            // The runner's own environment (gitlab-runner passes it to every stage).
            ("RUNNER_OWN_TOKEN".into(), "glrt-RUNNER-SECRET-TOKEN".into()),
        ];
        env.extend(vars.iter().map(|(k, v)| (format!("CUSTOM_ENV_{k}"), v.clone())));
        env.extend(j.custom_env.iter().map(|(k, v)| (format!("CUSTOM_ENV_{k}"), v.clone())));

        let pool = j.pool.as_deref();
        let quick = Duration::from_secs(300);
        let mut log = String::new();
        let mut stages = Vec::new();
        let mut force_killed = false;

        let cfg = exec(&host.args("config", pool), &env, &temp, quick, j.grace);
        log.push_str(&format!("$ config (exit {:?})\n{}", cfg.code, cfg.out));
        let config: Value = if cfg.code == Some(0) {
            serde_json::from_str(cfg.out.lines().last().unwrap_or("")).expect("config prints JSON")
        } else {
            Value::Null
        };
        let mut outcome = if cfg.code == Some(0) {
            None
        } else {
            Some(Outcome::SystemFailure("config".into()))
        };

        if outcome.is_none() {
            for (k, v) in config["job_env"].as_object().into_iter().flatten() {
                env.insert(0, (k.clone(), v.as_str().unwrap().to_string()));
            }
            // prepare: retried on system failure, 3 attempts in all.
            for attempt in 1..=3 {
                let p = exec(&host.args("prepare", pool), &env, &temp, quick, j.grace);
                log.push_str(&format!("$ prepare (attempt {attempt}, exit {:?})\n{}", p.code, p.out));
                match p.code {
                    Some(0) => break,
                    Some(2) if attempt < 3 => continue,
                    Some(1) => outcome = Some(Outcome::BuildFailure(None)),
                    Some(2) => outcome = Some(Outcome::SystemFailure("prepare".into())),
                    c => outcome = Some(Outcome::UnknownExit("prepare".into(), c.unwrap_or(-1))),
                }
                break;
            }
        }

        if outcome.is_none() {
            let builds = PathBuf::from(config["builds_dir"].as_str().unwrap()).join(&j.project);
            let cache_file = PathBuf::from(config["cache_dir"].as_str().unwrap())
                .join(&j.project)
                .join("default/cache.tar");
            let mut svars = vars.clone();
            svars.push(("CI_PROJECT_DIR".into(), builds.display().to_string()));
            svars.push((
                "CI_BUILDS_DIR".into(),
                config["builds_dir"].as_str().unwrap().to_string(),
            ));
            svars.push(("CACHE_FILE".into(), cache_file.display().to_string()));
            let cd = "cd \"$CI_PROJECT_DIR\"\n";
            let paths = j.cache_paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
            let archive = if j.cache_paths.is_empty() {
                "echo 'Not creating cache: no paths'".to_string()
            } else {
                format!(
                    "{cd}mkdir -p \"$(dirname \"$CACHE_FILE\")\"\ntar -cf \"$CACHE_FILE\" {paths}\necho 'Created cache'"
                )
            };
            let body = |stage: &str| -> String {
                match stage {
                    "prepare_script" => "echo \"Running on $(hostname) via stockade\"".into(),
                    "get_sources" => format!(
                        "mkdir -p \"$CI_PROJECT_DIR\"\n{cd}printf 'source of %s\\n' \"$CI_PROJECT_PATH\" > README.md\necho 'Fetched sources'"
                    ),
                    "restore_cache" => format!(
                        "{cd}if [ -f \"$CACHE_FILE\" ]; then tar -xf \"$CACHE_FILE\" && echo 'Successfully extracted cache'; else echo 'No cache found'; fi"
                    ),
                    "download_artifacts" => "echo 'No artifacts to download'".into(),
                    "build_script" => format!("{cd}{}", j.script.join("\n")),
                    "after_script" => format!("{cd}{}", j.after_script.join("\n")),
                    "archive_cache" | "archive_cache_on_failure" => archive.clone(),
                    "upload_artifacts_on_success" | "upload_artifacts_on_failure" => {
                        "echo 'No artifacts to upload'".into()
                    }
                    "cleanup_file_variables" => "echo 'Cleaned up file variables'".into(),
                    other => j
                        .extra_stages
                        .iter()
                        .find(|(s, _)| s == other)
                        .map(|(_, b)| format!("{cd}{b}"))
                        .unwrap(),
                }
            };
            let mut n = 0;
            let mut stage = |name: &str, timeout: Duration| -> (Option<i32>, Exec) {
                n += 1;
                let dir = temp.join(format!("script{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
                let file = dir.join("script.sh");
                std::fs::write(&file, script(&svars, &body(name))).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
                let code_file = dir.join("exit_code");
                let mut e = env.clone();
                e.push(("BUILD_EXIT_CODE_FILE".into(), code_file.display().to_string()));
                let mut args = host.args("run", pool);
                args.push(file.display().to_string());
                args.push(name.to_string());
                let r = exec(&args, &e, &temp, timeout, j.grace);
                let own = std::fs::read_to_string(&code_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                (own, r)
            };

            let mut main: Vec<String> = ["prepare_script", "get_sources", "restore_cache", "download_artifacts"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            main.extend(j.extra_stages.iter().map(|(s, _)| s.clone()));
            main.push("build_script".into());
            let mut failed = None;
            let mut timed_out = false;
            for name in &main {
                let t = if name == "build_script" || name.starts_with("step_") {
                    j.build_timeout
                } else {
                    quick
                };
                let (own, r) = stage(name, t);
                log.push_str(&format!("$ run {name} (exit {:?})\n{}", r.code, r.out));
                stages.push((name.clone(), r.code));
                force_killed |= r.force_killed;
                if r.timed_out {
                    timed_out = true;
                    failed = Some(Outcome::Timeout(name.clone()));
                    break;
                }
                match r.code {
                    Some(0) => {}
                    Some(1) => {
                        failed = Some(Outcome::BuildFailure(own));
                        break;
                    }
                    Some(2) => {
                        failed = Some(Outcome::SystemFailure(name.clone()));
                        break;
                    }
                    c => {
                        failed = Some(Outcome::UnknownExit(name.clone(), c.unwrap_or(-1)));
                        break;
                    }
                }
            }
            if !timed_out {
                let ok = failed.is_none();
                let rest: &[&str] = if ok {
                    &[
                        "after_script",
                        "archive_cache",
                        "upload_artifacts_on_success",
                        "cleanup_file_variables",
                    ]
                } else {
                    &[
                        "after_script",
                        "archive_cache_on_failure",
                        "upload_artifacts_on_failure",
                        "cleanup_file_variables",
                    ]
                };
                for name in rest {
                    let (_, r) = stage(name, quick);
                    log.push_str(&format!("$ run {name} (exit {:?})\n{}", r.code, r.out));
                    stages.push((name.to_string(), r.code));
                }
            }
            outcome = Some(failed.unwrap_or(Outcome::Success));
        }

        let state_file = host.state().join("jobs").join(j.id.to_string()).join("state.json");
        let state_before_cleanup = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let c = exec(&host.args("cleanup", pool), &env, &temp, quick, j.grace);
        Run {
            outcome: outcome.unwrap(),
            stages,
            log,
            force_killed,
            config,
            cleanup_code: c.code,
            cleanup_log: c.out,
            state_before_cleanup,
            response,
        }
    }

    /// The runner's temp dir for a job (gitlab-runner: os.MkdirTemp("", "custom-executor")).
    pub fn temp_dir(host: &Host, id: u64) -> PathBuf {
        host.dir.join("runner").join(format!("custom-executor{id}"))
    }
}

use sim::{Host, Outcome, job};

fn report(host: &Host, name: &str) -> Value {
    let p = host.reports().join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Nothing of the job remains: workspace, state, sandbox state, cgroups, processes.
fn assert_nothing_left(host: &Host, r: &sim::Run, id: u64, marker: Option<&str>) {
    assert_eq!(r.cleanup_code, Some(0), "cleanup failed:\n{}", r.cleanup_log);
    assert!(
        r.cleanup_log.contains(&format!("job {id} cleaned up")),
        "{}",
        r.cleanup_log
    );
    let state = host.state();
    for p in [
        state.join("builds").join(id.to_string()),
        state.join("jobs").join(id.to_string()),
    ] {
        assert!(std::fs::symlink_metadata(&p).is_err(), "{} is left", p.display());
    }
    let sups = r.supervisors();
    if let Ok(rd) = std::fs::read_dir(state.join("sandbox/jobs")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(!sups.iter().any(|s| name.ends_with(s)), "sandbox state {name} is left");
        }
    }
    for base in [
        "/sys/fs/cgroup/unified/stockade",
        "/sys/fs/cgroup/memory/stockade",
        "/sys/fs/cgroup/pids/stockade",
    ] {
        if let Ok(rd) = std::fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(!sups.iter().any(|s| name.ends_with(s)), "cgroup {base}/{name} is left");
            }
        }
    }
    if let Some(m) = marker {
        // Killed processes are reaped by the kernel on its own time: wait for them, boundedly.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alive = processes_with(m);
            if alive.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "processes of the job are still running: {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) {
                out.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

#[test]
fn config_tells_the_runner_where_the_job_lives() {
    need_root!();
    let host = Host::new("config");
    let j = job(501, "group/app");
    let dir = host.dir.join("runner/c");
    std::fs::create_dir_all(&dir).unwrap();
    let resp = dir.join("response.json");
    std::fs::write(&resp, sim::response(&j).to_string()).unwrap();
    let env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("JOB_RESPONSE_FILE".to_string(), resp.display().to_string()),
        ("CUSTOM_ENV_CI_JOB_ID".to_string(), "999".to_string()),
    ];
    let r = sim::exec(
        &host.args("config", None),
        &env,
        &dir,
        Duration::from_secs(120),
        Duration::from_secs(10),
    );
    assert_eq!(r.code, Some(0), "{}", r.out);
    let v: Value = serde_json::from_str(r.out.trim()).expect("only JSON on stdout");
    let work = host.state().join("builds/501");
    assert_eq!(v["builds_dir"], json!(work.join("builds")));
    assert_eq!(v["cache_dir"], json!(work.join("cache")));
    assert_eq!(v["builds_dir_is_shared"], json!(false));
    assert_eq!(v["driver"]["name"], json!("stockade"));
    assert_eq!(v["shell"], json!("bash"));
    // The id comes from the job response, not from the job-controlled CUSTOM_ENV_CI_JOB_ID.
    assert_eq!(v["job_env"]["STOCKADE_GITLAB_JOB_ID"], json!("501"));
    assert!(v["hostname"].as_str().is_some_and(|h| !h.is_empty()));
}

#[test]
fn a_passing_job_runs_every_stage_in_its_own_sandbox_and_keeps_its_cache() {
    need_root!();
    let host = Host::new("pass");
    let mut j = job(601, "group/app");
    j.script = vec![
        "echo \"uid=$(id -u) job=$STOCKADE_JOB_ID\"".into(),
        "cat README.md".into(),
        "echo built-by-601 > out.txt".into(),
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status".into(),
    ];
    j.after_script = vec!["echo \"after job=$STOCKADE_JOB_ID\"".into(), "cat out.txt".into()];
    j.cache_paths = vec!["out.txt".into()];
    j.extra_stages = vec![("step_release".into(), "echo release-step-ran".into())];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::Success, "{}", r.log);
    assert_eq!(
        r.stage_names(),
        [
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "step_release",
            "build_script",
            "after_script",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables"
        ]
    );
    let log = &r.log;
    assert_eq!(r.config["builds_dir"], json!(host.state().join("builds/601/builds")));
    assert!(log.contains("admitted to pool ci"), "{log}");
    assert!(log.contains("No cache found"), "{log}");
    assert!(
        log.contains("release-step-ran"),
        "an unknown stage runs its script:\n{log}"
    );
    assert!(
        log.contains("source of group/app"),
        "the workspace is shared between stages:\n{log}"
    );
    assert!(log.contains("uid=1000 "), "{log}");
    assert!(log.contains("NoNewPrivs:\t1") && log.contains("Seccomp:\t2"), "{log}");
    assert!(log.contains("Created cache"), "{log}");
    // Each stage is a fresh sandbox.
    let job_of = |prefix: &str| {
        log.lines()
            .find_map(|l| {
                l.strip_prefix(prefix)
                    .map(|s| s.split_whitespace().next().unwrap().to_string())
            })
            .unwrap_or_else(|| panic!("no {prefix} line in\n{log}"))
    };
    assert_ne!(job_of("uid=1000 job="), job_of("after job="));

    // The decision is in every stage's report.
    let rep = report(&host, "601-6-build_script.json");
    assert_eq!(rep["context"]["gate"]["allowed"], json!(true));
    assert_eq!(rep["context"]["gate"]["pool"], json!("ci"));
    assert_eq!(rep["context"]["context"]["project"], json!("group/app"));
    assert_eq!(rep["context"]["context"]["ref"], json!("refs/heads/main"));
    assert_eq!(rep["context"]["gitlab"]["stage"], json!("build_script"));
    assert_eq!(rep["outcome"]["exit_code"], json!(0));
    assert!(
        rep["enforced"].to_string().contains("pids 512"),
        "the pool's limits apply: {}",
        rep["enforced"]
    );

    assert_nothing_left(&host, &r, 601, None);
    // The cache went back to the project, owned by the workspace owner, not by root.
    let cached = host
        .state()
        .join("cache/group%2Fapp/unprotected/group/app/default/cache.tar");
    let meta = std::fs::metadata(&cached).unwrap_or_else(|e| panic!("{}: {e}\n{}", cached.display(), r.cleanup_log));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.uid(), WORKSPACE_OWNER);

    // The next job of the project finds it.
    let mut j2 = job(602, "group/app");
    j2.script = vec!["cat out.txt".into()];
    let r2 = sim::run(&host, &j2);
    assert_eq!(r2.outcome, Outcome::Success, "{}", r2.log);
    assert!(r2.log.contains("Successfully extracted cache"), "{}", r2.log);
    assert!(r2.log.contains("built-by-601"), "{}", r2.log);
    assert_nothing_left(&host, &r2, 602, None);

    // A protected ref of the same project has a cache of its own.
    let mut j3 = job(603, "group/app");
    j3.protected = Some(true);
    let r3 = sim::run(&host, &j3);
    assert_eq!(r3.outcome, Outcome::Success, "{}", r3.log);
    assert!(r3.log.contains("No cache found"), "{}", r3.log);
}

#[test]
fn a_failing_job_runs_after_script_and_reports_its_own_exit_code() {
    need_root!();
    let host = Host::new("fail");
    let mut j = job(701, "group/app");
    j.script = vec![
        "echo made > marker".into(),
        "echo before-failing".into(),
        "exit 3".into(),
        "echo never".into(),
    ];
    j.after_script = vec!["echo after-script-ran".into(), "cat marker".into()];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::BuildFailure(Some(3)), "{}", r.log);
    assert_eq!(
        r.stage_names()[5..],
        [
            "after_script",
            "archive_cache_on_failure",
            "upload_artifacts_on_failure",
            "cleanup_file_variables"
        ]
    );
    assert!(
        r.log.contains("before-failing") && !r.log.contains("never"),
        "{}",
        r.log
    );
    assert!(r.log.contains("after-script-ran\nmade"), "{}", r.log);
    assert_eq!(report(&host, "701-5-build_script.json")["outcome"]["status"], json!(3));
    assert_nothing_left(&host, &r, 701, None);
}

#[test]
fn a_timed_out_job_that_ignores_sigterm_is_killed_and_leaves_nothing() {
    need_root!();
    let host = Host::new("timeout");
    let marker = format!("stockade-timeout-marker-{}", std::process::id());
    let mut j = job(801, "group/app");
    j.pool = Some("slow".into());
    j.script = vec![
        "trap '' TERM".into(),
        "echo started-and-ignoring-sigterm".into(),
        format!("(exec -a {marker} sleep 600) &"),
        format!("exec -a {marker} sleep 600"),
    ];
    j.build_timeout = Duration::from_secs(5);
    j.grace = Duration::from_secs(2);
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::Timeout("build_script".into()), "{}", r.log);
    assert!(
        r.force_killed,
        "SIGTERM was ignored, so only SIGKILL could end the stage:\n{}",
        r.log
    );
    assert!(r.log.contains("started-and-ignoring-sigterm"), "{}", r.log);
    assert_eq!(r.stages.last(), Some(&("build_script".to_string(), None)));
    assert_nothing_left(&host, &r, 801, Some(&marker));
}

#[test]
fn a_timed_out_job_stops_on_sigterm() {
    need_root!();
    let host = Host::new("sigterm");
    let marker = format!("stockade-sigterm-marker-{}", std::process::id());
    let mut j = job(802, "group/app");
    j.script = vec!["echo started".into(), format!("exec -a {marker} sleep 600")];
    j.build_timeout = Duration::from_secs(5);
    j.grace = Duration::from_secs(120);
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::Timeout("build_script".into()), "{}", r.log);
    assert!(!r.force_killed, "stockade stops the stage on SIGTERM:\n{}", r.log);
    assert_eq!(
        r.stages.last(),
        Some(&("build_script".to_string(), Some(1))),
        "{}",
        r.log
    );
    let rep = report(&host, "802-5-build_script.json");
    assert_eq!(rep["outcome"]["interrupted"], json!(15));
    assert_nothing_left(&host, &r, 802, Some(&marker));
}

#[test]
fn a_protected_only_pool_refuses_an_unprotected_ref_in_prepare() {
    need_root!();
    let host = Host::new("refuse");
    let mut j = job(901, "group/app");
    j.pool = Some("prod".into());
    j.git_ref = "feature".into();
    j.protected = Some(false);
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::BuildFailure(None), "{}", r.log);
    assert!(r.stages.is_empty(), "no stage runs for a refused job: {:?}", r.stages);
    assert!(
        r.log.contains(
            "stockade: job refused by pools.prod.protected_refs_only: ref refs/heads/feature is not protected"
        ),
        "{}",
        r.log
    );
    assert!(
        r.log.contains("attempt 1, exit Some(1)") && !r.log.contains("attempt 2"),
        "a refusal is not retried:\n{}",
        r.log
    );
    let rep = report(&host, "901-prepare.json");
    assert_eq!(rep["context"]["gate"]["allowed"], json!(false));
    assert_eq!(rep["outcome"]["exit_code"], json!(123));
    assert_nothing_left(&host, &r, 901, None);

    // The same job on protected main is admitted.
    let mut ok = j.clone();
    ok.id = 902;
    ok.git_ref = "main".into();
    ok.protected = Some(true);
    let r = sim::run(&host, &ok);
    assert_eq!(r.outcome, Outcome::Success, "{}", r.log);
    assert!(
        report(&host, "902-5-build_script.json")["enforced"]
            .to_string()
            .contains("memory 2147483648")
    );
}

#[test]
fn custom_env_overrides_cannot_change_the_decision() {
    need_root!();
    let host = Host::new("override");
    let mut j = job(1001, "group/app");
    j.pool = Some("prod".into());
    j.git_ref = "feature".into();
    j.protected = Some(false);
    j.custom_env = vec![
        ("CI_COMMIT_REF_PROTECTED".into(), "true".into()),
        ("CI_COMMIT_REF_NAME".into(), "main".into()),
        ("CI_PROJECT_PATH".into(), "group/app".into()),
        ("CI_PIPELINE_SOURCE".into(), "push".into()),
        ("CI_JOB_ID".into(), "1".into()),
    ];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::BuildFailure(None), "{}", r.log);
    assert!(r.log.contains("refused by pools.prod.protected_refs_only"), "{}", r.log);
    assert!(
        r.log.contains("ignoring CUSTOM_ENV_CI_COMMIT_REF_PROTECTED=\"true\""),
        "{}",
        r.log
    );
    assert!(r.stages.is_empty());
    assert_nothing_left(&host, &r, 1001, None);

    // A job that redefines a variable the gate reads, in the response itself, is refused.
    let mut j = job(1002, "group/app");
    j.pool = Some("prod".into());
    j.protected = Some(true);
    j.source = "merge_request_event".into();
    j.user_vars = vec![("CI_PIPELINE_SOURCE".into(), "push".into())];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::BuildFailure(None), "{}", r.log);
    assert!(
        r.log
            .contains("refused by job_response.variables.CI_PIPELINE_SOURCE: defined 2 times"),
        "{}",
        r.log
    );

    // Without git_info.protected (older GitLab), a redefined CI_COMMIT_REF_PROTECTED is refused too.
    let mut j = job(1003, "group/app");
    j.pool = Some("prod".into());
    j.protected = None;
    j.user_vars = vec![("CI_COMMIT_REF_PROTECTED".into(), "true".into())];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::BuildFailure(None), "{}", r.log);
    assert!(
        r.log
            .contains("refused by job_response.variables.CI_COMMIT_REF_PROTECTED"),
        "{}",
        r.log
    );
}

#[test]
fn a_job_cannot_read_the_response_file_nor_another_projects_cache() {
    need_root!();
    let host = Host::new("isolation");
    // Another project leaves a cache behind.
    let mut other = job(1101, "group/other");
    other.script = vec!["echo OTHER-CACHE-SECRET > secret.txt".into()];
    other.cache_paths = vec!["secret.txt".into()];
    let r = sim::run(&host, &other);
    assert_eq!(r.outcome, Outcome::Success, "{}", r.log);
    let cache_root = host.state().join("cache");
    let other_cache = cache_root.join("group%2Fother/unprotected/group/other/default/cache.tar");
    assert!(
        String::from_utf8_lossy(&std::fs::read(&other_cache).unwrap()).contains("OTHER-CACHE-SECRET"),
        "the probe below has something to find"
    );

    let mut j = job(1102, "group/app");
    let state = host.state();
    j.script = vec![
        "probe() { if eval \"$2\" >/dev/null 2>&1; then echo \"LEAK-$1\"; else echo \"sealed-$1\"; fi; }".into(),
        "probe response 'grep -q SECRET-JOB-TOKEN \"$PROBE_RESPONSE\"'".into(),
        "probe runner-dir 'ls \"$(dirname \"$PROBE_RESPONSE\")\"'".into(),
        "probe cache 'grep -rq OTHER-CACHE-SECRET \"$PROBE_STATE/cache\"'".into(),
        "probe cache-file \"cat $PROBE_OTHER_CACHE\"".into(),
        "probe builds-list 'ls \"$PROBE_STATE/builds\"'".into(),
        "probe job-state 'ls \"$PROBE_STATE/jobs\"'".into(),
        "probe runner-env 'env | grep -q glrt-'".into(),
        "probe runner-env-init 'grep -q glrt- /proc/1/environ'".into(),
        "echo probes-done".into(),
    ];
    // The probes' paths reach the job as job variables; how a job would learn them is moot.
    j.user_vars = vec![
        ("PROBE_STATE".into(), state.display().to_string()),
        ("PROBE_OTHER_CACHE".into(), other_cache.display().to_string()),
        (
            "PROBE_RESPONSE".into(),
            sim::temp_dir(&host, 1102).join("response.json").display().to_string(),
        ),
    ];
    let r = sim::run(&host, &j);
    assert_eq!(r.outcome, Outcome::Success, "{}", r.log);
    assert!(r.log.contains("probes-done"), "{}", r.log);
    assert!(!r.log.contains("LEAK-"), "{}", r.log);
    for p in [
        "response",
        "runner-dir",
        "cache",
        "cache-file",
        "builds-list",
        "job-state",
        "runner-env",
        "runner-env-init",
    ] {
        assert!(
            r.log.contains(&format!("sealed-{p}")),
            "probe {p} did not run:\n{}",
            r.log
        );
    }
    // The response file really was world-readable on the host, and still is.
    assert!(
        std::fs::read_to_string(&r.response)
            .unwrap()
            .contains("SECRET-JOB-TOKEN-1102")
    );
    assert_nothing_left(&host, &r, 1102, None);
}

/// One driver call outside the harness, for bad input.
fn call(
    host: &Host,
    sub: &str,
    extra: &[&str],
    response: Option<&Path>,
    policy: Option<&Path>,
) -> (Option<i32>, String) {
    let mut args = host.args(sub, None);
    if let Some(p) = policy {
        args[3] = p.display().to_string();
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut env = vec![
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("BUILD_FAILURE_EXIT_CODE".to_string(), "1".to_string()),
        ("SYSTEM_FAILURE_EXIT_CODE".to_string(), "2".to_string()),
    ];
    if let Some(r) = response {
        env.push(("JOB_RESPONSE_FILE".into(), r.display().to_string()));
    }
    let r = sim::exec(
        &args,
        &env,
        &host.dir,
        Duration::from_secs(120),
        Duration::from_secs(10),
    );
    assert!(!r.out.contains("panicked"), "{}", r.out);
    (r.code, r.out)
}

#[test]
fn bad_input_is_a_system_failure_that_names_the_field() {
    need_root!();
    let host = Host::new("badinput");
    let fix = PathBuf::from(FIX);
    let cases: &[(&str, &str, &str)] = &[
        ("prepare", "response-not-json.json", "response-not-json.json: not JSON"),
        ("config", "response-not-json.json", "not JSON"),
        (
            "prepare",
            "response-bad-protected.json",
            "git_info.protected: expected true, false or null",
        ),
        ("prepare", "response-no-ref.json", "git_info.ref: missing"),
        ("prepare", "response-bad-variables.json", "variables: expected an array"),
        ("config", "response-bad-id.json", "id: expected a job id (a number)"),
        ("cleanup", "response-bad-id.json", "id: expected a job id"),
    ];
    for (sub, file, want) in cases {
        let (code, out) = call(&host, sub, &[], Some(&fix.join(file)), None);
        assert_eq!(code, Some(2), "{sub} {file}: {out}");
        assert!(out.contains(want), "{sub} {file}: want {want:?} in {out}");
        assert_eq!(out.lines().count(), 1, "one line: {out}");
    }
    let j = job(1201, "group/app");
    let resp = host.dir.join("runner/response.json");
    std::fs::write(&resp, sim::response(&j).to_string()).unwrap();

    let (code, out) = call(&host, "prepare", &[], None, None);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("JOB_RESPONSE_FILE: not set"), "{out}");

    let (code, out) = call(&host, "config", &[], Some(&resp), Some(&fix.join("policy-bad.toml")));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("policy-bad.toml:2: pools.ci.limits.memory: invalid size \"lots\""),
        "{out}"
    );

    let (code, out) = call(&host, "prepare", &["--pool", "nope"], Some(&resp), None);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("pool \"nope\" is not defined in the policy (defined: ci, prod, slow)"),
        "{out}"
    );

    let (code, out) = call(
        &host,
        "run",
        &["/nonexistent/script", "build_script"],
        Some(&resp),
        None,
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("job 1201 was not prepared"), "{out}");

    let mut args = host.args("config", None);
    args[5] = "/var/lib/stockade/gitlab".into();
    let env = [("JOB_RESPONSE_FILE".to_string(), resp.display().to_string())];
    let r = sim::exec(&args, &env, &host.dir, Duration::from_secs(60), Duration::from_secs(5));
    assert_eq!(r.code, Some(2), "{}", r.out);
    assert!(
        r.out.contains("under /var/lib/stockade, which every sandbox hides"),
        "{}",
        r.out
    );

    // Nothing prepared: cleanup has nothing to do and says so.
    let (code, out) = call(&host, "cleanup", &[], Some(&resp), None);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("job 1201 cleaned up"), "{out}");
}
