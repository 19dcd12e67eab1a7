//! JSON v1: the stable machine format of `audit` and `host-check` findings.
//! Shape: `{"version": 1, "findings": [...], "diagnostics": [...]}`; fields never change meaning.

use crate::finding::{Diagnostic, Finding};
use serde::Serialize;

#[derive(Serialize)]
struct V1<'a> {
    version: u32,
    findings: &'a [Finding],
    diagnostics: &'a [Diagnostic],
}

pub fn render(findings: &[Finding], diagnostics: &[Diagnostic]) -> String {
    let doc = V1 {
        version: 1,
        findings,
        diagnostics,
    };
    // Serializing plain structs of strings and numbers cannot fail.
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Severity;

    #[test]
    fn v1_shape() {
        let f = Finding {
            rule: "r".into(),
            severity: Severity::High,
            file: "a.yml".into(),
            line: 2,
            column: 3,
            message: "m".into(),
            remediation: "x".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&render(&[f], &[])).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["findings"][0]["severity"], "high");
        assert_eq!(v["findings"][0]["line"], 2);
        assert!(v["diagnostics"].as_array().unwrap().is_empty());
    }
}
