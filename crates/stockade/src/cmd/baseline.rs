//! `stockade baseline learn`: turns reports of earlier, trusted runs of one pipeline into the
//! readable baseline that `stockade run --baseline` compares new runs with.

use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Learn a baseline from job reports of the same pipeline (two or more runs recommended).
    Learn(LearnArgs),
}

#[derive(clap::Args)]
pub struct LearnArgs {
    /// Job reports written by `stockade run --report`.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Write the baseline here (default: stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn main(c: Command) -> Result<i32> {
    match c {
        Command::Learn(a) => learn(a),
    }
}

fn learn(a: LearnArgs) -> Result<i32> {
    let mut reports = Vec::new();
    for p in &a.reports {
        reports.push((p.display().to_string(), crate::cmd::report::read_report(p)?));
    }
    let b = stockade_monitor::baseline::learn(&reports)?;
    let json = serde_json::to_string_pretty(&b)? + "\n";
    match &a.output {
        Some(out) => std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?,
        None => print!("{json}"),
    }
    Ok(0)
}
