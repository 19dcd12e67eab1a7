//! The data every static check produces, independent of where it came from.
//! Audit rules and host checks fill these in; renderers only read them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Ordered from least to most severe so that `>=` compares thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown severity {0:?} (expected info, low, medium, high or critical)")]
pub struct ParseSeverityError(pub String);

impl FromStr for Severity {
    type Err = ParseSeverityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "info" | "informational" | "note" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return Err(ParseSeverityError(s.to_string())),
        })
    }
}

/// Static description of a rule or check, given to renderers (SARIF needs it) as data.
#[derive(Debug, Clone, Serialize)]
pub struct RuleMeta {
    pub id: &'static str,
    pub severity: Severity,
    pub description: &'static str,
    pub remediation: &'static str,
    /// Anchor in docs/rules.md (or docs/host-check.md).
    pub docs_anchor: &'static str,
}

/// One problem at one place. Lines and columns are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub remediation: String,
}

/// A file that could not be read or parsed; the run goes on with the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub kind: String,
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_and_parses() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Low > Severity::Info);
        assert_eq!("HIGH".parse::<Severity>().unwrap(), Severity::High);
        assert!("severe".parse::<Severity>().is_err());
    }
}
