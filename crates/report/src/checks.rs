//! The result model of `host-check` (one result per checklist item) and its three renderers.
//! Checks fill in `CheckResult`s; the renderers below only read them, as the finding renderers do.

use crate::finding::Severity;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// What a check concluded. `Unknown` and `NotApplicable` always come with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Pass,
    Fail,
    Warn,
    NotApplicable,
    Unknown,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
            CheckStatus::Warn => "warn",
            CheckStatus::NotApplicable => "not-applicable",
            CheckStatus::Unknown => "unknown",
        }
    }

    /// The fixed-width label of the plain table.
    fn label(self) -> &'static str {
        match self {
            CheckStatus::Pass => "PASS",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Warn => "WARN",
            CheckStatus::NotApplicable => "N/A",
            CheckStatus::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checklist item's outcome, with what was seen and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    /// The checklist section ("Runner host", ...); the plain table groups by it, in first-seen order.
    pub group: String,
    pub title: String,
    pub severity: Severity,
    pub result: CheckStatus,
    /// One line: why this result (for unknown: what could not be read and why).
    pub reason: String,
    /// What the check saw: files, values, processes, one item per entry.
    pub evidence: Vec<String>,
    pub remediation: String,
}

/// Counts per result, and passed/failed per severity, for the summary line and the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckSummary {
    /// Indexed like `Severity::ALL`.
    pub passed: [usize; 5],
    pub failed: [usize; 5],
    pub warn: usize,
    pub not_applicable: usize,
    pub unknown: usize,
}

impl CheckSummary {
    pub fn of(results: &[CheckResult]) -> Self {
        let mut s = CheckSummary::default();
        for r in results {
            let i = r.severity as usize;
            match r.result {
                CheckStatus::Pass => s.passed[i] += 1,
                CheckStatus::Fail => s.failed[i] += 1,
                CheckStatus::Warn => s.warn += 1,
                CheckStatus::NotApplicable => s.not_applicable += 1,
                CheckStatus::Unknown => s.unknown += 1,
            }
        }
        s
    }

    /// `summary: critical 0 passed 1 failed | high 3 passed 2 failed | ... | 1 warn, 4 not applicable, 0 unknown`
    pub fn line(&self) -> String {
        let mut out = String::from("summary:");
        let mut first = true;
        for sev in Severity::ALL.iter().rev() {
            let i = *sev as usize;
            if self.passed[i] + self.failed[i] == 0 {
                continue;
            }
            if !first {
                out.push_str(" |");
            }
            first = false;
            let _ = write!(out, " {sev} {} passed {} failed", self.passed[i], self.failed[i]);
        }
        if !first {
            out.push_str(" |");
        }
        let _ = write!(
            out,
            " {} warn, {} not applicable, {} unknown",
            self.warn, self.not_applicable, self.unknown
        );
        out
    }
}

/// Does any failed check reach `threshold`? This decides the exit code.
pub fn any_failed_at_or_above(results: &[CheckResult], threshold: Severity) -> bool {
    results
        .iter()
        .any(|r| r.result == CheckStatus::Fail && r.severity >= threshold)
}

/// The table grouped as the checklist is: one line per check, then for anything that is not a
/// pass the evidence and the fix, then the summary line.
pub fn render_plain(results: &[CheckResult], root: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "stockade host-check (root {root})");
    let id_width = results.iter().map(|r| r.id.len()).max().unwrap_or(0);
    let mut groups: Vec<&str> = Vec::new();
    for r in results {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    for group in groups {
        let _ = writeln!(out, "\n{group}");
        for r in results.iter().filter(|r| r.group == group) {
            let _ = writeln!(
                out,
                "  {:<7}  {:<8}  {:<id_width$}  {}",
                r.result.label(),
                r.severity.as_str(),
                r.id,
                one_line(&r.reason),
            );
            if r.result == CheckStatus::Pass || r.result == CheckStatus::NotApplicable {
                continue;
            }
            // A single-part result's reason is its evidence: print it once.
            for e in r.evidence.iter().filter(|e| **e != r.reason) {
                let _ = writeln!(out, "{:21}{}", "", one_line(e));
            }
            if matches!(r.result, CheckStatus::Fail | CheckStatus::Warn) {
                let _ = writeln!(out, "{:21}fix: {}", "", one_line(&r.remediation));
            }
        }
    }
    let _ = writeln!(out, "\n{}", CheckSummary::of(results).line());
    out
}

