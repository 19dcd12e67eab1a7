//! `stockade run`: one job in a fresh sandbox, from policy to report. `main` is the ordered
//! checklist of a job's life: policy, plan, spawn, supervise, teardown, report.

use crate::exit;
use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use stockade_monitor::report::{JobReport, LeftProcess, Outcome, Resources};
use stockade_policy::{Dur, Policy, Size};
use stockade_sandbox::{BindMount, FileMount, Limits, Plan, Sandbox, WaitStatus};

#[derive(clap::Args)]
pub struct Args {
    /// Policy file (TOML). Without it, the embedded default policy applies.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Directory bound read-write at the same path and used as the working directory
    /// (default: a fresh empty directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Root the job sees, read-only (default: the host's /).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Throw-away tmpfs overlay over the root, for jobs that install packages.
    #[arg(long)]
    pub writable_root: bool,
    /// Memory limit of the job (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<Size>,
    /// Maximum number of processes and threads.
    #[arg(long, value_name = "N")]
    pub pids: Option<u32>,
    /// CPU limit in cores (e.g. 1.5).
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Wall-clock limit (e.g. 90s, 30m); the job is killed and stockade exits 124.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Dur>,
    /// Size of each fresh tmpfs (/tmp, /var/tmp, /run).
    #[arg(long, value_name = "SIZE")]
    pub tmpfs_size: Option<Size>,
    /// RLIMIT_NOFILE of the job.
    #[arg(long, value_name = "N")]
    pub open_files: Option<u32>,
    /// Set an environment variable in the job (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Pass a variable from stockade's environment (repeatable).
    #[arg(long = "env-pass", value_name = "NAME")]
    pub env_pass: Vec<String>,
    /// A secret from a file: NAME=@FILE sets env var NAME; /PATH=@FILE mounts it as a file
    /// readable only by the job. Its value is masked (***) in the job's output (repeatable).
    #[arg(long = "secret", value_name = "NAME=@FILE")]
    pub secrets: Vec<String>,
    /// Bind a host path read-only: SRC[:DST] (repeatable).
    #[arg(long = "bind", value_name = "SRC[:DST]")]
    pub binds: Vec<String>,
    /// Bind a host path read-write: SRC[:DST] (repeatable).
    #[arg(long = "bind-rw", value_name = "SRC[:DST]")]
    pub binds_rw: Vec<String>,
    /// Hide a host path (repeatable).
    #[arg(long = "hide", value_name = "PATH")]
    pub hide: Vec<PathBuf>,
    /// Give the job stockade's stdin (default: /dev/null).
    #[arg(long)]
    pub stdin: bool,
    /// Hostname inside the job.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Egress mode: none (no network), allowlist (only allowed names), audit (all, flagged).
    #[arg(long, value_name = "MODE")]
    pub egress: Option<String>,
    /// Allow a domain (exact, `*.` wildcard, optional :PORT, or a preset such as @github) (repeatable).
    #[arg(long = "allow-domain", value_name = "NAME[:PORT]")]
    pub allow_domains: Vec<String>,
    /// Allow an IP range by address (repeatable).
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow_cidrs: Vec<String>,
    /// Pin a name to an address, like curl's --resolve; a pinned address is allowed even when
    /// private or loopback (repeatable).
    #[arg(long, value_name = "NAME=IP")]
    pub resolve: Vec<String>,
    /// Write the job report (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Monitoring: audit (record and report), block (also stop the job at the first detection
    /// at or above --block-at, exit 120), or off [default: the policy's [monitor] mode, audit].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<stockade_monitor::Mode>,
    /// Severity at which block mode stops the job (info, low, medium, high, critical)
    /// [default: the policy's [monitor] block_at, high].
    #[arg(long, value_name = "SEVERITY")]
    pub block_at: Option<stockade_monitor::Severity>,
    /// Compare the job with a baseline written by `stockade baseline learn`.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Watch source files: `--protect-source` (the files git tracks in the workspace) or
    /// `--protect-source=GLOB` relative to it (repeatable; replaces the policy's
    /// [monitor] protect_source). Needs --workspace.
    #[arg(long, value_name = "GLOB", num_args = 0..=1, require_equals = true, default_missing_value = "git")]
    pub protect_source: Vec<String>,
    /// How long the job should take; running longer raises duration-anomaly (overrides the
    /// policy's [monitor] expected_duration).
    #[arg(long, value_name = "DURATION")]
    pub expected_duration: Option<Dur>,
    /// The job's context (JSON, see `stockade gate`): the job runs only if its pool admits it
    /// (else exit 123), under the pool's settings.
    #[arg(long, value_name = "FILE")]
    pub context: Option<PathBuf>,
    /// The pool the job asks for (default: the policy's default_pool). Needs --context.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Where job state lives (default /var/lib/stockade as root).
    #[arg(long, value_name = "DIR", hide = true)]
    pub state_dir: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
}

