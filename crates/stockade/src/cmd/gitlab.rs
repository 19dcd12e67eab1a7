//! `stockade gitlab config|prepare|run|cleanup`: the driver of GitLab Runner's custom executor.
//! The job context comes from the runner's trusted job response, never from CUSTOM_ENV_*.
//!
//! Every stage is a separate process; what one stage leaves for the next lives under the state
//! root (`--state-dir`, default /var/lib/stockade-gitlab as root), keyed by the job id of the job
//! response:
//!
//!   jobs/<id>/      root-only (0700): state.json (context, decision, stages run), stage scripts
//!   builds/<id>/    the job's workspace, owned by an unused unprivileged id (WORKSPACE_OWNER) and
//!                   shown to each stage's sandbox through an id-mapped mount; holds builds/ and
//!                   cache/, the builds_dir and cache_dir the runner is told about
//!   cache/<project>/<protected|unprotected|fork>/
//!                   the project's cache between jobs: copied into the workspace by `prepare`,
//!                   published back by `cleanup` (regular files only), kept apart for protected
//!                   refs, other refs and forks, so that a feature branch or a fork's merge
//!                   request cannot poison the cache a deploy restores
//!
//! Every stage's sandbox hides jobs/, cache/ and the job response file.

use crate::cmd::gate::{load_policy, render, report_context, write_refusal_report};
use crate::cmd::run::{JobSpec, execute};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use stockade_policy::{Check, Decision, JobContext, Policy};

/// The host uid and gid that own every job workspace on disk: unused by any process (sandboxed
/// jobs run as ids from 100000000 up), so only the job whose mount maps it can use its files.
pub const WORKSPACE_OWNER: u32 = 99_900_000;

#[derive(clap::Subcommand)]
pub enum Command {
    /// config_exec: print the executor's settings (builds_dir, cache_dir, ...) as JSON.
    Config(Common),
    /// prepare_exec: gate the job from its job response; create its workspace and cache.
    Prepare(Common),
    /// run_exec SCRIPT STAGE: run one stage's script in a fresh sandbox on the job's workspace.
    Run(RunArgs),
    /// cleanup_exec: tear everything of the job down and verify that nothing is left.
    Cleanup(Common),
}

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Policy file (TOML) with the runner's pools.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The pool this runner serves (default: the policy's default_pool).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Keep a JSON job report per stage (and per refused job) in DIR.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// State root: job state, workspaces, caches (default /var/lib/stockade-gitlab as root).
    #[arg(long, value_name = "DIR", hide = true)]
    pub state_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// The stage script gitlab-runner wrote.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
    /// The stage's name (prepare_script, get_sources, build_script, after_script, ...).
    #[arg(value_name = "STAGE")]
    pub stage: String,
}

/// gitlab-runner's exit codes, from its environment.
struct Codes {
    build: i32,
    system: i32,
}

impl Codes {
    fn from_env() -> Codes {
        let get = |k: &str, d: i32| std::env::var(k).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(d);
        Codes {
            build: get("BUILD_FAILURE_EXIT_CODE", 1),
            system: get("SYSTEM_FAILURE_EXIT_CODE", 2),
        }
    }
}

/// Every error is an infrastructure failure (gitlab-runner retries some stages on it); a job's
/// own failure or refusal is returned as the build-failure code instead.
pub fn main(c: Command, verbose: u8) -> Result<i32> {
    let codes = Codes::from_env();
    let (name, r) = match c {
        Command::Config(a) => ("config", config(&a)),
        Command::Prepare(a) => ("prepare", prepare(&a, &codes)),
        Command::Run(a) => ("run", run(&a, &codes, verbose)),
        Command::Cleanup(a) => ("cleanup", cleanup(&a, &codes)),
    };
    match r {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("stockade gitlab {name}: error: {e:#}");
            Ok(codes.system)
        }
    }
}

struct Layout {
    root: PathBuf,
    explicit: bool,
}

