//! `stockade audit`: reads CI runner configuration (GitHub workflows, ARC, GitLab CI and Runner,
//! Jenkins, Kubernetes) into span-keeping models and runs the rule registry over them.

pub mod config;
pub mod dockerargs;
mod engine;
pub mod models;
pub mod rules;
pub mod source;
mod walk;
pub mod yaml;

pub use config::{AuditConfig, ConfigError};
pub use engine::{FileKind, Outcome, audit_paths};
pub use walk::WalkError;

use stockade_report::RuleMeta;

/// Every rule's metadata, in registry order (renderers and `--list-rules` read this).
pub fn rule_metas() -> Vec<RuleMeta> {
    rules::RULES.iter().map(|r| r.meta.clone()).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Walk(#[from] WalkError),
}
