//! The job report as one self-contained HTML page: detections on top, then the process tree,
//! the network table, file changes and a timeline. No external resource, no network.

use super::text::bytes;
use super::{destinations, label, status, tree};
use crate::report::JobReport;
use std::fmt::Write;

/// Nodes of the process tree and rows of the timeline drawn before the page says "N more".
const TREE_NODES: usize = 3000;
const TIMELINE_ROWS: usize = 3000;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{font-size:18px;margin:0 0 4px}
header code{color:#cfe3ff}
main{padding:8px 24px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;padding:12px 16px}
h2{font-size:16px;margin:4px 0 10px}
table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #eceef2;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f0f2f5}
code,.mono{font-family:ui-monospace,monospace;font-size:12.5px;word-break:break-all}
.sev{display:inline-block;min-width:64px;text-align:center;border-radius:4px;padding:1px 6px;font-weight:600;font-size:12px;color:#fff}
.sev-critical{background:#8b0000}.sev-high{background:#d03a1b}.sev-medium{background:#d98a00}.sev-low{background:#5a7bb5}.sev-info{background:#888}
.blocked{background:#8b0000;color:#fff;padding:10px 16px;border-radius:6px;margin-top:16px;font-weight:600}
.ok{color:#1c7c3a;font-weight:600}
ul.tree,ul.tree ul{list-style:none;margin:0;padding-left:18px}
ul.tree{padding-left:0}
ul.tree li{margin:1px 0}
.meta{color:#66708a;font-size:12px}
.flag{background:#ffe3dc;color:#8b2000;border-radius:3px;padding:0 4px;font-size:11px;margin-left:4px}
.evidence{margin:4px 0 0 72px;color:#3a4256}
input#filter{width:320px;padding:4px 8px;margin-bottom:8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:8px}
.grid div{background:#f6f7f9;border-radius:4px;padding:6px 10px}
.grid b{display:block;font-size:16px}
";

const SCRIPT: &str = "
document.addEventListener('DOMContentLoaded', function () {
  document.body.setAttribute('data-ready', String(document.querySelectorAll('.detection').length));
  var f = document.getElementById('filter');
  if (!f) { return; }
  f.addEventListener('input', function () {
    var q = f.value.toLowerCase();
    var rows = document.querySelectorAll('#timeline tbody tr');
    for (var i = 0; i < rows.length; i++) {
      rows[i].style.display = rows[i].textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
    }
  });
});
";

pub fn render(r: &JobReport) -> String {
    let mut o = String::new();
    let title = format!("stockade job {}", r.job_id);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>{}</title><style>{STYLE}</style><script>{SCRIPT}</script></head><body>\n",
        esc(&title)
    );
    let res = &r.resources;
    let _ = writeln!(
        o,
        "<header><h1>{}</h1><div><code>{}</code></div><div class=\"meta\" style=\"color:#b9c2d6\">started {} · policy {}</div></header><main>",
        esc(&title),
        esc(&r.command.join(" ")),
        esc(&r.started_at),
        esc(&r.policy_digest)
    );

    // Detections first: that is what a person opens the page for.
    if let Some(b) = r.observed.monitor.as_ref().and_then(|m| m.blocked.as_ref()) {
        let _ = writeln!(
            o,
            "<div class=\"blocked\" id=\"blocked\">Blocked by <code>{}</code> ({}): {}{}</div>",
            esc(&b.id),
            b.severity,
            esc(&b.explanation),
            if b.stopped {
                " — the job was stopped."
            } else {
                " — found at the job's end; the job failed."
            }
        );
    }
    let d = &r.observed.detections;
    let _ = writeln!(o, "<section id=\"detections\"><h2>Detections ({})</h2>", d.len());
    if d.is_empty() {
        let _ = write!(o, "<p class=\"ok\">No detections.</p>");
    } else {
        o.push_str("<ul style=\"list-style:none;padding:0;margin:0\">");
        for x in d {
            let _ = write!(
                o,
                "<li class=\"detection\" data-id=\"{}\" data-severity=\"{}\"><span class=\"sev sev-{}\">{}</span> <b>{}</b> — {}{}",
                esc(&x.id),
                x.severity,
                x.severity,
                x.severity,
                esc(&x.id),
                esc(&x.explanation),
                x.at_ms
                    .map(|t| format!(" <span class=\"meta\">at {:.2} s</span>", t as f64 / 1000.0))
                    .unwrap_or_default()
            );
            if !x.evidence.is_empty() {
                o.push_str("<div class=\"evidence mono\">");
                for e in x.evidence.iter().take(5) {
                    let _ = write!(o, "{}<br>", esc(e));
                }
                o.push_str("</div>");
            }
            o.push_str("</li>\n");
        }
        o.push_str("</ul>");
    }
    o.push_str("</section>\n");

    // The figures.
    let _ = write!(
        o,
        "<section id=\"summary\"><h2>Outcome and resources</h2><div class=\"grid\">"
    );
    let cell = |o: &mut String, k: &str, v: String| {
        let _ = write!(o, "<div>{}<b>{}</b></div>", esc(k), esc(&v));
    };
    cell(&mut o, "exit code", r.outcome.exit_code.to_string());
    cell(&mut o, "wall time", format!("{:.2} s", res.wall_ms as f64 / 1000.0));
    cell(
        &mut o,
        "CPU time",
        res.cpu_ms
            .map(|c| format!("{:.2} s", c as f64 / 1000.0))
            .unwrap_or("?".into()),
    );
    cell(
        &mut o,
        "memory peak",
        res.memory_peak_bytes.map(bytes).unwrap_or("?".into()),
    );
    cell(
        &mut o,
        "pids peak",
        res.pids_peak.map(|p| p.to_string()).unwrap_or("?".into()),
    );
    cell(&mut o, "processes", r.observed.processes.len().to_string());
    cell(
        &mut o,
        "bytes in / out",
        format!(
            "{} / {}",
            bytes(res.bytes_in.unwrap_or(0)),
            bytes(res.bytes_out.unwrap_or(0))
        ),
    );
    if let Some(m) = &r.observed.monitor {
        cell(&mut o, "mode", format!("{} (≥ {})", m.mode, m.threshold));
    }
    o.push_str("</div>");
    if r.outcome.timed_out {
        o.push_str("<p><b>The job timed out.</b></p>");
    }
    if let Some(m) = &r.observed.monitor {
        let _ = write!(o, "<p class=\"meta\">monitor: {}", esc(&m.mechanism));
        if let Some(b) = &m.baseline {
            let _ = write!(o, " · baseline {}", esc(b));
        }
        o.push_str("</p>");
        for w in &m.warnings {
            let _ = write!(o, "<p class=\"meta\">warning: {}</p>", esc(w));
        }
    }
    o.push_str("</section>\n");

    // Process tree.
    let procs = &r.observed.processes;
    let _ = write!(
        o,
        "<section id=\"processes\"><h2>Process tree ({} processes)</h2>",
        procs.len()
    );
    let (roots, kids) = tree(r);
    let mut drawn = 0;
    fn node(
        o: &mut String,
        r: &JobReport,
        kids: &std::collections::HashMap<usize, Vec<usize>>,
        i: usize,
        drawn: &mut usize,
        depth: usize,
    ) {
        if *drawn >= TREE_NODES {
            return;
        }
        *drawn += 1;
        let p = &r.observed.processes[i];
        let _ = write!(
            o,
            "<li><span class=\"mono\">{}</span> <span class=\"meta\">[{}] {} · {:.2}–{} s · uid {} · cwd {}</span>",
            esc(&label(p)),
            p.ns_pid
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("host {}", p.pid)),
            esc(&status(p)),
            p.start_ms as f64 / 1000.0,
            p.end_ms
                .map(|e| format!("{:.2}", e as f64 / 1000.0))
                .unwrap_or("?".into()),
            p.uid.map(|u| u.to_string()).unwrap_or("?".into()),
            esc(p.cwd.as_deref().unwrap_or("?"))
        );
        for f in p.flags.iter().filter(|f| *f != "exec") {
            let _ = write!(o, "<span class=\"flag\">{}</span>", esc(f));
        }
        if let Some(k) = kids.get(&i) {
            // Deep chains stay readable: past 40 levels the tree stops indenting.
            o.push_str(if depth < 40 {
                "<ul>"
            } else {
                "<ul style=\"padding-left:0\">"
            });
            for &c in k {
                node(o, r, kids, c, drawn, depth + 1);
            }
            o.push_str("</ul>");
        }
        o.push_str("</li>\n");
    }
    o.push_str("<ul class=\"tree\">");
    // Recursion depth is bounded by the longest fork chain a job can make (its pids limit).
    for &i in &roots {
        node(&mut o, r, &kids, i, &mut drawn, 0);
    }
    o.push_str("</ul>");
    if drawn < procs.len() {
        let _ = write!(
            o,
            "<p class=\"meta\">… {} more processes in the JSON report</p>",
            procs.len() - drawn
        );
    }
    o.push_str("</section>\n");

    // Network.
    let dests = destinations(r);
    let _ = write!(
        o,
        "<section id=\"network\"><h2>Network ({} destinations)</h2>",
        dests.len()
    );
    if dests.is_empty() {
        o.push_str("<p class=\"meta\">No egress attempts recorded.</p>");
    } else {
        o.push_str("<table><thead><tr><th>verdict</th><th>protocol</th><th>destination</th><th>attempts</th><th>up</th><th>down</th></tr></thead><tbody>");
        for (v, p, n, c, up, down) in &dests {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{c}</td><td>{}</td><td>{}</td></tr>",
                esc(v),
                esc(p),
                esc(n),
                bytes(*up),
                bytes(*down)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>\n");

    // Files.
    let f = &r.observed.files;
    let _ = write!(
        o,
        "<section id=\"files\"><h2>File changes</h2><p class=\"meta\">examined before teardown: {}</p>",
        esc(&if f.examined.is_empty() {
            "nothing".to_string()
        } else {
            f.examined.join(", ")
        })
    );
    let rows: Vec<(String, String, String, String)> = f
        .protected_changed
        .iter()
        .map(|c| {
            (
                "protected source".to_string(),
                c.change.clone(),
                c.path.clone(),
                c.size.map(bytes).unwrap_or_default(),
            )
        })
        .chain(f.outside_workspace.iter().map(|c| {
            (
                "outside workspace".to_string(),
                format!("{} {}", c.change, c.kind),
                c.path.clone(),
                c.size.map(bytes).unwrap_or_default(),
            )
        }))
        .collect();
    if rows.is_empty() {
        o.push_str("<p class=\"meta\">No files changed outside the workspace, and no protected source changed.</p>");
    } else {
        o.push_str("<table><thead><tr><th>where</th><th>change</th><th>path</th><th>size</th></tr></thead><tbody>");
        for (w, c, p, s) in rows.iter().take(2000) {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(w),
                esc(c),
                esc(p),
                esc(s)
            );
        }
        o.push_str("</tbody></table>");
        if rows.len() > 2000 || f.truncated {
            o.push_str("<p class=\"meta\">List cut; see the JSON report.</p>");
        }
    }
    if let Some(n) = f.protected_files {
        let _ = write!(o, "<p class=\"meta\">{n} protected source files watched.</p>");
    }
    o.push_str("</section>\n");

    // Timeline: processes, monitor events, egress and detections on one clock.
    let mut tl: Vec<(u64, &str, String)> = Vec::new();
    for p in procs.iter().filter(|p| p.has("exec")) {
        tl.push((p.start_ms, "exec", format!("{} ({})", label(p), status(p))));
    }
    for e in &r.observed.events {
        tl.push((
            e.at_ms,
            &e.kind,
            format!("{} — {}", e.subject, e.detail.as_deref().unwrap_or("")),
        ));
    }
    for x in d.iter().filter(|x| x.at_ms.is_some()) {
        tl.push((
            x.at_ms.unwrap_or(0),
            "detection",
            format!("{} ({}): {}", x.id, x.severity, x.explanation),
        ));
    }
    tl.sort_by_key(|t| t.0);
    let _ = write!(
        o,
        "<section id=\"timeline-section\"><h2>Timeline ({} entries)</h2><input id=\"filter\" placeholder=\"filter\" aria-label=\"filter the timeline\"><table id=\"timeline\"><thead><tr><th>time</th><th>what</th><th>detail</th></tr></thead><tbody>",
        tl.len()
    );
    for (t, k, s) in tl.iter().take(TIMELINE_ROWS) {
        let _ = write!(
            o,
            "<tr><td>{:.3} s</td><td>{}</td><td class=\"mono\">{}</td></tr>",
            *t as f64 / 1000.0,
            esc(k),
            esc(s)
        );
    }
    o.push_str("</tbody></table>");
    if tl.len() > TIMELINE_ROWS {
        let _ = write!(
            o,
            "<p class=\"meta\">… {} more entries in the JSON report</p>",
            tl.len() - TIMELINE_ROWS
        );
    }
    o.push_str("</section>\n");

    if !r.left_running.is_empty() || !r.leftovers.is_empty() {
        o.push_str("<section id=\"teardown\"><h2>Teardown</h2><ul>");
        for l in &r.left_running {
            let _ = write!(
                o,
                "<li>left running, killed: <code>{}</code></li>",
                esc(if l.cmdline.is_empty() { &l.comm } else { &l.cmdline })
            );
        }
        for l in &r.leftovers {
            let _ = write!(o, "<li><b>leftover:</b> {}</li>", esc(l));
        }
        o.push_str("</ul></section>\n");
    }
    o.push_str("</main></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