pub fn main(a: Args, verbose: u8) -> Result<i32> {
    // 1. Policy: the file (or the embedded default), then the command line on top.
    let policy = match &a.policy {
        Some(p) => stockade_policy::load(p)?,
        None => Policy::default_policy(),
    };
    // The gate: a job its pool refuses never starts; an admitted one gets its pool's settings.
    use crate::cmd::gate::{Admission, admit};
    let (mut policy, context) = match admit(
        policy,
        a.pool.as_deref(),
        a.context.as_deref(),
        a.report.as_deref(),
        &a.command,
    )? {
        Admission::Admitted { policy, context } => (*policy, context),
        Admission::Refused(code) => return Ok(code),
    };
    apply_cli(&mut policy, &a)?;
    execute(JobSpec {
        policy,
        command: a.command,
        workspace: a.workspace,
        secrets: a.secrets,
        report: a.report,
        state_dir: a.state_dir,
        context,
        verbose,
        monitor: MonitorOpts {
            mode: a.mode,
            threshold: a.block_at,
            baseline: a.baseline,
            protect: a.protect_source,
            expected_duration: a.expected_duration.map(|d| d.0),
        },
    })
}

/// How the job is watched (`--mode`, `--baseline`, ...): each one given overrides the policy's
/// `[monitor]` key; the default leaves every key to the policy.
#[derive(Default)]
pub struct MonitorOpts {
    pub mode: Option<stockade_monitor::Mode>,
    pub threshold: Option<stockade_monitor::Severity>,
    pub baseline: Option<PathBuf>,
    /// `git` and/or globs relative to the workspace; empty: the policy's.
    pub protect: Vec<String>,
    pub expected_duration: Option<std::time::Duration>,
}

/// The monitor settings of one job: the policy's `[monitor]` section, the command line on top.
pub struct Watch {
    pub mode: stockade_monitor::Mode,
    pub threshold: stockade_monitor::Severity,
    pub baseline: Option<PathBuf>,
    pub protect: Vec<String>,
    pub expected_duration: Option<std::time::Duration>,
    pub cpu_factor: f64,
}

impl MonitorOpts {
    pub fn resolve(&self, p: &stockade_policy::Monitor) -> Watch {
        use stockade_monitor::Mode;
        use stockade_policy::MonitorMode;
        Watch {
            mode: self.mode.unwrap_or(match p.mode {
                MonitorMode::Audit => Mode::Audit,
                MonitorMode::Block => Mode::Block,
                MonitorMode::Off => Mode::Off,
            }),
            threshold: self.threshold.unwrap_or(p.block_at),
            baseline: self.baseline.clone(),
            protect: if self.protect.is_empty() {
                p.protect_source.clone()
            } else {
                self.protect.clone()
            },
            expected_duration: self.expected_duration.or(p.expected_duration.map(|d| d.0)),
            cpu_factor: p.cpu_anomaly_factor,
        }
    }
}

/// Everything one job needs; every CI integration builds one and calls `execute`, so that there
/// is one path from policy to report.
pub struct JobSpec {
    pub policy: Policy,
    pub command: Vec<OsString>,
    pub workspace: Option<PathBuf>,
    /// `NAME=@FILE` or `/PATH=@FILE`.
    pub secrets: Vec<String>,
    pub report: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    /// The job context from a CI integration, recorded in the report.
    pub context: Option<serde_json::Value>,
    pub verbose: u8,
    pub monitor: MonitorOpts,
}