impl Layout {
    fn new(a: &Common) -> Result<Layout> {
        let (root, explicit) = match &a.state_dir {
            Some(d) => (d.clone(), true),
            None if rustix::process::getuid().is_root() => (PathBuf::from("/var/lib/stockade-gitlab"), false),
            None => (
                std::env::temp_dir().join(format!("stockade-gitlab-{}", rustix::process::getuid().as_raw())),
                false,
            ),
        };
        if !root.is_absolute() {
            bail!("--state-dir {}: must be an absolute path", root.display());
        }
        // Workspaces live under the root: a path every sandbox hides would hide them too.
        if let Some(h) = stockade_sandbox::HIDDEN
            .iter()
            .filter(|h| !h.contains('*'))
            .find(|h| root.starts_with(h))
        {
            bail!(
                "state dir {}: under {h}, which every sandbox hides; jobs could not use their workspace",
                root.display()
            );
        }
        Ok(Layout { root, explicit })
    }
    fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }
    fn job(&self, id: &str) -> PathBuf {
        self.jobs().join(id)
    }
    fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }
    fn work(&self, id: &str) -> PathBuf {
        self.builds().join(id)
    }
    fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }
    /// The sandboxes' own state root: the default (/var/lib/stockade, hidden from every job)
    /// unless a state dir was given.
    fn sandbox(&self) -> Option<PathBuf> {
        self.explicit.then(|| self.root.join("sandbox"))
    }
    fn sandbox_root(&self) -> PathBuf {
        self.sandbox()
            .unwrap_or_else(stockade_sandbox::state::default_state_root)
    }
}

// ---------------------------------------------------------------------------------------------
// The job response: the one trusted source of the job context.

/// What the job response says about the job.
struct Response {
    id: String,
    context: JobContext,
    /// Variables the gate relies on that the response defines more than once with different
    /// values: a job redefining them is refused.
    conflicts: Vec<(String, Vec<String>)>,
}

