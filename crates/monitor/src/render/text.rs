//! The terminal summary of a job report (`stockade report FILE`): detections first, then the
//! process tree, destinations and file changes.

use super::{destinations, label, status, tree};
use crate::report::JobReport;
use std::fmt::Write;

/// Process tree lines shown before the summary says how many more there are.
const TREE_LINES: usize = 200;

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn render(r: &JobReport) -> String {
    let mut o = String::new();
    let res = &r.resources;
    let _ = writeln!(o, "job {}  started {}", r.job_id, r.started_at);
    let _ = writeln!(o, "command: {}", r.command.join(" "));
    let _ = writeln!(
        o,
        "outcome: exit code {}{}{}  wall {:.1} s  cpu {}  memory peak {}  pids peak {}",
        r.outcome.exit_code,
        r.outcome.signal.map(|s| format!(" (signal {s})")).unwrap_or_default(),
        if r.outcome.timed_out { " (timed out)" } else { "" },
        res.wall_ms as f64 / 1000.0,
        res.cpu_ms
            .map(|c| format!("{:.1} s", c as f64 / 1000.0))
            .unwrap_or("?".into()),
        res.memory_peak_bytes.map(bytes).unwrap_or("?".into()),
        res.pids_peak.map(|p| p.to_string()).unwrap_or("?".into()),
    );
    if res.bytes_in.is_some() || res.bytes_out.is_some() {
        let _ = writeln!(
            o,
            "network: {} in, {} out",
            bytes(res.bytes_in.unwrap_or(0)),
            bytes(res.bytes_out.unwrap_or(0))
        );
    }
    match &r.observed.monitor {
        Some(m) => {
            let _ = writeln!(
                o,
                "monitor: {} mode, threshold {}{}",
                m.mode,
                m.threshold,
                m.baseline
                    .as_ref()
                    .map(|b| format!(", baseline {b}"))
                    .unwrap_or_default()
            );
            if let Some(b) = &m.blocked {
                let _ = writeln!(
                    o,
                    "BLOCKED by {} ({}): {}{}",
                    b.id,
                    b.severity,
                    b.explanation,
                    if b.stopped {
                        " — the job was stopped"
                    } else {
                        " — found at the job's end"
                    }
                );
            }
            for w in &m.warnings {
                let _ = writeln!(o, "monitor warning: {w}");
            }
        }
        None => {
            let _ = writeln!(o, "monitor: off (no process tree)");
        }
    }

    let d = &r.observed.detections;
    let _ = writeln!(o, "\nDetections ({}):", d.len());
    if d.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for x in d {
        let _ = writeln!(
            o,
            "  {:<8} {:<24} {}",
            x.severity.as_str().to_uppercase(),
            x.id,
            x.explanation
        );
        for e in x.evidence.iter().take(5) {
            let _ = writeln!(o, "           {e}");
        }
    }

    let procs = &r.observed.processes;
    let _ = writeln!(o, "\nProcess tree ({} processes):", procs.len());
    let (roots, kids) = tree(r);
    let mut lines = 0;
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if lines >= TREE_LINES {
            let _ = writeln!(o, "  … {} more", procs.len() - lines);
            break;
        }
        let p = &procs[i];
        let _ = writeln!(
            o,
            "  {}[{}] {}  ({}, {:.2}-{} s{})",
            "  ".repeat(depth.min(20)),
            p.ns_pid
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("host {}", p.pid)),
            label(p),
            status(p),
            p.start_ms as f64 / 1000.0,
            p.end_ms
                .map(|e| format!("{:.2}", e as f64 / 1000.0))
                .unwrap_or("?".into()),
            if p.flags.iter().any(|f| f != "exec") {
                format!(
                    ", {}",
                    p.flags
                        .iter()
                        .filter(|f| *f != "exec")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                String::new()
            }
        );
        lines += 1;
        if let Some(k) = kids.get(&i) {
            stack.extend(k.iter().rev().map(|&c| (c, depth + 1)));
        }
    }

    let dests = destinations(r);
    let _ = writeln!(o, "\nDestinations ({}):", dests.len());
    if dests.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for (v, p, n, c, up, down) in &dests {
        let _ = writeln!(o, "  {v:<8} {p:<5} {n}  ×{c}  up {}  down {}", bytes(*up), bytes(*down));
    }

    let f = &r.observed.files;
    let _ = writeln!(
        o,
        "\nFiles left outside the workspace ({}{}; examined {}):",
        f.outside_workspace.len(),
        if f.truncated { ", list cut" } else { "" },
        if f.examined.is_empty() {
            "nothing".into()
        } else {
            f.examined.join(" ")
        }
    );
    for c in f.outside_workspace.iter().take(50) {
        let _ = writeln!(
            o,
            "  {} {} {}{}",
            c.change,
            c.kind,
            c.path,
            c.size.map(|s| format!(" ({})", bytes(s))).unwrap_or_default()
        );
    }
    if f.outside_workspace.len() > 50 {
        let _ = writeln!(o, "  … {} more", f.outside_workspace.len() - 50);
    }
    let writes: Vec<_> = r.observed.events.iter().filter(|e| e.kind == "file-write").collect();
    if !writes.is_empty() {
        let _ = writeln!(o, "Written while the job ran (outside the workspace): {}", writes.len());
        for e in writes.iter().take(20) {
            let _ = writeln!(
                o,
                "  {:.2} s  {}  by {}",
                e.at_ms as f64 / 1000.0,
                e.subject,
                e.detail.as_deref().unwrap_or("?")
            );
        }
    }
    if let Some(n) = f.protected_files {
        let _ = writeln!(
            o,
            "Protected sources: {n} watched, {} changed",
            f.protected_changed.len()
        );
        for c in &f.protected_changed {
            let _ = writeln!(o, "  {} {}", c.change, c.path);
        }
    }

    if let Some(map) = r.denied_syscalls.as_object().filter(|m| !m.is_empty()) {
        let _ = writeln!(o, "\nDenied syscalls:");
        for (name, v) in map {
            let _ = writeln!(o, "  {name} ×{}", v.get("count").and_then(|c| c.as_u64()).unwrap_or(0));
        }
    }
    if !r.left_running.is_empty() {
        let _ = writeln!(o, "\nLeft running at the end (killed by teardown):");
        for l in &r.left_running {
            let _ = writeln!(
                o,
                "  [{}] {}",
                l.pid,
                if l.cmdline.is_empty() { &l.comm } else { &l.cmdline }
            );
        }
    }
    if !r.leftovers.is_empty() {
        let _ = writeln!(o, "\nTeardown leftovers (errors):");
        for l in &r.leftovers {
            let _ = writeln!(o, "  {l}");
        }
    }
    o
}
