//! Renderers of a job report for people: a terminal summary and a self-contained HTML page.
//! They only read the report; nothing here decides anything.

pub mod html;
pub mod text;

use crate::report::{JobReport, ProcessRecord};
use std::collections::HashMap;

/// Children of each process (by record index), and the roots, in start order.
pub fn tree(r: &JobReport) -> (Vec<usize>, HashMap<usize, Vec<usize>>) {
    let procs = &r.observed.processes;
    // The latest record of a pid that started before a child is its parent image.
    let mut by_pid: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, p) in procs.iter().enumerate() {
        by_pid.entry(p.pid).or_default().push(i);
    }
    let mut roots = Vec::new();
    let mut kids: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, p) in procs.iter().enumerate() {
        let parent = by_pid.get(&p.ppid).and_then(|v| {
            v.iter()
                .rev()
                .find(|&&j| j < i && procs[j].start_ms <= p.start_ms)
                .copied()
        });
        match parent {
            Some(j) => kids.entry(j).or_default().push(i),
            None => roots.push(i),
        }
    }
    (roots, kids)
}

pub fn label(p: &ProcessRecord) -> String {
    if !p.argv.is_empty() {
        p.argv.join(" ")
    } else {
        format!("(fork of {})", p.exe.as_deref().unwrap_or("?"))
    }
}

pub fn status(p: &ProcessRecord) -> String {
    match (p.exit, p.signal) {
        (Some(c), _) => format!("exit {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "?".into(),
    }
}

/// Destinations from the egress log: (verdict, protocol, name, count, bytes up, bytes down).
pub fn destinations(r: &JobReport) -> Vec<(String, String, String, u64, u64, u64)> {
    let mut m: std::collections::BTreeMap<(String, String, String), (u64, u64, u64)> = Default::default();
    let events = r
        .egress
        .get("events")
        .and_then(|e| e.as_array())
        .map(|v| v.as_slice())
        .unwrap_or(&[]);
    for e in events {
        let s = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let port = e.get("port").and_then(|p| p.as_u64()).unwrap_or(0);
        let mut name = s("name");
        if name.is_empty() {
            name = s("client_target");
        }
        if s("protocol") != "dns" && port > 0 && !name.contains(':') {
            name = format!("{name}:{port}");
        }
        let g = m.entry((s("verdict"), s("protocol"), name)).or_default();
        g.0 += 1;
        g.1 += e.get("bytes_up").and_then(|v| v.as_u64()).unwrap_or(0);
        g.2 += e.get("bytes_down").and_then(|v| v.as_u64()).unwrap_or(0);
    }
    m.into_iter().map(|((v, p, n), (c, u, d))| (v, p, n, c, u, d)).collect()
}