fn response_path() -> Result<PathBuf> {
    let p = std::env::var_os("JOB_RESPONSE_FILE")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            anyhow!("JOB_RESPONSE_FILE: not set (gitlab-runner's custom executor sets it in every stage)")
        })?;
    let p = PathBuf::from(p);
    Ok(if p.is_absolute() {
        p
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// The job id alone (config and cleanup need nothing else): from the response, else from the
/// id `config` handed back through job_env. Never from CUSTOM_ENV_CI_JOB_ID, which a job sets.
fn job_id() -> Result<String> {
    match response_path() {
        Ok(p) => {
            let v = read_json(&p)?;
            response_id(&v, &p)
        }
        Err(e) => match std::env::var("STOCKADE_GITLAB_JOB_ID") {
            Ok(id) if valid_id(&id) => Ok(id),
            _ => Err(e),
        },
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn read_json(p: &Path) -> Result<Value> {
    let text = fs::read_to_string(p).with_context(|| format!("JOB_RESPONSE_FILE: reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("job response {}: not JSON", p.display()))
}

fn response_id(v: &Value, p: &Path) -> Result<String> {
    match v.get("id") {
        Some(Value::Number(n)) if n.is_u64() => Ok(n.to_string()),
        Some(other) => bail!(
            "job response {}: id: expected a job id (a number), got {other}",
            p.display()
        ),
        None => bail!("job response {}: id: missing", p.display()),
    }
}

impl Response {
    fn load() -> Result<Response> {
        let path = response_path()?;
        let v = read_json(&path)?;
        Response::from_value(&v, &path)
    }

    fn from_value(v: &Value, path: &Path) -> Result<Response> {
        let bad = |field: &str, msg: String| anyhow!("job response {}: {field}: {msg}", path.display());
        if !v.is_object() {
            return Err(bad("(document)", "expected a JSON object".into()));
        }
        let id = response_id(v, path)?;
        let obj = |k: &str| -> Result<Option<&serde_json::Map<String, Value>>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(m)) => Ok(Some(m)),
                Some(_) => Err(bad(k, "expected an object".into())),
            }
        };
        let git = obj("git_info")?.ok_or_else(|| bad("git_info", "missing".into()))?;
        let info = obj("job_info")?;
        let string_in =
            |m: Option<&serde_json::Map<String, Value>>, section: &str, k: &str| -> Result<Option<String>> {
                match m.and_then(|m| m.get(k)) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(bad(&format!("{section}.{k}"), "expected a string".into())),
                }
            };

        // variables: [{key, value, ...}]; every occurrence is kept to spot redefinitions.
        let mut vars: Vec<(String, String)> = Vec::new();
        match v.get("variables") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for (i, e) in a.iter().enumerate() {
                    let key = e.get("key").and_then(Value::as_str);
                    let value = match e.get("value") {
                        Some(Value::String(s)) => Some(s.clone()),
                        None | Some(Value::Null) => Some(String::new()),
                        Some(_) => None,
                    };
                    match (key, value) {
                        (Some(k), Some(val)) => vars.push((k.to_string(), val)),
                        (None, _) => {
                            return Err(bad(&format!("variables[{i}].key"), "expected a string".into()));
                        }
                        (_, None) => {
                            return Err(bad(&format!("variables[{i}].value"), "expected a string".into()));
                        }
                    }
                }
            }
            Some(_) => return Err(bad("variables", "expected an array".into())),
        }
        let mut conflicts = Vec::new();
        // The first definition is GitLab's; a later, different one is the job's own.
        let first = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let user = first("GITLAB_USER_LOGIN").filter(|s| !s.is_empty());
        let mut var = |k: &str| -> Option<String> {
            let mut vals: Vec<String> = vars.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect();
            vals.dedup();
            let mut distinct = vals.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                conflicts.push((k.to_string(), vals.clone()));
            }
            vals.into_iter().next()
        };

        let project = match string_in(info, "job_info", "project_full_path")?.filter(|s| !s.is_empty()) {
            Some(p) => p,
            None => var("CI_PROJECT_PATH").filter(|s| !s.is_empty()).ok_or_else(|| {
                bad(
                    "job_info.project_full_path",
                    "missing (and no CI_PROJECT_PATH variable)".into(),
                )
            })?,
        };
        let git_ref = string_in(Some(git), "git_info", "ref")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad("git_info.ref", "missing".into()))?;
        let ref_type = string_in(Some(git), "git_info", "ref_type")?.unwrap_or_else(|| "branch".into());
        let ref_protected = match git.get("protected") {
            Some(Value::Bool(b)) => *b,
            None | Some(Value::Null) => match var("CI_COMMIT_REF_PROTECTED").as_deref() {
                Some("true") => true,
                Some("false") | Some("") | None => false,
                Some(other) => {
                    return Err(bad(
                        "variables.CI_COMMIT_REF_PROTECTED",
                        format!("expected true or false, got {other:?}"),
                    ));
                }
            },
            Some(_) => {
                return Err(bad("git_info.protected", "expected true, false or null".into()));
            }
        };
        let source = var("CI_PIPELINE_SOURCE").unwrap_or_default();
        let project_id = match info.and_then(|m| m.get("project_id")) {
            Some(Value::Number(n)) => Some(n.to_string()),
            None | Some(Value::Null) => None,
            Some(_) => return Err(bad("job_info.project_id", "expected a number".into())),
        };
        // A merge request pipeline from another project: the source project differs.
        let src_id = var("CI_MERGE_REQUEST_SOURCE_PROJECT_ID").filter(|s| !s.is_empty());
        let mr_id = var("CI_MERGE_REQUEST_PROJECT_ID")
            .filter(|s| !s.is_empty())
            .or(project_id);
        let src_path = var("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH").filter(|s| !s.is_empty());
        let from_fork = matches!((&src_id, &mr_id), (Some(s), Some(m)) if s != m)
            || src_path.as_ref().is_some_and(|s| !s.eq_ignore_ascii_case(&project));
        let user = match user {
            Some(u) => Some(u),
            None => match info.and_then(|m| m.get("user_id")) {
                Some(Value::Number(n)) => Some(format!("user-id:{n}")),
                _ => None,
            },
        };
        let image = match v.get("image") {
            Some(Value::Object(m)) => match m.get("name") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        let context = JobContext {
            platform: "gitlab".into(),
            project,
            git_ref: stockade_policy::context::full_ref(&git_ref, &ref_type),
            ref_protected,
            source,
            from_fork,
            job_id: id.clone(),
            user,
            image,
        };
        context.check().map_err(|(f, m)| {
            let field = match f {
                "project" => "job_info.project_full_path",
                "ref" => "git_info.ref",
                other => other,
            };
            bad(field, m)
        })?;
        Ok(Response { id, context, conflicts })
    }

    /// The gate, plus a refusal for every redefined variable it relies on.
    fn decide(&self, policy: &Policy, pool: Option<&str>) -> Result<(Decision, Policy)> {
        let (mut d, effective) = stockade_policy::gate(policy, pool, &self.context)?;
        for (k, vals) in self.conflicts.iter().rev() {
            d.checks.insert(
                0,
                Check {
                    rule: format!("job_response.variables.{k}"),
                    ok: false,
                    reason: format!(
                        "defined {} times with different values {vals:?}: a job may not redefine it",
                        vals.len()
                    ),
                },
            );
            d.allowed = false;
        }
        Ok((d, effective))
    }
}