/// Runs one job from its spec to its report; returns the documented exit code.
pub fn execute(spec: JobSpec) -> Result<i32> {
    let fds_before = stockade_sandbox::count_fds();
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let policy = &spec.policy;

    // 2. Stale state of crashed jobs goes before a new job starts.
    let state_root = spec
        .state_dir
        .clone()
        .unwrap_or_else(stockade_sandbox::state::default_state_root);
    let gc = stockade_sandbox::state::gc_before_job(&state_root);
    for e in &gc.errors {
        eprintln!("stockade: warning: gc: {e}");
    }

    // 3. The sandbox plan.
    let job_id = stockade_sandbox::state::new_job_id();
    let (plan, secrets) = build_plan(policy, &spec, job_id.clone(), state_root)?;
    let command: Vec<String> = spec
        .command
        .iter()
        .map(|c| mask(&c.to_string_lossy(), &secrets))
        .collect();

    // 4. Spawn (from a single-threaded process), then supervise until the job ends and is torn down. The
    // monitor subscribes before the sandbox exists and marks its mounts before the job starts.
    let mut plan = plan;
    let watch = spec.monitor.resolve(&policy.monitor);
    let (monitor, baseline) = crate::cmd::report::prepare_monitor(&spec, &watch, &secrets)?;
    if let Some(m) = &monitor {
        plan.before_job = Some(m.before_job());
        plan.watch_syscalls = true;
    }
    let mut sandbox = Sandbox::spawn(plan).context("starting the sandbox")?;
    if spec.verbose > 0 {
        eprintln!("stockade: job {} started", sandbox.job_id);
    }
    let running = monitor.map(|m| {
        let killer = sandbox.killer();
        let mut r = m.start(sandbox.init_pid(), Box::new(move || killer.kill()));
        r.close_fanotify_with(stockade_sandbox::close_detached);
        r
    });
    if let Some(r) = &running {
        sandbox.on_denied(r.denied_hook());
        sandbox.on_watched(r.watch_hook());
        sandbox.before_kill(r.catch_up_hook());
    }
    // Egress: serve the proxy and resolver sockets that init made in the job's network namespace.
    let egress = if policy.egress.is_enabled() {
        let config = stockade_egress::StartConfig {
            job_init_pid: Some(sandbox.init_pid()),
        };
        match stockade_egress::Egress::start(&policy.egress, sandbox.take_net_fds(), config) {
            Ok(e) => {
                // Egress events reach the monitor as they happen: block mode stops the job at its
                // first refused connection rather than judging the log at the end.
                if let Some(r) = &running {
                    let hook = r.egress_hook();
                    e.on_event(std::sync::Arc::new(move |ev: &stockade_egress::EgressEvent| {
                        if let Ok(v) = serde_json::to_value(ev) {
                            hook(&v);
                        }
                    }));
                }
                Some(e)
            }
            Err(e) => {
                sandbox.killer().kill();
                let _ = sandbox.wait();
                return Err(anyhow::Error::new(e).context("starting egress"));
            }
        }
    } else {
        None
    };
    let outcome = sandbox.wait().context("supervising the job")?;
    let observed = running.map(|r| r.finish()).unwrap_or_default();
    let egress_log = egress.map(|e| e.finish());
    if let Some(log) = &egress_log {
        eprint!("{}", log.summary());
    }

    // 5. Exit code, warnings, report.
    let code = exit_code(&outcome);
    for w in &outcome.warnings {
        eprintln!("stockade: warning: {w}");
    }
    if let Some((_, msg)) = &outcome.exec_error {
        eprintln!("stockade: {msg}");
    }
    if outcome.timed_out {
        eprintln!("stockade: job timed out after {}", policy.job.timeout);
    }
    if outcome.oom_killed {
        eprintln!(
            "stockade: job killed: out of memory (limit {})",
            policy
                .limits
                .memory
                .map(|m| m.to_string())
                .unwrap_or_else(|| "none".into())
        );
    }
    if outcome.pids_limit_hit {
        eprintln!(
            "stockade: warning: the job hit its pids limit ({:?})",
            policy.limits.pids
        );
    }
    let mut leftovers = outcome.leftovers.clone();
    let fds_after = stockade_sandbox::count_fds();
    if fds_after > fds_before {
        leftovers.push(format!(
            "file descriptors: {fds_before} open before the job, {fds_after} after"
        ));
    }
    for l in &leftovers {
        eprintln!("stockade: error: teardown left {l}");
    }
    let final_code = if leftovers.is_empty() { code } else { exit::SETUP_FAILED };

    {
        let mut report = JobReport {
            version: stockade_monitor::REPORT_VERSION,
            job_id,
            command,
            policy_digest: policy.digest(),
            context: spec.context.clone(),
            started_at,
            outcome: Outcome {
                exit_code: final_code,
                status: match outcome.status {
                    Some(WaitStatus::Exited(c)) => Some(c),
                    _ => None,
                },
                signal: match outcome.status {
                    Some(WaitStatus::Signaled(s)) => Some(s),
                    _ => None,
                },
                timed_out: outcome.timed_out,
                oom_killed: outcome.oom_killed,
                pids_limit_hit: outcome.pids_limit_hit,
                interrupted: outcome.interrupted,
                exec_error: outcome.exec_error.as_ref().map(|(_, m)| m.clone()),
            },
            resources: Resources {
                wall_ms: outcome.wall.as_millis() as u64,
                cpu_ms: outcome.stats.cpu_usec.map(|u| u / 1000),
                cpu_user_ms: outcome.stats.cpu_user_usec.map(|u| u / 1000),
                cpu_system_ms: outcome.stats.cpu_system_usec.map(|u| u / 1000),
                memory_peak_bytes: outcome.stats.memory_peak,
                pids_peak: outcome.stats.pids_peak,
                ..Default::default()
            },
            enforced: outcome.enforced.clone(),
            warnings: outcome.warnings.clone(),
            denied_syscalls: serde_json::to_value(&outcome.denied_syscalls)?,
            left_running: outcome
                .left_running
                .iter()
                .map(|p| LeftProcess {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    cmdline: mask(&p.cmdline, &secrets),
                })
                .collect(),
            leftovers: leftovers.clone(),
            egress: match &egress_log {
                Some(log) => serde_json::to_value(log)?,
                None => serde_json::Value::Null,
            },
            observed,
        };
        let final_code = crate::cmd::report::conclude_monitor(&mut report, &watch, baseline.as_ref(), final_code);
        if let Some(path) = &spec.report {
            write_report(path, &report)?;
        }
        Ok(final_code)
    }
}

