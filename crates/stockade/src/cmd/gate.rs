//! `stockade gate`: the pool's admission decision for one job context, with every reason; and the
//! same gate for `stockade run --pool --context`, so that a refused job never starts.

use crate::exit;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use stockade_monitor::report::JobReport;
use stockade_policy::{Decision, JobContext, Policy};

#[derive(clap::Args)]
pub struct Args {
    /// Policy file (TOML). Without it, the embedded default policy (no pools) applies.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The job context (JSON): platform, project, ref, ref_protected, source, from_fork, job_id.
    #[arg(long, value_name = "FILE")]
    pub context: PathBuf,
    /// The pool to check the job against (default: the policy's default_pool).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn main(a: Args) -> Result<i32> {
    let policy = load_policy(a.policy.as_deref())?;
    let ctx = JobContext::load(&a.context)?;
    let (decision, _) = stockade_policy::gate(&policy, a.pool.as_deref(), &ctx)?;
    if a.json {
        let doc = json!({"context": ctx, "gate": decision});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&ctx, &decision));
    }
    Ok(if decision.allowed { 0 } else { exit::REFUSED })
}

pub fn load_policy(path: Option<&Path>) -> Result<Policy> {
    Ok(match path {
        Some(p) => stockade_policy::load(p)?,
        None => Policy::default_policy(),
    })
}

/// The decision for people: the summary line, then one line per rule.
pub fn render(ctx: &JobContext, d: &Decision) -> String {
    let mut out = format!(
        "job {} ({} {} {}): {}\n",
        ctx.job_id,
        ctx.platform,
        ctx.project,
        ctx.git_ref,
        d.summary()
    );
    for c in &d.checks {
        out.push_str(&format!(
            "  {:<8} {}: {}\n",
            if c.ok { "ok" } else { "REFUSED" },
            c.rule,
            c.reason
        ));
    }
    out
}

/// What `report.context` carries for a job that went through the gate.
pub fn report_context(ctx: &JobContext, d: &Decision) -> Value {
    json!({"context": ctx, "gate": d})
}

/// The gate's verdict for `stockade run`.
pub enum Admission {
    /// Run the job under this (pool's effective) policy; `context` goes into the report.
    Admitted {
        policy: Box<Policy>,
        context: Option<Value>,
    },
    /// The job was refused: the reason is printed, the report written; exit with this code.
    Refused(i32),
}

/// `stockade run --pool NAME --context FILE`: without --context there is no gate and the
/// top-level policy applies; with it, the job's pool decides, and an admitted job runs under the
/// pool's settings.
pub fn admit(
    policy: Policy,
    pool: Option<&str>,
    context: Option<&Path>,
    report: Option<&Path>,
    command: &[OsString],
) -> Result<Admission> {
    let Some(path) = context else {
        if pool.is_some() {
            bail!("--pool needs --context FILE: the gate decides from the job's context");
        }
        return Ok(Admission::Admitted {
            policy: Box::new(policy),
            context: None,
        });
    };
    let ctx = JobContext::load(path)?;
    let (decision, effective) = stockade_policy::gate(&policy, pool, &ctx)?;
    if decision.allowed {
        return Ok(Admission::Admitted {
            policy: Box::new(effective),
            context: Some(report_context(&ctx, &decision)),
        });
    }
    eprintln!("stockade: job {}", decision.summary());
    if let Some(r) = report {
        write_refusal_report(r, &effective, &ctx, &decision, command)?;
    }
    Ok(Admission::Refused(exit::REFUSED))
}

/// A job report for a job the gate refused: nothing ran, the decision says why.
pub fn write_refusal_report(
    path: &Path,
    policy: &Policy,
    ctx: &JobContext,
    d: &Decision,
    command: &[OsString],
) -> Result<()> {
    let doc = json!({
        "version": stockade_monitor::REPORT_VERSION,
        "job_id": stockade_sandbox::state::new_job_id(),
        "command": command.iter().map(|c| c.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        "policy_digest": policy.digest(),
        "context": report_context(ctx, d),
        "started_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "outcome": {
            "exit_code": exit::REFUSED, "status": null, "signal": null, "timed_out": false,
            "oom_killed": false, "pids_limit_hit": false, "interrupted": null,
            "exec_error": null,
        },
        "resources": {"wall_ms": 0, "cpu_ms": null, "cpu_user_ms": null, "cpu_system_ms": null,
            "memory_peak_bytes": null, "pids_peak": null},
        "enforced": [],
        "warnings": [],
        "denied_syscalls": {},
        "left_running": [],
        "leftovers": [],
        "egress": null,
    });
    // Through the report type, so that a refusal report has exactly the job report's schema.
    let report: JobReport = serde_json::from_value(doc).context("building the refusal report")?;
    let text = serde_json::to_vec_pretty(&report)?;
    std::fs::write(path, text).with_context(|| format!("writing report {}", path.display()))
}
