//! GitHub Actions workflow commands (`::error file=...,line=...::msg`), so that findings show as
//! annotations on the pull request when `stockade audit --format github` runs in a workflow.

use crate::finding::{Diagnostic, Finding, Severity};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "notice",
    }
}

/// Escaping of a command's message (the part after `::`).
fn data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escaping of a property value (`file=`, `title=`).
fn prop(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn render(findings: &[Finding], diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "::{} file={},line={},col={},title={}::{} [{}] {}\n",
            level(f.severity),
            prop(&f.file),
            f.line,
            f.column,
            prop(&format!("stockade {}", f.rule)),
            f.severity,
            data(&f.rule),
            data(&f.message),
        ));
    }
    for d in diagnostics {
        out.push_str(&format!(
            "::warning file={},line={},col={},title={}::{}\n",
            prop(&d.file),
            d.line,
            d.column,
            prop(&format!("stockade {}", d.kind)),
            data(&d.message),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_properties_and_data() {
        let f = Finding {
            rule: "r".into(),
            severity: Severity::Medium,
            file: "a,b:c.yml".into(),
            line: 1,
            column: 2,
            message: "50% off\nnext".into(),
            remediation: String::new(),
        };
        let s = render(&[f], &[]);
        assert_eq!(
            s,
            "::warning file=a%2Cb%3Ac.yml,line=1,col=2,title=stockade r::medium [r] 50%25 off%0Anext\n"
        );
    }
}