/// Job-set CUSTOM_ENV_ values that disagree with the trusted response are ignored; say so.
fn note_overrides(ctx: &JobContext) {
    let protected = ctx.ref_protected.to_string();
    let trusted: [(&str, &str); 5] = [
        ("CI_JOB_ID", &ctx.job_id),
        ("CI_PROJECT_PATH", &ctx.project),
        ("CI_COMMIT_REF_NAME", ctx.short_ref()),
        ("CI_COMMIT_REF_PROTECTED", &protected),
        ("CI_PIPELINE_SOURCE", &ctx.source),
    ];
    for (k, want) in trusted {
        if k == "CI_COMMIT_REF_NAME" && want.starts_with("refs/") {
            continue;
        }
        if let Ok(got) = std::env::var(format!("CUSTOM_ENV_{k}"))
            && got != want
        {
            eprintln!("stockade: ignoring CUSTOM_ENV_{k}={got:?}: the job response says {want:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State between stages.

#[derive(Serialize, Deserialize)]
struct JobState {
    job_id: String,
    context: JobContext,
    decision: Decision,
    /// `<project>/<protected|unprotected>` under cache/.
    cache_key: String,
    stages: Vec<StageRecord>,
}

#[derive(Serialize, Deserialize)]
struct StageRecord {
    n: usize,
    stage: String,
    /// "pid starttime" of the `stockade gitlab run` that supervised it.
    supervisor: String,
    report: PathBuf,
    #[serde(default)]
    exit: Option<i32>,
}

impl JobState {
    fn path(l: &Layout, id: &str) -> PathBuf {
        l.job(id).join("state.json")
    }
    fn load(l: &Layout, id: &str) -> Result<Option<JobState>> {
        let p = JobState::path(l, id);
        match fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("reading job state {}", p.display()))?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading job state {}", p.display())),
        }
    }
    fn save(&self, l: &Layout) -> Result<()> {
        let p = JobState::path(l, &self.job_id);
        let tmp = p.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
    }
}

/// The cache key of a project: the path made flat (so that no project's cache dir contains
/// another's) and split by trust: protected refs, other refs, and code from forks.
fn cache_key(ctx: &JobContext) -> String {
    let mut flat = String::new();
    for b in ctx.project.to_ascii_lowercase().bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
            flat.push(b as char);
        } else {
            flat.push_str(&format!("%{b:02X}"));
        }
    }
    let class = match (ctx.from_fork, ctx.ref_protected) {
        (true, _) => "fork",
        (false, true) => "protected",
        (false, false) => "unprotected",
    };
    format!("{flat}/{class}")
}

/// "pid starttime" of this process, as the sandbox's job ids record their supervisor.
fn self_record() -> String {
    proc_record(std::process::id() as i32).unwrap_or_default()
}

fn proc_record(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.to_string();
    Some(format!("{pid} {start}"))
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(mode).create(p) {
        Ok(()) => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
    }
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", p.display()))
}

fn is_root() -> bool {
    rustix::process::getuid().is_root()
}

