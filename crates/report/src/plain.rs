//! The default, human output: `file:line:col: severity [rule] message`, the source line with a
//! caret under the column, the remediation, and a closing count per severity.

use crate::finding::{Diagnostic, Finding, RuleMeta, Severity};

/// Options of the plain renderer. `source_line(file, line)` gives the text shown under a finding.
pub struct PlainOptions<'a> {
    pub source_line: &'a dyn Fn(&str, u32) -> Option<String>,
    pub color: bool,
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn sev_color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "1;35",
        Severity::High => "1;31",
        Severity::Medium => "1;33",
        Severity::Low => "1;36",
        Severity::Info => "1;34",
    }
}

pub fn render(
    findings: &[Finding],
    diagnostics: &[Diagnostic],
    rules: &[RuleMeta],
    files: usize,
    opts: &PlainOptions<'_>,
) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{}:{}:{}: {} [{}] {}\n",
            f.file,
            f.line,
            f.column,
            paint(opts.color, sev_color(f.severity), f.severity.as_str()),
            f.rule,
            f.message
        ));
        if let Some(line) = (opts.source_line)(&f.file, f.line) {
            let gutter = f.line.to_string();
            let line = line.replace('\t', " ");
            out.push_str(&format!("  {gutter} | {line}\n"));
            let pad: String = line
                .chars()
                .take((f.column as usize).saturating_sub(1))
                .map(|_| ' ')
                .collect();
            out.push_str(&format!(
                "  {} | {}{}\n",
                " ".repeat(gutter.len()),
                pad,
                paint(opts.color, sev_color(f.severity), "^")
            ));
        }
        let help = rules
            .iter()
            .find(|r| r.id == f.rule)
            .map(|r| r.docs_anchor)
            .map(|a| format!(" (docs/rules.md#{a})"))
            .unwrap_or_default();
        out.push_str(&format!("  = help: {}{help}\n\n", f.remediation));
    }
    for d in diagnostics {
        out.push_str(&format!(
            "{}:{}:{}: {} [{}] {}\n",
            d.file,
            d.line,
            d.column,
            paint(opts.color, "1;31", "error"),
            d.kind,
            d.message
        ));
    }
    let mut counts = Vec::new();
    for s in Severity::ALL.iter().rev() {
        let n = findings.iter().filter(|f| f.severity == *s).count();
        if n > 0 {
            counts.push(format!("{n} {s}"));
        }
    }
    let summary = if findings.is_empty() {
        "no findings".to_string()
    } else {
        format!(
            "{} finding{} ({})",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            counts.join(", ")
        )
    };
    let diag = if diagnostics.is_empty() {
        String::new()
    } else {
        format!(
            ", {} file error{}",
            diagnostics.len(),
            if diagnostics.len() == 1 { "" } else { "s" }
        )
    };
    out.push_str(&format!(
        "{summary} in {files} file{}{diag}\n",
        if files == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_the_column() {
        let f = Finding {
            rule: "r".into(),
            severity: Severity::High,
            file: "a.yml".into(),
            line: 1,
            column: 4,
            message: "m".into(),
            remediation: "fix".into(),
        };
        let src = |_: &str, _: u32| Some("ab:cd".to_string());
        let s = render(
            &[f],
            &[],
            &[],
            1,
            &PlainOptions {
                source_line: &src,
                color: false,
            },
        );
        assert!(
            s.contains("a.yml:1:4: high [r] m\n  1 | ab:cd\n    |    ^\n  = help: fix\n"),
            "{s}"
        );
        assert!(s.ends_with("1 finding (1 high) in 1 file\n"));
    }
}
