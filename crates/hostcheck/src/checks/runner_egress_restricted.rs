//! `runner-egress-restricted`: a job that can reach anything can exfiltrate secrets and reach
//! cloud metadata; egress must default to drop for the runner (or go through Stockade's egress).
//!
//! The metadata address is contacted only with `--probe`, the one option that sends traffic.

use super::runner_uses_stockade::executes_through_stockade;
use super::{Check, Group, Outcome, combine, no_runners};
use crate::facts::Ctx;
use crate::facts::firewall::{self, Egress};
use crate::facts::runners::Kind;
use std::time::Duration;
use stockade_report::Severity;
use stockade_report::checks::CheckStatus;

pub const CHECK: Check = Check {
    id: "runner-egress-restricted",
    group: Group::RunnerProcess,
    severity: Severity::High,
    title: "Runner egress restricted by default",
    remediation: "Drop outbound traffic by default for the runner user (nftables: an output-hook chain with policy drop, or `meta skuid RUNNER drop` after its allowed destinations) and for container traffic (forward chain), or run jobs through stockade's egress proxy; block 169.254.169.254.",
    run,
};

const NFT: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];
const IPTABLES_SAVE: [&str; 2] = ["/usr/sbin/iptables-save", "/sbin/iptables-save"];

/// The live ruleset(s) when the root is `/`; errors say why a live view is missing.
fn live_rulesets(ctx: &Ctx) -> (Vec<Egress>, Vec<String>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    if !ctx.host.is_live() {
        return (found, errors);
    }
    let timeout = Duration::from_secs(5);
    if let Some(nft) = NFT.iter().find(|p| std::path::Path::new(p).exists()) {
        match firewall::run_listing(&[nft, "list", "ruleset"], timeout) {
            Ok(text) => found.push(firewall::parse_nft(&text, "nft list ruleset")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some(ipt) = IPTABLES_SAVE.iter().find(|p| std::path::Path::new(p).exists()) {
        match firewall::run_listing(&[ipt], timeout) {
            Ok(text) => found.push(firewall::parse_iptables(&text, "iptables-save")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if found.is_empty() && errors.is_empty() {
        errors.push("neither nft nor iptables-save is installed".into());
    }
    (found, errors)
}

fn probe_metadata() -> String {
    let addr = std::net::SocketAddr::from(([169, 254, 169, 254], 80));
    match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => "169.254.169.254:80 answered a TCP connection from this tool's user (--probe)".into(),
        Err(e) => format!("169.254.169.254:80 did not answer (--probe): {e}"),
    }
}

fn run(ctx: &Ctx) -> Outcome {
    if let Some(o) = no_runners(ctx) {
        return o;
    }
    let runners = ctx.runners().unwrap_or(&[]);
    let (live, live_errors) = live_rulesets(ctx);
    let (files, file_errors) = firewall::from_files(ctx.host);
    // The live ruleset is the truth; saved files speak only when no live view could be had.
    let rulesets: Vec<&Egress> = if live.is_empty() {
        files.iter().collect()
    } else {
        live.iter().collect()
    };
    let mut extra = Vec::new();
    for rs in &rulesets {
        extra.push(format!(
            "{}: output policy {}, forward policy {}, per-user drops: {}",
            rs.source,
            if rs.output_drop { "drop" } else { "accept" },
            if rs.forward_drop { "drop" } else { "accept" },
            if rs.user_drops.is_empty() {
                "none".to_string()
            } else {
                rs.user_drops.join(",")
            }
        ));
    }
    if rulesets.is_empty() {
        extra.push("no nftables or iptables ruleset found".into());
    }
    for e in live_errors.iter().chain(&file_errors) {
        extra.push(format!("not read: {e}"));
    }
    let mut metadata_open = false;
    if ctx.probe && !ctx.host.is_live() {
        extra.push("169.254.169.254 not probed: --root is not the live system".into());
    } else if ctx.probe {
        let p = probe_metadata();
        metadata_open = p.contains("answered");
        extra.push(p);
    } else {
        extra.push("169.254.169.254 not probed (use --probe)".into());
    }
    // A live view was wanted but none could be had (e.g. unprivileged): say unknown, not fail.
    let blind = ctx.host.is_live() && live.is_empty() && !live_errors.is_empty();
    let parts = runners
        .iter()
        .map(|r| {
            if executes_through_stockade(r) {
                return (
                    CheckStatus::Pass,
                    format!("{}: jobs run inside stockade, behind its egress proxy", r.label()),
                );
            }
            let containers = match (&r.kind, &r.gitlab) {
                (Kind::GitLab, Some(cfg)) => cfg
                    .runners
                    .iter()
                    .any(|x| x.executor.starts_with("docker") || x.executor == "kubernetes"),
                _ => false,
            };
            let host_drop = rulesets.iter().find(|rs| rs.drops_for(&r.job.name, r.job.uid));
            let fwd_drop = rulesets.iter().find(|rs| rs.forward_drop);
            match (host_drop, !containers || fwd_drop.is_some()) {
                (Some(rs), true) => {
                    let fwd = fwd_drop.map(|f| format!(", forward: {}", f.source)).unwrap_or_default();
                    (
                        CheckStatus::Pass,
                        format!(
                            "{}: outbound traffic of {} dropped by default ({}{fwd})",
                            r.label(),
                            r.job.name,
                            rs.source
                        ),
                    )
                }
                _ if blind => (
                    CheckStatus::Unknown,
                    format!("{}: the live ruleset could not be read", r.label()),
                ),
                (Some(_), false) => (
                    CheckStatus::Fail,
                    format!(
                        "{}: container jobs' traffic (forward) is not dropped by default",
                        r.label()
                    ),
                ),
                (None, _) => (
                    CheckStatus::Fail,
                    format!("{}: no default-drop egress rule for {}", r.label(), r.job.name),
                ),
            }
        })
        .collect::<Vec<_>>();
    let mut out = combine(parts, extra);
    if metadata_open {
        out.status = CheckStatus::Fail;
        out.reason = format!("{}; the metadata address 169.254.169.254 answers", out.reason);
    }
    out
}