/// Gives a path to the workspace owner (as root; otherwise the caller owns everything).
fn own(p: &Path) -> Result<()> {
    if is_root() {
        std::os::unix::fs::lchown(p, Some(WORKSPACE_OWNER), Some(WORKSPACE_OWNER))
            .with_context(|| format!("chown {}", p.display()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// config

fn config(a: &Common) -> Result<i32> {
    let l = Layout::new(a)?;
    let policy = load_policy(a.policy.as_deref())?;
    if let Some(p) = policy.resolve_pool(a.pool.as_deref())? {
        policy.for_pool(p)?;
    }
    let id = job_id()?;
    let work = l.work(&id);
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let out = json!({
        "builds_dir": work.join("builds"),
        "cache_dir": work.join("cache"),
        "builds_dir_is_shared": false,
        "hostname": hostname,
        "driver": {"name": "stockade", "version": env!("CARGO_PKG_VERSION")},
        "job_env": {"STOCKADE_GITLAB_JOB_ID": id},
        "shell": "bash",
    });
    println!("{out}");
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// prepare

fn prepare(a: &Common, codes: &Codes) -> Result<i32> {
    let l = Layout::new(a)?;
    let policy = load_policy(a.policy.as_deref())?;
    let resp = Response::load()?;
    note_overrides(&resp.context);
    let (decision, effective) = resp.decide(&policy, a.pool.as_deref())?;
    print!("{}", render(&resp.context, &decision));

    // A retried prepare starts over.
    remove_job(&l, &resp.id)?;
    if !decision.allowed {
        eprintln!("stockade: job {}", decision.summary());
        if let Some(dir) = &a.report_dir {
            fs::create_dir_all(dir).with_context(|| format!("--report-dir {}", dir.display()))?;
            let path = dir.join(format!("{}-prepare.json", resp.id));
            write_refusal_report(&path, &effective, &resp.context, &decision, &[])?;
        }
        return Ok(codes.build);
    }

    mkdir(&l.jobs(), 0o700)?;
    mkdir(&l.job(&resp.id), 0o700)?;
    mkdir(&l.root, 0o711)?;
    mkdir(&l.builds(), 0o711)?;
    mkdir(&l.cache(), 0o700)?;
    let work = l.work(&resp.id);
    mkdir(&work, 0o700)?;
    own(&work)?;
    for sub in ["builds", "cache"] {
        mkdir(&work.join(sub), 0o755)?;
        own(&work.join(sub))?;
    }
    let key = cache_key(&resp.context);
    let restored = copy_tree(&l.cache().join(&key), &work.join("cache"))?;
    JobState {
        job_id: resp.id.clone(),
        context: resp.context.clone(),
        decision,
        cache_key: key.clone(),
        stages: Vec::new(),
    }
    .save(&l)?;
    println!(
        "stockade: job {} prepared: workspace {}, cache {key} ({restored} files)",
        resp.id,
        work.display()
    );
    Ok(0)
}

/// Copies the regular files and directories of `src` into `dst`, owned by the workspace owner.
/// Returns the number of files copied.
fn copy_tree(src: &Path, dst: &Path) -> Result<usize> {
    let rd = match fs::read_dir(src) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading cache {}", src.display())),
    };
    let mut n = 0;
    for e in rd {
        let e = e.with_context(|| format!("reading cache {}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let meta = fs::symlink_metadata(&from).with_context(|| format!("stat {}", from.display()))?;
        if meta.is_dir() {
            mkdir(&to, 0o755)?;
            own(&to)?;
            n += copy_tree(&from, &to)?;
        } else if meta.is_file() {
            fs::copy(&from, &to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            own(&to)?;
            n += 1;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// run

fn run(a: &RunArgs, codes: &Codes, verbose: u8) -> Result<i32> {
    let l = Layout::new(&a.common)?;
    let id = job_id()?;
    let mut state = JobState::load(&l, &id)?
        .ok_or_else(|| anyhow!("job {id} was not prepared (no state under {})", l.jobs().display()))?;
    let policy = load_policy(a.common.policy.as_deref())?;
    // The policy may have changed since prepare: the stored context goes through the gate again.
    let (decision, mut effective) = stockade_policy::gate(&policy, a.common.pool.as_deref(), &state.context)?;
    if !decision.allowed {
        eprintln!("stockade: job {}", decision.summary());
        return Ok(codes.build);
    }

    // What no stage may see: the job response, the runner's temp dir holding it, other jobs'
    // state and every project's cache.
    let resp = response_path().ok();
    let work = l.work(&id);
    let mut hide: Vec<PathBuf> = vec![l.jobs(), l.cache()];
    if let Some(s) = l.sandbox() {
        hide.push(s);
    }
    if let Some(r) = &resp {
        hide.push(r.clone());
        if let Some(dir) = r.parent()
            && dir.components().count() > 2
            && !work.starts_with(dir)
        {
            hide.push(dir.to_path_buf());
        }
    }
    effective.filesystem.hidden.extend(hide);
    // The script reaches the job as its stdin (see stage_command): no path of the host's.
    effective.job.stdin = true;

    let n = state.stages.len() + 1;
    let stage = sanitize(&a.stage);
    let script = l.job(&id).join(format!("stage-{n}-{stage}.sh"));
    let src = if a.script.is_absolute() {
        a.script.clone()
    } else {
        std::env::current_dir()?.join(&a.script)
    };
    fs::copy(&src, &script).with_context(|| format!("copying stage script {}", src.display()))?;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644))?;
    let file = fs::File::open(&script).with_context(|| format!("opening {}", script.display()))?;
    rustix::stdio::dup2_stdin(&file).context("giving the stage script to the job as stdin")?;
    drop(file);

    let reports = match &a.common.report_dir {
        Some(d) => {
            fs::create_dir_all(d).with_context(|| format!("--report-dir {}", d.display()))?;
            d.clone()
        }
        None => {
            mkdir(&l.job(&id).join("reports"), 0o700)?;
            l.job(&id).join("reports")
        }
    };
    let report = reports.join(format!("{id}-{n}-{stage}.json"));
    let _ = fs::remove_file(&report);
    state.stages.push(StageRecord {
        n,
        stage: a.stage.clone(),
        supervisor: self_record(),
        report: report.clone(),
        exit: None,
    });
    state.save(&l)?;

    let mut context = report_context(&state.context, &decision);
    context["gitlab"] = json!({"stage": a.stage, "n": n});
    let result = execute(JobSpec {
        policy: effective,
        command: stage_command(&a.stage),
        workspace: Some(work),
        secrets: Vec::new(),
        report: Some(report.clone()),
        state_dir: l.sandbox(),
        context: Some(context),
        verbose,
        monitor: Default::default(),
    });
    let code = classify(result, &report, codes)?;
    if let Some(rec) = state.stages.last_mut() {
        rec.exit = Some(code);
    }
    state.save(&l)?;
    Ok(code)
}

/// bash reads the script through a fresh open of its stdin (the copied script), and the
/// script's commands get /dev/null as stdin, as under gitlab-runner's own shells.
fn stage_command(stage: &str) -> Vec<OsString> {
    ["bash", "-c", "exec 3<&0 </dev/null && exec bash /dev/fd/3", stage]
        .iter()
        .map(OsString::from)
        .collect()
}

fn sanitize(stage: &str) -> String {
    let s: String = stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "stage".into() } else { s }
}

/// The stage's exit code for gitlab-runner: 0, the build-failure code (with the script's own
/// code in $BUILD_EXIT_CODE_FILE) or the system-failure code when stockade itself failed.
fn classify(result: Result<i32>, report: &Path, codes: &Codes) -> Result<i32> {
    let code = result?;
    let doc: Value =
        serde_json::from_slice(&fs::read(report).with_context(|| format!("reading {}", report.display()))?)
            .with_context(|| format!("reading {}", report.display()))?;
    let outcome = &doc["outcome"];
    let leftovers = doc["leftovers"].as_array().map_or(0, Vec::len);
    if leftovers > 0 {
        bail!("teardown left {leftovers} things behind (see {})", report.display());
    }
    if let Some(e) = outcome["exec_error"].as_str() {
        bail!("the stage's shell could not start: {e}");
    }
    if code == 0 {
        return Ok(0);
    }
    if let Some(path) = std::env::var_os("BUILD_EXIT_CODE_FILE").filter(|p| !p.is_empty()) {
        fs::write(&path, format!("{code}\n"))
            .with_context(|| format!("BUILD_EXIT_CODE_FILE: writing {}", Path::new(&path).display()))?;
    }
    Ok(codes.build)
}

// ---------------------------------------------------------------------------------------------
// cleanup

fn cleanup(a: &Common, codes: &Codes) -> Result<i32> {
    let l = Layout::new(a)?;
    let id = job_id()?;
    let state = match JobState::load(&l, &id) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stockade: warning: {e:#}; cleaning up without it");
            None
        }
    };
    let supervisors: Vec<String> = state
        .iter()
        .flat_map(|s| s.stages.iter().map(|r| r.supervisor.clone()))
        .collect();
    let mut left = Vec::new();

    // 1. A stage gitlab-runner gave up on may still run: its supervisor dies, and its sandbox
    // with it (parent-death signal, pid namespace).
    for sup in &supervisors {
        if let Some(pid) = live(sup) {
            eprintln!("stockade: killing the supervisor of an unfinished stage (pid {pid})");
            if let Some(p) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            for _ in 0..200 {
                if live(sup).is_none() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    // 2. The sandboxes' state of dead supervisors: cgroups (killed first), job dirs.
    let gc = stockade_sandbox::state::gc(&l.sandbox_root());
    left.extend(gc.errors.iter().cloned());
    let ours = |what: &String| {
        supervisors
            .iter()
            .any(|s| what.contains(&format!(".{}", s.replace(' ', "."))))
    };
    let killed = gc.jobs_removed.iter().filter(|j| ours(j)).count();

    // 3. The cache goes back to the project; then the workspace and the job's state go.
    let work = l.work(&id);
    let mut published = 0;
    if let Some(s) = &state
        && s.decision.allowed
    {
        match publish(&work.join("cache"), &l.cache().join(&s.cache_key)) {
            Ok(n) => published = n,
            Err(e) => left.push(format!("cache not published: {e:#}")),
        }
    }
    if let Err(e) = remove_job(&l, &id) {
        left.push(format!("{e:#}"));
    }

    // 4. Verify: no supervisor, no sandbox of ours, no workspace, no state.
    for sup in &supervisors {
        if let Some(pid) = live(sup) {
            left.push(format!("stage supervisor pid {pid} is still running"));
        }
        let suffix = format!(".{}", sup.replace(' ', "."));
        if let Ok(rd) = fs::read_dir(stockade_sandbox::state::jobs_dir(&l.sandbox_root())) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(&suffix) {
                    left.push(format!("sandbox state {}", e.path().display()));
                }
            }
        }
    }
    let again = stockade_sandbox::state::gc(&l.sandbox_root());
    for what in again.jobs_removed.iter().chain(again.cgroups_removed.iter()) {
        if ours(what) {
            left.push(format!("sandbox leftover {what} (removed on a second pass)"));
        }
    }
    for p in [work, l.job(&id)] {
        if fs::symlink_metadata(&p).is_ok() {
            left.push(format!("{} still exists", p.display()));
        }
    }
    if left.is_empty() {
        println!(
            "stockade: job {id} cleaned up: {} stages run, {killed} killed stages' sandboxes removed, \
             {published} cache files published, workspace and state removed",
            supervisors.len()
        );
        Ok(0)
    } else {
        for l in &left {
            eprintln!("stockade: error: cleanup of job {id}: {l}");
        }
        Ok(codes.system)
    }
}

/// The pid of a supervisor ("pid starttime") while that very process still runs.
fn live(sup: &str) -> Option<i32> {
    let pid: i32 = sup.split_whitespace().next()?.parse().ok()?;
    (proc_record(pid).as_deref() == Some(sup)).then_some(pid)
}

/// Removes the job's workspace and state (files of the job's uid included).
fn remove_job(l: &Layout, id: &str) -> Result<()> {
    for p in [l.work(id), l.job(id)] {
        match fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}

/// Moves the cache files the job left in its workspace into the project's cache. Only regular
/// files with one link, owned by the workspace owner (what the job wrote): never a symlink or a
/// hard link to something else, so the next job's copy cannot be pointed at a host file.
fn publish(src: &Path, dst: &Path) -> Result<usize> {
    let meta = match fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("stat {}", src.display())),
    };
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for e in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let m = fs::symlink_metadata(&from)?;
        let owner_ok = !is_root() || m.uid() == WORKSPACE_OWNER;
        if m.is_dir() {
            n += publish(&from, &to)?;
        } else if m.is_file() && m.nlink() == 1 && owner_ok {
            mkdir(dst, 0o700)?;
            own(dst)?;
            if fs::rename(&from, &to).is_err() {
                fs::copy(&from, &to).with_context(|| format!("publishing {}", from.display()))?;
                own(&to)?;
            }
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(vars: &[(&str, &str)], protected: Value) -> Result<Response> {
        let v = json!({
            "id": 77,
            "job_info": {"project_full_path": "Group/App", "project_id": 5},
            "git_info": {"ref": "feature", "ref_type": "branch", "protected": protected},
            "variables": vars.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
            "image": {"name": "alpine:3"},
        });
        Response::from_value(&v, Path::new("response.json"))
    }

    #[test]
    fn the_context_comes_from_the_response() {
        let r = resp(
            &[("CI_PIPELINE_SOURCE", "push"), ("GITLAB_USER_LOGIN", "alice")],
            json!(true),
        )
        .unwrap();
        let c = &r.context;
        assert_eq!(
            (c.project.as_str(), c.git_ref.as_str()),
            ("Group/App", "refs/heads/feature")
        );
        assert!(c.ref_protected && !c.from_fork);
        assert_eq!(c.source, "push");
        assert_eq!(c.job_id, "77");
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.image.as_deref(), Some("alpine:3"));
        assert!(r.conflicts.is_empty());
        assert_eq!(cache_key(c), "group%2Fapp/protected");
    }

    #[test]
    fn merge_requests_from_other_projects_are_forks() {
        let mr = [
            ("CI_PIPELINE_SOURCE", "merge_request_event"),
            ("CI_MERGE_REQUEST_PROJECT_ID", "5"),
            ("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "9"),
        ];
        let r = resp(&mr, json!(false)).unwrap();
        assert!(r.context.from_fork);
        assert_eq!(cache_key(&r.context), "group%2Fapp/fork");
        let same = resp(&[("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "5")], json!(false)).unwrap();
        assert!(!same.context.from_fork, "the source project is the job's own project");
        let by_path = resp(&[("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH", "mallory/app")], json!(false)).unwrap();
        assert!(by_path.context.from_fork);
        assert_eq!(cache_key(&by_path.context), "group%2Fapp/fork");
    }

    #[test]
    fn protection_falls_back_to_the_variable_and_redefinitions_are_caught() {
        let r = resp(&[("CI_COMMIT_REF_PROTECTED", "true")], Value::Null).unwrap();
        assert!(r.context.ref_protected);
        let r = resp(
            &[
                ("CI_COMMIT_REF_PROTECTED", "false"),
                ("CI_COMMIT_REF_PROTECTED", "true"),
            ],
            Value::Null,
        )
        .unwrap();
        assert!(!r.context.ref_protected, "the first definition is GitLab's");
        assert_eq!(
            r.conflicts,
            [(
                "CI_COMMIT_REF_PROTECTED".to_string(),
                vec!["false".to_string(), "true".to_string()]
            )]
        );
        // git_info.protected, when present, is the only word on protection.
        let r = resp(&[("CI_COMMIT_REF_PROTECTED", "true")], json!(false)).unwrap();
        assert!(!r.context.ref_protected && r.conflicts.is_empty());
        let e = resp(&[("CI_COMMIT_REF_PROTECTED", "yes")], Value::Null)
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "job response response.json: variables.CI_COMMIT_REF_PROTECTED: expected true or false, got \"yes\""
        );
    }
}
