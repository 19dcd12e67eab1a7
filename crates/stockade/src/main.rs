//! The `stockade` binary: parses the command line and maps every library error to a documented
//! exit code. anyhow lives here and nowhere else.

mod cmd;
mod exit;

use clap::{Parser, Subcommand};

/// Run untrusted CI jobs in ephemeral, locked-down Linux sandboxes, and audit the
/// configuration and hosts of CI runners.
#[derive(Parser)]
#[command(name = "stockade", version, about, long_about = None, after_help = exit::HELP)]
struct Cli<C: Subcommand = Command> {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: C,
}

const RUN_ABOUT: &str = "Run a command in a fresh, ephemeral, locked-down sandbox";

/// `Cli<RunOnly>` parses `stockade run`. Every job starts with a parse: building the parsers of
/// all the other subcommands took half a millisecond of it.
#[derive(Subcommand)]
enum RunOnly {
    #[command(about = RUN_ABOUT)]
    Run(Box<cmd::run::Args>),
}

// One variant per subcommand, one file per subcommand under cmd/.
#[derive(Subcommand)]
enum Command {
    #[command(about = RUN_ABOUT)]
    Run(Box<cmd::run::Args>),
    /// Print what this host can enforce, and why.
    Doctor(cmd::doctor::Args),
    /// Remove state left behind by jobs whose supervisor died.
    Gc(cmd::gc::Args),
    /// Print or check policy files.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Check the runner host, runner processes and container builds against the hardening checklist (read-only).
    HostCheck(cmd::host_check::Args),
    /// Audit CI runner configuration (GitHub, ARC, GitLab, Jenkins, Kubernetes) for risky settings.
    Audit(cmd::audit::Args),
    /// Check a job context against the policy's runner pools: the decision and every reason.
    Gate(cmd::gate::Args),
    /// GitLab Runner custom executor driver (config_exec, prepare_exec, run_exec, cleanup_exec).
    #[command(subcommand)]
    Gitlab(cmd::gitlab::Command),
    /// GitHub Actions runner hooks.
    #[command(subcommand)]
    Github(cmd::github::Command),
    /// Summarize a job report, or write it as an HTML page.
    Report(cmd::report::Args),
    /// Learn a baseline of normal behaviour from earlier job reports.
    #[command(subcommand)]
    Baseline(cmd::baseline::Command),
}

fn main() {
    let parsed = if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        Cli::<RunOnly>::try_parse().map(|c| Cli {
            verbose: c.verbose,
            command: match c.command {
                RunOnly::Run(a) => Command::Run(a),
            },
        })
    } else {
        Cli::<Command>::try_parse()
    };
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => exit_on_usage_error(e),
    };
    let (result, failure_code) = match cli.command {
        Command::Run(a) => (cmd::run::main(*a, cli.verbose), exit::SETUP_FAILED),
        Command::Doctor(a) => (cmd::doctor::main(a), exit::SETUP_FAILED),
        Command::Gc(a) => (cmd::gc::main(a), exit::SETUP_FAILED),
        Command::Policy(c) => (cmd::policy::main(c), exit::SETUP_FAILED),
        Command::HostCheck(a) => (cmd::host_check::main(a), exit::USAGE_OR_IO),
        Command::Audit(a) => (cmd::audit::main(a), exit::USAGE_OR_IO),
        Command::Gate(a) => (cmd::gate::main(a), exit::SETUP_FAILED),
        Command::Gitlab(c) => (cmd::gitlab::main(c, cli.verbose), 2),
        Command::Github(c) => (cmd::github::main(c), exit::SETUP_FAILED),
        Command::Report(a) => (cmd::report::main(a), 2),
        Command::Baseline(c) => (cmd::baseline::main(c), 2),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // One line: every step's error names the step and keeps its cause in the chain.
            eprintln!("stockade: error: {err:#}");
            std::process::exit(failure_code);
        }
    }
}

/// `stockade run` promises exit code 125 and one line for any bad input, flags included; other
/// subcommands keep clap's usage exit code (2).
fn exit_on_usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || std::env::args().nth(1).as_deref() != Some("run")
    {
        e.exit()
    }
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    eprintln!("stockade: {}", first.trim_start_matches("error: ").trim());
    std::process::exit(exit::SETUP_FAILED)
}
