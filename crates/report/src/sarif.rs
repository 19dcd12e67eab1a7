//! SARIF 2.1.0 for code-scanning upload: rule metadata in `tool.driver.rules`, one result per
//! finding with a relative `artifactLocation.uri`, and file errors as tool notifications.

use crate::finding::{Diagnostic, Finding, RuleMeta, Severity};
use serde_json::{Value, json};

pub struct Tool<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub information_uri: &'a str,
    /// Base of the rules page; `#anchor` is appended for each rule's `helpUri`.
    pub docs_uri: &'a str,
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning ranks security results by this CVSS-like score.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// A path as a URI reference: relative paths stay relative (to `%SRCROOT%`), with `/`
/// separators and percent-encoding of what a URI may not contain.
pub fn path_uri(path: &str) -> (String, bool) {
    let p = path.replace('\\', "/");
    let p = p.strip_prefix("./").unwrap_or(&p).to_string();
    let mut enc = String::new();
    for b in p.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b);
        if keep {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    if p.starts_with('/') {
        (format!("file://{enc}"), false)
    } else {
        // A relative reference whose first segment has a ':' would read as a scheme.
        let first = enc.split('/').next().unwrap_or("");
        if first.contains(':') {
            enc = format!("./{enc}");
        }
        (enc, true)
    }
}

fn location(file: &str, line: u32, column: u32) -> Value {
    let (uri, relative) = path_uri(file);
    let mut art = json!({ "uri": uri });
    if relative {
        art["uriBaseId"] = json!("%SRCROOT%");
    }
    json!({
        "physicalLocation": {
            "artifactLocation": art,
            "region": { "startLine": line.max(1), "startColumn": column.max(1) }
        }
    })
}

pub fn render(findings: &[Finding], diagnostics: &[Diagnostic], rules: &[RuleMeta], tool: &Tool<'_>) -> String {
    let rule_objs: Vec<Value> = rules
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": first_sentence(r.description) },
                "fullDescription": { "text": r.description },
                "help": {
                    "text": r.remediation,
                    "markdown": format!("{}\n\n**Remediation:** {}", r.description, r.remediation)
                },
                "helpUri": format!("{}#{}", tool.docs_uri, r.docs_anchor),
                "defaultConfiguration": { "level": level(r.severity) },
                "properties": {
                    "tags": ["security", "ci"],
                    "security-severity": security_severity(r.severity),
                    "problem.severity": match r.severity {
                        Severity::Critical | Severity::High => "error",
                        Severity::Medium => "warning",
                        _ => "recommendation",
                    }
                }
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut r = json!({
                "ruleId": f.rule,
                "level": level(f.severity),
                "message": { "text": format!("{} ({})", f.message, f.severity) },
                "locations": [location(&f.file, f.line, f.column)],
                "properties": { "severity": f.severity.as_str() }
            });
            if let Some(i) = rules.iter().position(|m| m.id == f.rule) {
                r["ruleIndex"] = json!(i);
            }
            r
        })
        .collect();
    let notifications: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            json!({
                "level": "error",
                "message": { "text": d.message },
                "descriptor": { "id": d.kind },
                "locations": [location(&d.file, d.line, d.column)]
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": tool.name,
                    "version": tool.version,
                    "semanticVersion": tool.version,
                    "informationUri": tool.information_uri,
                    "rules": rule_objs
                }
            },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications
            }],
            "columnKind": "unicodeCodePoints",
            "originalUriBaseIds": { "%SRCROOT%": { "description": { "text": "The directory audited." } } },
            "results": results
        }]
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| String::from("{}"));
    s.push('\n');
    s
}

fn first_sentence(s: &str) -> &str {
    match s.find(". ") {
        Some(i) => &s[..=i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_relative_references() {
        assert_eq!(path_uri("./a b/c.yml"), ("a%20b/c.yml".to_string(), true));
        assert_eq!(path_uri("/x/y"), ("file:///x/y".to_string(), false));
        assert_eq!(path_uri("c:d/e"), ("./c:d/e".to_string(), true));
    }
}
