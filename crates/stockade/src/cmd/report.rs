//! `stockade report`: reads a job report, re-checks it (optionally against a baseline), and
//! prints a summary or writes a self-contained HTML page. Also the monitor's glue for `run`.

use crate::cmd::run::{JobSpec, Watch};
use crate::exit;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use stockade_monitor::{Baseline, JobReport, Mode, Monitor, MonitorConfig, Severity};

#[derive(clap::Args)]
pub struct Args {
    /// A job report written by `stockade run --report`.
    #[arg(value_name = "REPORT")]
    pub file: PathBuf,
    /// Also write a self-contained HTML page to OUT.
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Re-check the report against this baseline (instead of the one it was run with).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Print the report's detections as JSON instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when a detection is at or above this severity.
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
}

pub fn main(a: Args) -> Result<i32> {
    let mut report = read_report(&a.file)?;
    let baseline = match &a.baseline {
        Some(p) => Some(read_baseline(p)?.0),
        None => None,
    };
    // A saved report is settled again: rules added since, or a baseline given now, apply.
    stockade_monitor::finalize(&mut report, baseline.as_ref(), None, 0.0);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report.observed.detections)?);
    } else {
        print!("{}", stockade_monitor::render::text::render(&report));
    }
    if let Some(out) = &a.html {
        std::fs::write(out, stockade_monitor::render::html::render(&report))
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let failed = a
        .fail_on
        .is_some_and(|t| report.observed.detections.iter().any(|d| d.severity >= t));
    Ok(if failed { 1 } else { 0 })
}

pub fn read_report(path: &Path) -> Result<JobReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading report {}", path.display()))?;
    let report: JobReport =
        serde_json::from_str(&text).with_context(|| format!("{}: not a stockade job report", path.display()))?;
    if report.version != stockade_monitor::REPORT_VERSION {
        bail!(
            "{}: report version {} (this stockade reads {})",
            path.display(),
            report.version,
            stockade_monitor::REPORT_VERSION
        );
    }
    Ok(report)
}

/// A baseline and how reports name it (`path (sha256:...)`).
pub fn read_baseline(path: &Path) -> Result<(Baseline, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading baseline {}", path.display()))?;
    let name = path.display().to_string();
    let b = Baseline::parse(&name, &text)?;
    Ok((b, stockade_monitor::baseline::label(&name, &text)))
}

/// Before the sandbox: the monitor (subscribed to the kernel's events) and the baseline.
pub(crate) fn prepare_monitor(
    spec: &JobSpec,
    o: &Watch,
    secrets: &[Vec<u8>],
) -> Result<(Option<Monitor>, Option<Baseline>)> {
    let baseline = match &o.baseline {
        Some(p) => Some(read_baseline(p)?),
        None => None,
    };
    if o.mode == Mode::Off {
        // What the policy asks of a monitor that the command line turned off is moot.
        if baseline.is_some() || !spec.monitor.protect.is_empty() {
            bail!("--mode off: --baseline and --protect-source need monitoring");
        }
        return Ok((None, None));
    }
    let workspace = match &spec.workspace {
        Some(w) => Some(std::fs::canonicalize(w).with_context(|| format!("--workspace {}", w.display()))?),
        None if !spec.monitor.protect.is_empty() => {
            bail!("--protect-source needs --workspace (the checkout to protect)")
        }
        None if !o.protect.is_empty() => {
            bail!("the policy's [monitor] protect_source needs --workspace (the checkout to protect)")
        }
        None => None,
    };
    let cfg = MonitorConfig {
        mode: o.mode,
        threshold: o.threshold,
        baseline: baseline.as_ref().map(|b| b.0.clone()),
        baseline_label: baseline.as_ref().map(|b| b.1.clone()),
        secrets: secrets
            .iter()
            .filter_map(|s| std::str::from_utf8(s).ok().map(String::from))
            .collect(),
        workspace,
        protect: o.protect.clone(),
        expected_duration: o.expected_duration,
        writable_root: spec
            .policy
            .filesystem
            .writable_root
            .then(|| spec.policy.filesystem.rootfs.clone()),
        cpu_factor: o.cpu_factor,
    };
    match Monitor::new(cfg) {
        Ok(m) => Ok((Some(m), baseline.map(|b| b.0))),
        // Audit mode without root still runs the job: it only loses the record.
        Err(stockade_monitor::MonitorError::Connector(e)) if o.mode == Mode::Audit => {
            eprintln!("stockade: warning: monitoring off: {e}");
            Ok((None, baseline.map(|b| b.0)))
        }
        Err(e) => Err(e).context("starting the monitor"),
    }
}

/// After teardown: settles detections, prints them, and applies block mode to the exit code.
pub(crate) fn conclude_monitor(report: &mut JobReport, o: &Watch, baseline: Option<&Baseline>, code: i32) -> i32 {
    let expected = o.expected_duration.map(|d| d.as_millis() as u64);
    let blocked = stockade_monitor::finalize(report, baseline, expected, o.cpu_factor);
    for d in &report.observed.detections {
        eprintln!("stockade: detection: {} {}: {}", d.severity, d.id, d.explanation);
    }
    let mut code = code;
    if o.mode == Mode::Block {
        match blocked {
            Some(b) => {
                eprintln!(
                    "stockade: blocked: {} ({}): {}{}",
                    b.id,
                    b.severity,
                    b.explanation,
                    if b.stopped {
                        "; the job was stopped"
                    } else {
                        "; found at the job's end"
                    }
                );
                if code != exit::SETUP_FAILED {
                    code = exit::BLOCKED;
                }
            }
            None if code == exit::BLOCKED => {
                eprintln!(
                    "stockade: the job itself exited {}, the code block mode reserves; exiting 1",
                    exit::BLOCKED
                );
                code = 1;
            }
            None => {}
        }
    }
    report.outcome.exit_code = code;
    code
}
