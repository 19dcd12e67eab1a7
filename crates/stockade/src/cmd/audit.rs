//! `stockade audit [PATH...]`: the static audit of CI runner configuration, its flags, its
//! config file, its output formats and its exit code (0 clean, 1 findings, 2 usage or I/O).

use crate::exit;
use anyhow::Context;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use stockade_audit::{AuditConfig, rule_metas, rules};
use stockade_report::{Severity, github, json, plain, sarif};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    Plain,
    Json,
    Sarif,
    Github,
    /// Only with --list-rules: the docs/rules.md page.
    Markdown,
}

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories to audit (directories are walked, respecting .gitignore).
    #[arg(default_value = ".")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "plain")]
    format: Format,
    /// Exit 1 only for findings at or above this severity (info, low, medium, high, critical).
    #[arg(long, default_value = "low", value_name = "SEVERITY")]
    fail_on: Severity,
    /// Config file with an [audit] table (default: .stockade.toml in the audited directory or
    /// the current one).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the rules (with --format markdown: the docs/rules.md page) and exit.
    #[arg(long)]
    list_rules: bool,
}

pub fn main(args: Args) -> anyhow::Result<i32> {
    let out = std::io::stdout();
    let mut out = out.lock();
    if args.list_rules {
        let text = match args.format {
            Format::Markdown => rules::markdown(),
            Format::Json => json_rules(),
            _ => plain_rules(),
        };
        out.write_all(text.as_bytes()).context("writing to stdout")?;
        return Ok(exit::CLEAN);
    }
    if matches!(args.format, Format::Markdown) {
        eprintln!("stockade: error: --format markdown only goes with --list-rules");
        return Ok(exit::USAGE_OR_IO);
    }
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stockade: error: {e:#}");
            return Ok(exit::USAGE_OR_IO);
        }
    };

    let bar = progress_bar();
    let last = Mutex::new(0usize);
    let progress = |done: usize, total: usize| {
        if let Some(b) = &bar {
            let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
            if done > *l {
                *l = done;
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        }
    };
    let outcome = match stockade_audit::audit_paths(&args.paths, &cfg, &progress) {
        Ok(o) => o,
        Err(e) => {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let chain = anyhow::Error::new(e);
            eprintln!("stockade: error: {chain:#}");
            return Ok(exit::USAGE_OR_IO);
        }
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }

    let metas = rule_metas();
    let text = match args.format {
        Format::Plain => {
            let cache: Mutex<HashMap<String, Option<String>>> = Mutex::new(HashMap::new());
            let source_line = |file: &str, line: u32| -> Option<String> {
                let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                let text = c
                    .entry(file.to_string())
                    .or_insert_with(|| std::fs::read_to_string(Path::new(file)).ok());
                text.as_deref()?
                    .lines()
                    .nth((line as usize).checked_sub(1)?)
                    .map(str::to_string)
            };
            plain::render(
                &outcome.findings,
                &outcome.diagnostics,
                &metas,
                outcome.files_audited,
                &plain::PlainOptions {
                    source_line: &source_line,
                    color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                },
            )
        }
        Format::Json => json::render(&outcome.findings, &outcome.diagnostics),
        Format::Sarif => sarif::render(
            &outcome.findings,
            &outcome.diagnostics,
            &metas,
            &sarif::Tool {
                name: "stockade",
                version: env!("CARGO_PKG_VERSION"),
                information_uri: REPOSITORY,
                docs_uri: &format!("{REPOSITORY}/blob/main/docs/rules.md"),
            },
        ),
        Format::Github => github::render(&outcome.findings, &outcome.diagnostics),
        // Refused above: markdown is the rules page only.
        Format::Markdown => String::new(),
    };
    out.write_all(text.as_bytes()).context("writing to stdout")?;
    out.flush().context("writing to stdout")?;

    if outcome.io_errors {
        return Ok(exit::USAGE_OR_IO);
    }
    let failing = outcome.findings.iter().any(|f| f.severity >= args.fail_on);
    Ok(if failing { exit::FINDINGS } else { exit::CLEAN })
}

const REPOSITORY: &str = "https://example.invalid/stockade";

fn load_config(args: &Args) -> anyhow::Result<AuditConfig> {
    let ids = rules::ids();
    if let Some(path) = &args.config {
        return Ok(AuditConfig::load(path, &ids)?);
    }
    let mut candidates = Vec::new();
    if let Some(first) = args.paths.first() {
        let dir = if first.is_dir() {
            Some(first.as_path())
        } else {
            first.parent()
        };
        if let Some(d) = dir {
            candidates.push(d.join(".stockade.toml"));
        }
    }
    candidates.push(PathBuf::from(".stockade.toml"));
    for c in candidates {
        if c.is_file() {
            return Ok(AuditConfig::load(&c, &ids)?);
        }
    }
    Ok(AuditConfig::default())
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr_with_hz(10));
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} auditing {pos}/{len} files {wide_bar}") {
        bar.set_style(style);
    }
    Some(bar)
}

fn plain_rules() -> String {
    let mut s = String::new();
    for r in rule_metas() {
        s.push_str(&format!(
            "{:<42} {:<8} {}\n",
            r.id,
            r.severity,
            first_sentence(r.description)
        ));
    }
    s
}

fn json_rules() -> String {
    let mut s = serde_json::to_string_pretty(&rule_metas()).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}

fn first_sentence(s: &str) -> &str {
    s.split(". ").next().unwrap_or(s)
}
