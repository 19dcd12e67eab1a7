//! The `[audit]` table of `.stockade.toml` (or `--config FILE`): which rules run, which places
//! are accepted, severity overrides, and which runner labels mean what on GitHub.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use stockade_report::Severity;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: [audit].{field} names unknown rule {rule:?}")]
    UnknownRule {
        path: PathBuf,
        field: &'static str,
        rule: String,
    },
    #[error("config {path}: [audit].severity.{rule} = {value:?} is not a severity")]
    BadSeverity { path: PathBuf, rule: String, value: String },
    #[error("config {path}: [audit].ignore entry {entry:?} is not \"path\" or \"path:line\"")]
    BadIgnore { path: PathBuf, entry: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    audit: Option<RawAudit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    severity: BTreeMap<String, String>,
    #[serde(default)]
    self_hosted_labels: Option<Vec<String>>,
    #[serde(default)]
    restricted_labels: Vec<String>,
    #[serde(default)]
    hosted_labels: Vec<String>,
}

/// One accepted place: a path (as shown in findings, or a suffix of it), optionally one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreEntry {
    pub path: String,
    pub line: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub disable: Vec<String>,
    pub ignore: Vec<IgnoreEntry>,
    pub severity: BTreeMap<String, Severity>,
    /// Labels that mark a GitHub job as self-hosted (besides any label that is not GitHub-hosted).
    pub self_hosted_labels: Vec<String>,
    /// When non-empty, a self-hosted job must carry one of these (or use a runner group).
    pub restricted_labels: Vec<String>,
    /// Extra GitHub-hosted labels (larger runners), on top of ubuntu-*, windows-*, macos-*.
    pub hosted_labels: Vec<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            disable: Vec::new(),
            ignore: Vec::new(),
            severity: BTreeMap::new(),
            self_hosted_labels: vec!["self-hosted".to_string()],
            restricted_labels: Vec::new(),
            hosted_labels: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// Reads `path`; rule ids are checked against `known_rules`.
    pub fn load(path: &Path, known_rules: &[&str]) -> Result<AuditConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, known_rules)
    }

    pub fn parse(text: &str, path: &Path, known_rules: &[&str]) -> Result<AuditConfig, ConfigError> {
        // Other subcommands own other tables of the same file; only [audit] is read here.
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let audit_only = FileConfig {
            audit: match table.get("audit") {
                None => None,
                Some(v) => Some(v.clone().try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: format!("[audit]: {}", e.message()),
                })?),
            },
        };
        let raw = audit_only.audit.unwrap_or_default();
        let known = |field: &'static str, rule: &str| {
            if known_rules.contains(&rule) {
                Ok(())
            } else {
                Err(ConfigError::UnknownRule {
                    path: path.to_path_buf(),
                    field,
                    rule: rule.to_string(),
                })
            }
        };
        for r in &raw.disable {
            known("disable", r)?;
        }
        let mut severity = BTreeMap::new();
        for (rule, value) in raw.severity {
            known("severity", &rule)?;
            let sev = value.parse().map_err(|_| ConfigError::BadSeverity {
                path: path.to_path_buf(),
                rule: rule.clone(),
                value: value.clone(),
            })?;
            severity.insert(rule, sev);
        }
        let mut ignore = Vec::new();
        for entry in raw.ignore {
            ignore.push(parse_ignore(&entry).ok_or_else(|| ConfigError::BadIgnore {
                path: path.to_path_buf(),
                entry: entry.clone(),
            })?);
        }
        let defaults = AuditConfig::default();
        Ok(AuditConfig {
            disable: raw.disable,
            ignore,
            severity,
            self_hosted_labels: raw.self_hosted_labels.unwrap_or(defaults.self_hosted_labels),
            restricted_labels: raw.restricted_labels,
            hosted_labels: raw.hosted_labels,
        })
    }

    /// Whether `[audit].ignore` accepts a finding at `file:line`.
    pub fn ignores(&self, file: &str, line: u32) -> bool {
        let file = file.strip_prefix("./").unwrap_or(file);
        self.ignore.iter().any(|e| {
            let p = e.path.strip_prefix("./").unwrap_or(&e.path);
            let path_ok = file == p || file.ends_with(&format!("/{p}"));
            path_ok && e.line.is_none_or(|l| l == line)
        })
    }
}

fn parse_ignore(entry: &str) -> Option<IgnoreEntry> {
    let entry = entry.trim();
    if entry.is_empty() {
        return None;
    }
    if let Some((path, line)) = entry.rsplit_once(':')
        && let Ok(n) = line.parse::<u32>()
    {
        if path.is_empty() || n == 0 {
            return None;
        }
        return Some(IgnoreEntry {
            path: path.to_string(),
            line: Some(n),
        });
    }
    Some(IgnoreEntry {
        path: entry.to_string(),
        line: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_audit_table_and_checks_rule_ids() {
        let text = r#"
[policy]
anything = 1
[audit]
disable = ["a"]
ignore = ["x/y.yml:3", "z.toml"]
self_hosted_labels = ["self-hosted", "gpu"]
[audit.severity]
b = "low"
"#;
        let c = AuditConfig::parse(text, Path::new("c.toml"), &["a", "b"]).unwrap();
        assert_eq!(c.disable, ["a"]);
        assert_eq!(c.severity["b"], Severity::Low);
        assert!(c.ignores("repo/x/y.yml", 3));
        assert!(!c.ignores("repo/x/y.yml", 4));
        assert!(c.ignores("z.toml", 9));
        assert!(!c.ignores("xz.toml", 9));
        let err = AuditConfig::parse("[audit]\ndisable=[\"nope\"]", Path::new("c"), &["a"]);
        assert!(matches!(err, Err(ConfigError::UnknownRule { .. })));
        let err = AuditConfig::parse("[audit]\ncolour=1", Path::new("c"), &["a"]);
        assert!(matches!(err, Err(ConfigError::Parse { .. })));
    }
}