fn write_report(path: &Path, report: &JobReport) -> Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    std::fs::write(path, json).with_context(|| format!("writing report {}", path.display()))
}

/// The documented exit code for a job's outcome (see `stockade --help`).
fn exit_code(o: &stockade_sandbox::Outcome) -> i32 {
    if o.timed_out {
        return exit::TIMEOUT;
    }
    if let Some((errno, _)) = &o.exec_error {
        return if *errno == ENOENT {
            exit::NOT_FOUND
        } else {
            exit::NOT_EXECUTABLE
        };
    }
    match o.status {
        Some(WaitStatus::Exited(c)) => c,
        Some(WaitStatus::Signaled(s)) => 128 + s,
        None => exit::SETUP_FAILED,
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// errno of "no such file": the command was not found.
const ENOENT: i32 = 2;

fn mask(s: &str, secrets: &[Vec<u8>]) -> String {
    let mut out = s.to_string();
    for sec in secrets {
        if let Ok(t) = std::str::from_utf8(sec)
            && !t.is_empty()
        {
            out = out.replace(t, "***");
        }
    }
    out
}

fn apply_cli(p: &mut Policy, a: &Args) -> Result<()> {
    if let Some(w) = &a.rootfs {
        p.filesystem.rootfs = w.clone();
    }
    if a.writable_root {
        p.filesystem.writable_root = true;
    }
    if let Some(m) = a.memory {
        p.limits.memory = Some(m);
    }
    if let Some(n) = a.pids {
        if n == 0 {
            bail!("--pids: must be at least 1");
        }
        p.limits.pids = Some(n);
    }
    if let Some(c) = a.cpus {
        if !(c.is_finite() && c >= 0.0) {
            bail!("--cpus: {c} is not a CPU count");
        }
        p.limits.cpus = c;
    }
    if let Some(t) = a.timeout {
        p.job.timeout = t;
    }
    if let Some(s) = a.tmpfs_size {
        p.filesystem.tmpfs_size = s;
    }
    if let Some(n) = a.open_files {
        if n < 16 {
            bail!("--open-files: {n} is too low to start a process (at least 16)");
        }
        p.limits.open_files = n;
    }
    if a.stdin {
        p.job.stdin = true;
    }
    if let Some(h) = &a.hostname {
        p.job.hostname = h.clone();
    }
    p.egress
        .apply_cli(&stockade_egress::EgressCli {
            mode: a.egress.clone(),
            allow_domains: a.allow_domains.clone(),
            allow_cidrs: a.allow_cidrs.clone(),
            resolve: a.resolve.clone(),
        })
        .map_err(|e| anyhow::anyhow!("{}", chain(&e)))?;
    for kv in &a.env {
        let (k, v) = kv
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .with_context(|| format!("--env {kv:?}: expected K=V"))?;
        p.job.env.insert(k.to_string(), v.to_string());
    }
    p.job.env_pass.extend(a.env_pass.iter().cloned());
    for (list, writable) in [(&a.binds, false), (&a.binds_rw, true)] {
        for b in list {
            let (src, dst) = match b.split_once(':') {
                Some((s, d)) => (PathBuf::from(s), Some(PathBuf::from(d))),
                None => (PathBuf::from(b), None),
            };
            if !src.is_absolute() || dst.as_ref().is_some_and(|d| !d.is_absolute()) {
                bail!("--bind {b:?}: paths must be absolute");
            }
            p.filesystem.binds.push(stockade_policy::Bind {
                source: src,
                target: dst,
                writable,
            });
        }
    }
    for h in &a.hide {
        if !h.is_absolute() {
            bail!("--hide {}: must be an absolute path", h.display());
        }
        p.filesystem.hidden.push(h.clone());
    }
    Ok(())
}

fn build_plan(p: &Policy, a: &JobSpec, job_id: String, state_root: PathBuf) -> Result<(Plan, Vec<Vec<u8>>)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), "/tmp".into()),
        (
            "LANG".into(),
            std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        ),
        ("TERM".into(), std::env::var_os("TERM").unwrap_or_else(|| "dumb".into())),
        ("STOCKADE_JOB_ID".into(), job_id.clone().into()),
    ];
    let mut set = |k: OsString, v: OsString| {
        env.retain(|(ek, _)| *ek != k);
        env.push((k, v));
    };
    for name in &p.job.env_pass {
        if let Some(v) = std::env::var_os(name) {
            set(name.into(), v);
        }
    }
    for (k, v) in &p.job.env {
        set(k.into(), v.into());
    }
    let mut files = Vec::new();
    let mut secrets = Vec::new();
    for s in &a.secrets {
        let (name, file) = s
            .split_once("=@")
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .with_context(|| format!("--secret {s:?}: expected NAME=@FILE or /PATH=@FILE"))?;
        let value = std::fs::read(file).with_context(|| format!("--secret {name}: reading {file}"))?;
        let trimmed = value.strip_suffix(b"\n").unwrap_or(&value).to_vec();
        if name.starts_with('/') {
            files.push(FileMount {
                target: PathBuf::from(name),
                contents: value.clone(),
                private: true,
            });
        } else {
            if name.contains('=') {
                bail!("--secret {name}: not a variable name");
            }
            set(name.into(), std::ffi::OsStr::from_bytes(&trimmed).to_os_string());
        }
        if !trimmed.is_empty() {
            secrets.push(trimmed);
        }
    }
    let mut net_setup: Option<stockade_sandbox::NetSetup> = None;
    if p.egress.is_enabled() {
        for (k, v) in stockade_egress::job_env(&p.egress) {
            set(k.into(), v.into());
        }
        files.push(FileMount {
            target: PathBuf::from("/etc/resolv.conf"),
            contents: stockade_egress::resolv_conf(&p.egress).into_bytes(),
            private: false,
        });
        let eg = p.egress.clone();
        net_setup = Some(Box::new(move || {
            stockade_egress::setup_netns(&eg).map_err(|e| chain(&e))
        }));
    }
    let binds = p
        .filesystem
        .binds
        .iter()
        .map(|b| BindMount {
            source: b.source.clone(),
            target: b.target.clone().unwrap_or_else(|| b.source.clone()),
            writable: b.writable,
        })
        .collect();
    let plan = Plan {
        job_id,
        argv: a.command.clone(),
        env,
        uid: p.job.uid.0,
        gid: p.job.gid.0,
        hostname: p.job.hostname.clone(),
        rootfs: p.filesystem.rootfs.clone(),
        writable_root: p.filesystem.writable_root,
        workspace: a.workspace.clone(),
        tmpfs_size: p.filesystem.tmpfs_size.0,
        shm_size: p.filesystem.shm_size.0,
        hidden: p.filesystem.hidden.clone(),
        binds,
        files,
        limits: Limits {
            memory: p.limits.memory.map(|m| m.0),
            pids: p.limits.pids,
            cpus: (p.limits.cpus > 0.0).then_some(p.limits.cpus),
            open_files: p.limits.open_files as u64,
            file_size: p.limits.file_size.map(|s| s.0),
        },
        timeout: p.job.timeout.0,
        kill_grace: p.job.kill_grace.0,
        seccomp: p.security.seccomp,
        landlock: p.security.landlock,
        writable: p.security.writable.clone(),
        stdin: p.job.stdin,
        mask: secrets.clone(),
        state_root,
        net_setup,
        before_job: None,
        watch_syscalls: false,
    };
    Ok((plan, secrets))
}