/// Keeps the table one record per line whatever a file on the host contained.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    id: &'a str,
    group: &'a str,
    title: &'a str,
    severity: Severity,
    result: CheckStatus,
    reason: &'a str,
    evidence: &'a [String],
    remediation: &'a str,
}

#[derive(Serialize)]
struct JsonSummary {
    passed: serde_json::Map<String, serde_json::Value>,
    failed: serde_json::Map<String, serde_json::Value>,
    warn: usize,
    #[serde(rename = "not-applicable")]
    not_applicable: usize,
    unknown: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    root: &'a str,
    checks: Vec<JsonCheck<'a>>,
    summary: JsonSummary,
}

/// JSON v1: `{"version":1,"root":..,"checks":[{"id","severity","result","reason","evidence","remediation",..}],"summary":..}`.
pub fn render_json(results: &[CheckResult], root: &str) -> String {
    let s = CheckSummary::of(results);
    let per_sev = |counts: &[usize; 5]| {
        Severity::ALL
            .iter()
            .map(|sev| (sev.as_str().to_string(), counts[*sev as usize].into()))
            .collect()
    };
    let report = JsonReport {
        version: 1,
        root,
        checks: results
            .iter()
            .map(|r| JsonCheck {
                id: &r.id,
                group: &r.group,
                title: &r.title,
                severity: r.severity,
                result: r.result,
                reason: &r.reason,
                evidence: &r.evidence,
                remediation: &r.remediation,
            })
            .collect(),
        summary: JsonSummary {
            passed: per_sev(&s.passed),
            failed: per_sev(&s.failed),
            warn: s.warn,
            not_applicable: s.not_applicable,
            unknown: s.unknown,
        },
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_else(|e| {
        // Serializing plain strings and numbers cannot fail; keep the output valid JSON anyway.
        format!("{{\"version\":1,\"error\":{:?}}}", e.to_string())
    });
    text.push('\n');
    text
}

/// SARIF's `level` for a failed check of this severity. Same table as sarif.rs's private
/// `level`; one of the two should go once that one is public.
fn sarif_level(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning reads `security-severity` from rule properties (same scores as sarif.rs).
fn security_severity(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "1.0",
    }
}

/// SARIF 2.1.0 with one rule per check and one result per check; SARIF's own `kind` carries the
/// outcome (pass, fail, review for warn, notApplicable, open for unknown), so nothing is dropped.
pub fn render_sarif(results: &[CheckResult], tool_version: &str) -> String {
    use serde_json::json;
    let rules: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": {"text": r.title},
                "help": {"text": r.remediation},
                "defaultConfiguration": {"level": sarif_level(r.severity)},
                "properties": {
                    "group": r.group,
                    "severity": r.severity.as_str(),
                    "security-severity": security_severity(r.severity),
                    "tags": ["security", "host-check"],
                },
            })
        })
        .collect();
    let sarif_results: Vec<_> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (kind, level) = match r.result {
                CheckStatus::Fail => ("fail", sarif_level(r.severity)),
                CheckStatus::Pass => ("pass", "none"),
                CheckStatus::Warn => ("review", "none"),
                CheckStatus::NotApplicable => ("notApplicable", "none"),
                CheckStatus::Unknown => ("open", "none"),
            };
            let mut text = r.reason.clone();
            for e in &r.evidence {
                text.push_str("\n- ");
                text.push_str(e);
            }
            json!({
                "ruleId": r.id,
                "ruleIndex": i,
                "kind": kind,
                "level": level,
                "message": {"text": text},
                "properties": {"result": r.result.as_str(), "evidence": r.evidence},
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "stockade host-check",
                "version": tool_version,
                "rules": rules,
            }},
            "results": sarif_results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&doc)
        .unwrap_or_else(|e| format!("{{\"version\":\"2.1.0\",\"error\":{:?}}}", e.to_string()));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, group: &str, sev: Severity, status: CheckStatus) -> CheckResult {
        CheckResult {
            id: id.into(),
            group: group.into(),
            title: format!("{id} title"),
            severity: sev,
            result: status,
            reason: format!("{id} reason"),
            evidence: vec![format!("{id} saw\nthis")],
            remediation: format!("{id} fix"),
        }
    }

    fn sample() -> Vec<CheckResult> {
        vec![
            result("a-pass", "Host", Severity::High, CheckStatus::Pass),
            result("b-fail", "Host", Severity::Critical, CheckStatus::Fail),
            result("c-na", "Runner", Severity::Medium, CheckStatus::NotApplicable),
            result("d-unknown", "Runner", Severity::Medium, CheckStatus::Unknown),
            result("e-fail", "Runner", Severity::Medium, CheckStatus::Fail),
            result("f-warn", "Host", Severity::Info, CheckStatus::Warn),
        ]
    }

    #[test]
    fn summary_counts_passed_and_failed_per_severity() {
        let s = CheckSummary::of(&sample());
        assert_eq!(s.passed[Severity::High as usize], 1);
        assert_eq!(s.failed[Severity::Critical as usize], 1);
        assert_eq!(s.failed[Severity::Medium as usize], 1);
        assert_eq!((s.warn, s.not_applicable, s.unknown), (1, 1, 1));
        assert_eq!(
            s.line(),
            "summary: critical 0 passed 1 failed | high 1 passed 0 failed | medium 0 passed 1 failed | 1 warn, 1 not applicable, 1 unknown"
        );
    }

    #[test]
    fn threshold_counts_only_failures() {
        let r = sample();
        assert!(any_failed_at_or_above(&r, Severity::Critical));
        assert!(any_failed_at_or_above(&r, Severity::Medium));
        let only_medium: Vec<_> = r.into_iter().filter(|c| c.id != "b-fail").collect();
        assert!(!any_failed_at_or_above(&only_medium, Severity::High));
    }

    #[test]
    fn plain_groups_in_checklist_order_and_keeps_lines_single() {
        let text = render_plain(&sample(), "/");
        let host = text.find("\nHost\n").unwrap();
        let runner = text.find("\nRunner\n").unwrap();
        assert!(host < runner);
        // f-warn belongs to Host and is printed under it, before the Runner group.
        assert!(text.find("f-warn").unwrap() < runner);
        assert!(text.contains("b-fail saw this"));
        assert!(text.contains("fix: b-fail fix"));
        assert!(!text.contains("a-pass saw"));
        assert!(text.trim_end().lines().last().unwrap().starts_with("summary:"));
    }

    #[test]
    fn json_has_version_and_kebab_results() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample(), "/x")).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["checks"][2]["result"], "not-applicable");
        assert_eq!(v["checks"][1]["severity"], "critical");
        assert_eq!(v["summary"]["failed"]["medium"], 1);
    }

    #[test]
    fn sarif_maps_results_to_kinds_and_levels() {
        let v: serde_json::Value = serde_json::from_str(&render_sarif(&sample(), "0.1.0")).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let res = v["runs"][0]["results"].as_array().unwrap();
        assert_eq!(res[0]["kind"], "pass");
        assert_eq!(res[0]["level"], "none");
        assert_eq!(res[1]["kind"], "fail");
        assert_eq!(res[1]["level"], "error");
        assert_eq!(res[4]["level"], "warning");
        assert_eq!(res[3]["kind"], "open");
        assert_eq!(
            v["runs"][0]["tool"]["driver"]["rules"][4]["id"],
            serde_json::json!("e-fail")
        );
    }
}
