//! `stockade host-check`: runs the runner-host checklist, read-only, against the live system or
//! a mounted image, prints it as a table, JSON or SARIF, and exits 0, 1 (failures) or 2 (error).

use crate::exit;
use anyhow::Context;
use std::io::Write;
use std::path::PathBuf;
use stockade_hostcheck::Host;
use stockade_report::Severity;
use stockade_report::checks::{any_failed_at_or_above, render_json, render_plain, render_sarif};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Plain,
    Json,
    Sarif,
}

#[derive(clap::Args)]
pub struct Args {
    /// Inspect this directory (a mounted image or a fixture tree) instead of the live system;
    /// its /proc is the live one only when DIR is `/`.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "plain")]
    format: Format,
    /// Exit 1 only for failed checks at or above this severity (info, low, medium, high, critical).
    #[arg(long, default_value = "low", value_name = "SEVERITY")]
    fail_on: Severity,
    /// Also test whether the cloud metadata address 169.254.169.254 answers: the only option
    /// that sends network traffic.
    #[arg(long)]
    probe: bool,
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let host = match Host::open(&args.root) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("stockade: error: host-check --root: {e}");
            return Ok(exit::USAGE_OR_IO);
        }
    };
    let results = stockade_hostcheck::run(&host, args.probe);
    let root = args.root.display().to_string();
    let text = match args.format {
        Format::Plain => render_plain(&results, &root),
        Format::Json => render_json(&results, &root),
        Format::Sarif => render_sarif(&results, env!("CARGO_PKG_VERSION")),
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("host-check: writing the report to stdout")?;
    Ok(if any_failed_at_or_above(&results, args.fail_on) {
        exit::FINDINGS
    } else {
        exit::CLEAN
    })
}
